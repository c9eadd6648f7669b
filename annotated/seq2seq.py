# GENERATED FILE, DO NOT EDIT. It is exported from book/03_seq2seq.md
# by tools/export.py; change the chapter and run `make export` instead.
"""Sequence to sequence: RNN and LSTM translators, with and without attention

From book/03_seq2seq.md.
"""


# %% book/03_seq2seq.md, code cell 3
# (Sequence to sequence: RNN and LSTM translators, with and without attention)
import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from annotated.attention import AdditiveAttention, cosine_attention, padding_mask
from annotated.training import TrainConfig, fit
from annotated.translation import (EOS_IDX, PAD_IDX, SOS_IDX, evaluate, pad_batch,
                                   teacher_forcing_step, vocab_size)


# %% book/03_seq2seq.md, code cell 4 (The configuration)
CELLS = ("rnn", "lstm")
ATTENTIONS = (None, "cosine", "additive")


@dataclass
class Seq2SeqConfig:
    """Sizes and choices of an encoder-decoder translator."""

    src_vocab: int  # German vocabulary size V_src (or the Vocab: its length is taken)
    tgt_vocab: int  # English vocabulary size V (likewise)
    cell: str = "lstm"  # recurrent cell: "rnn" (tanh) or "lstm"
    # None, "cosine" (the course's) or "additive" (Bahdanau)
    attention: str | None = "additive"
    emb_dim: int = 256  # E, word embedding size (both languages)
    hidden_dim: int = 256  # H, decoder state size = encoder output size
    bidirectional: bool = True  # encoder reads both ways, H/2 units per direction
    dropout: float = 0.2  # on embeddings and on the decoder's output features
    tie_embeddings: bool = True  # output layer shares the target embedding matrix
    pad_idx: int = PAD_IDX
    sos_idx: int = SOS_IDX
    eos_idx: int = EOS_IDX

    def __post_init__(self):
        self.src_vocab = vocab_size(self.src_vocab, "src_vocab")  # a Vocab: its size
        self.tgt_vocab = vocab_size(self.tgt_vocab, "tgt_vocab")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, "
                             f"got {self.attention!r}")
        for name in ("src_vocab", "tgt_vocab", "emb_dim", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.bidirectional and self.hidden_dim % 2:
            raise ValueError("a bidirectional encoder splits "
                             f"hidden_dim={self.hidden_dim} in two halves; "
                             "use an even hidden_dim")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


# %% book/03_seq2seq.md, code cell 7 (The encoder)
def _merge_directions(h: torch.Tensor) -> torch.Tensor:
    """(directions, B, H / directions) -> (B, H): the final states, concatenated."""
    return h.transpose(0, 1).reshape(h.size(1), -1)


def _init_embedding(embedding: nn.Embedding, std: float = 0.1) -> None:
    """N(0, std²) entries and a zero <pad> row."""
    # PyTorch's default N(0, 1) would make tied output logits huge
    nn.init.normal_(embedding.weight, std=std)
    with torch.no_grad():
        embedding.weight[embedding.padding_idx].zero_()


class Encoder(nn.Module):
    """Embedding, dropout and a (bidirectional) RNN/LSTM over packed sequences."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        directions = 2 if cfg.bidirectional else 1
        rnn = nn.LSTM if cfg.cell == "lstm" else nn.RNN
        self.embedding = nn.Embedding(cfg.src_vocab, cfg.emb_dim,
                                      padding_idx=cfg.pad_idx)
        self.rnn = rnn(cfg.emb_dim, cfg.hidden_dim // directions, batch_first=True,
                       bidirectional=cfg.bidirectional)
        self.dropout = nn.Dropout(cfg.dropout)
        _init_embedding(self.embedding)

    def forward(self, src: torch.Tensor):
        """src (B, S) -> keys (B, S, H), 0 at padding; first state (B, H) or a pair."""
        lengths = padding_mask(src, self.cfg.pad_idx).sum(1)  # (B,)
        x = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, state = self.rnn(packed)
        keys, _ = pad_packed_sequence(out, batch_first=True,
                                      total_length=src.size(1))  # (B, S, H)
        if isinstance(state, tuple):  # LSTM: (h, c)
            return keys, tuple(_merge_directions(s) for s in state)
        return keys, _merge_directions(state)


# %% book/03_seq2seq.md, code cell 9 (The decoder, and where attention enters)
def _hidden(state) -> torch.Tensor:
    """The hidden state s of an RNN state s or an LSTM state (s, c)."""
    return state[0] if isinstance(state, tuple) else state


class Decoder(nn.Module):
    """One step of an RNN/LSTM decoder, optionally attending to the encoder outputs."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        E, H = cfg.emb_dim, cfg.hidden_dim
        self.embedding = nn.Embedding(cfg.tgt_vocab, E, padding_idx=cfg.pad_idx)
        self.dropout = nn.Dropout(cfg.dropout)
        self.attn = AdditiveAttention(H, H, H) if cfg.attention == "additive" else None
        self.combine = nn.Linear(E + H, E) if cfg.attention else None  # W_c
        self.cell = (nn.LSTMCell if cfg.cell == "lstm" else nn.RNNCell)(E, H)
        feats = 2 * H if cfg.attention else H  # [s_t; c_t] or s_t
        self.pre_out = nn.Linear(feats + E, E)  # W_p
        self.out = nn.Linear(E, cfg.tgt_vocab)  # W_o, tied to the embedding below
        if cfg.tie_embeddings:
            self.out.weight = self.embedding.weight
        _init_embedding(self.embedding)

    def step(self, emb: torch.Tensor, state, keys: torch.Tensor, mask: torch.Tensor,
             projected_keys: torch.Tensor | None = None):
        """One word: attend, then update the cell (weights are None without attention).

        emb (B, E), state, keys (B, S, H), mask (B, S) -> the new state, the features
        [s_t; c_t] or s_t (B, F) and the attention weights (B, S).
        """
        context = weights = None
        if self.cfg.attention == "cosine":
            # (B, H), (B, S)
            context, weights = cosine_attention(_hidden(state), keys, mask)
        elif self.cfg.attention == "additive":
            context, weights = self.attn(_hidden(state), keys, mask,
                                         projected_keys=projected_keys)
        if context is not None:
            # ẽ_t = tanh(W_c [e_t; c_t])  (B, E)
            emb = torch.tanh(self.combine(torch.cat([emb, context], dim=-1)))
        state = self.cell(emb, state)
        s = _hidden(state)  # (B, H)
        features = s if context is None else torch.cat([s, context], dim=-1)  # (B, F)
        return state, features, weights

    def logits(self, features: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """features (..., F), input embeddings (..., E) -> logits (..., V)."""
        x = torch.cat([self.dropout(features), emb], dim=-1)  # [s_t; c_t; e_t]
        hidden = torch.tanh(self.pre_out(x))  # (..., E)
        return self.out(self.dropout(hidden))  # (..., V)


# %% book/03_seq2seq.md, code cell 12 (The encoder-decoder)
class Seq2Seq(nn.Module):
    """Encoder-decoder translator with an RNN or LSTM cell and optional attention."""

    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(self, src: torch.Tensor):
        """Check src and run the encoder.

        Returns keys (B, S, H), mask (B, S), state, projected keys (B, S, H) or None.
        """
        _check_src(src, self.cfg)
        keys, state = self.encoder(src)
        mask = padding_mask(src, self.cfg.pad_idx)  # (B, S), True at real tokens
        attn = self.decoder.attn
        projected = attn.project_keys(keys) if attn is not None else None  # W_k k_j
        return keys, mask, state, projected

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor,
                teacher_forcing: float = 1.0) -> torch.Tensor:
        """src (B, S), tgt_in = <sos> y_1 .. y_{T-1} (B, T) -> logits (B, T, V)."""
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing is a probability in [0, 1], "
                             f"got {teacher_forcing}")
        keys, mask, state, projected = self.encode(src)
        _check_tgt(tgt_in, src, self.cfg)
        dec, (B, T) = self.decoder, tgt_in.shape
        if teacher_forcing >= 1.0:
            embs = dec.dropout(dec.embedding(tgt_in))  # (B, T, E)
            features = []
            for t in range(T):
                state, f, _ = dec.step(embs[:, t], state, keys, mask, projected)
                features.append(f)
            return dec.logits(torch.stack(features, dim=1), embs)  # (B, T, V)
        logits, y_prev = [], tgt_in[:, 0]
        for t in range(T):
            emb = dec.dropout(dec.embedding(y_prev))  # (B, E)
            state, f, _ = dec.step(emb, state, keys, mask, projected)
            logits.append(dec.logits(f, emb))  # (B, V)
            if t + 1 < T:
                guess = logits[-1].argmax(-1)  # (B,)
                use_reference = torch.rand(B, device=src.device) < teacher_forcing
                y_prev = torch.where(use_reference, tgt_in[:, t + 1], guess)  # (B,)
        return torch.stack(logits, dim=1)  # (B, T, V)

    def _run_free(self, src: torch.Tensor, steps: int, stop_at_eos: bool):
        """Greedy loop, the model reading its own argmax, for `steps` steps at most.

        Returns logits (B, L, V), tokens (B, L) with <pad> after each <eos>, and the
        attention weights (B, L, S) or None.
        """
        if not isinstance(steps, int) or steps < 1:
            raise ValueError("the number of decoding steps must be a positive int, "
                             f"got {steps!r}")
        keys, mask, state, projected = self.encode(src)
        dec, B, pad = self.decoder, src.size(0), self.cfg.pad_idx
        y_prev = torch.full((B,), self.cfg.sos_idx, dtype=torch.long, device=src.device)
        finished = torch.zeros(B, dtype=torch.bool, device=src.device)  # (B,)
        logits, tokens, weights = [], [], []
        for _ in range(steps):
            emb = dec.dropout(dec.embedding(y_prev))  # (B, E)
            state, f, w = dec.step(emb, state, keys, mask, projected)
            logits.append(dec.logits(f, emb))  # (B, V)
            y_prev = logits[-1].argmax(-1)  # (B,)
            tokens.append(y_prev.masked_fill(finished, pad))
            weights.append(w)
            finished = finished | (y_prev == self.cfg.eos_idx)
            if stop_at_eos and bool(finished.all()):
                break
        attn = torch.stack(weights, dim=1) if weights[0] is not None else None
        return torch.stack(logits, dim=1), torch.stack(tokens, dim=1), attn

    def free_running_logits(self, src: torch.Tensor, tgt_len: int) -> torch.Tensor:
        """Logits (B, tgt_len, V) while the decoder reads its own greedy output."""
        return self._run_free(src, tgt_len, stop_at_eos=False)[0]

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int,
                      return_attention: bool = False):
        """Token ids (B, L <= max_len), <pad> after each sentence's <eos>.

        In eval mode (no dropout; the mode is restored after). With
        return_attention, also the attention (B, L, S) each word was written with,
        zero rows after <eos> (None without attention).
        """
        was_training = self.training
        self.eval()
        try:
            _, tokens, attn = self._run_free(src, max_len, stop_at_eos=True)
        finally:
            self.train(was_training)
        if attn is not None:  # the steps after a sentence's <eos> wrote nothing
            is_eos = (tokens == self.cfg.eos_idx).long()  # (B, L)
            attn = attn.masked_fill((is_eos.cumsum(1) - is_eos > 0)[..., None], 0.0)
        return (tokens, attn) if return_attention else tokens


# %% book/03_seq2seq.md, code cell 13 (The encoder-decoder)
def _check_src(src: torch.Tensor, cfg: Seq2SeqConfig) -> None:
    if not isinstance(src, torch.Tensor) or src.dim() != 2 or src.dtype != torch.long:
        desc = type(src).__name__
        if isinstance(src, torch.Tensor):
            desc = f"{src.dtype} tensor of shape {tuple(src.shape)}"
        raise TypeError(f"src must be a (B, S) LongTensor of token ids, got a {desc}")
    if src.numel() == 0:
        raise ValueError(f"src is empty: shape {tuple(src.shape)}")
    empty = (src != cfg.pad_idx).sum(1) == 0
    if empty.any():
        which = empty.nonzero().flatten().tolist()[:10]
        raise ValueError(f"source sentences {which} are all padding")
    if int(src.max()) >= cfg.src_vocab or int(src.min()) < 0:
        raise ValueError(f"src ids must be in [0, {cfg.src_vocab}), "
                         f"got min {int(src.min())}, max {int(src.max())}")


def _check_tgt(tgt_in: torch.Tensor, src: torch.Tensor, cfg: Seq2SeqConfig) -> None:
    if (not isinstance(tgt_in, torch.Tensor) or tgt_in.dim() != 2
            or tgt_in.dtype != torch.long):
        raise TypeError("tgt_in must be a (B, T) LongTensor of token ids")
    if tgt_in.size(0) != src.size(0) or tgt_in.size(1) == 0:
        raise ValueError(f"tgt_in {tuple(tgt_in.shape)} must have the batch size "
                         f"of src {tuple(src.shape)} and at least one step")
    if int(tgt_in.max()) >= cfg.tgt_vocab or int(tgt_in.min()) < 0:
        raise ValueError(f"tgt_in ids must be in [0, {cfg.tgt_vocab}), "
                         f"got max {int(tgt_in.max())}")


# %% book/03_seq2seq.md, code cell 17 (Training the five models)
@dataclass
class RecipeConfig:
    """How a Seq2Seq model is trained (on top of the appendix's TrainConfig)."""

    epochs: float = 3.0  # whole passes over the data, or a fraction < 1 of one pass
    peak_lr: float = 3e-3  # one-cycle peak learning rate of Adam
    warmup: float = 0.15  # fraction of the steps spent warming up
    label_smoothing: float = 0.1  # on the training loss only
    clip: float = 1.0  # maximum gradient norm

    def __post_init__(self):
        whole = self.epochs >= 1 and float(self.epochs).is_integer()
        if not (0 < self.epochs < 1 or whole):
            raise ValueError("epochs must be a whole number >= 1 or a fraction "
                             f"in (0, 1), got {self.epochs}")


# %% book/03_seq2seq.md, code cell 18 (Training the five models)
def train_seq2seq(model: Seq2Seq, train_loader, val_loader, recipe: RecipeConfig,
                  checkpoint=None, verbose: bool = True,
                  max_eval_steps: int | None = None) -> dict:
    """Train a Seq2Seq: Adam, a one-cycle schedule and training.fit.

    Resumable at `checkpoint` (a finished run there is loaded, not trained again);
    validation on at most max_eval_steps batches.
    """
    per_epoch = len(train_loader)
    epochs = max(1, int(recipe.epochs))
    # steps per epoch
    steps = max(1, round(recipe.epochs * per_epoch)) if recipe.epochs < 1 else None
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.peak_lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.peak_lr, total_steps=epochs * (steps or per_epoch),
        pct_start=recipe.warmup)
    config = TrainConfig(epochs=epochs, clip=recipe.clip, patience=None,
                         max_steps=steps, scheduler_interval="step", verbose=verbose)
    step = functools.partial(teacher_forcing_step,
                             label_smoothing=recipe.label_smoothing)
    return fit(model, step, train_loader,
               evaluate=lambda m: evaluate(m, val_loader, max_steps=max_eval_steps),
               optimizer=optimizer, scheduler=scheduler, config=config,
               checkpoint=checkpoint,
               settings={"model": asdict(model.cfg), "recipe": asdict(recipe)})


# %% book/03_seq2seq.md, code cell 25 (Measuring them)
def bleu_statistics(hypotheses: Sequence[str],
                    references: Sequence[str]) -> torch.Tensor:
    """Per-sentence sacreBLEU statistics (N, 10): hypothesis and reference lengths,
    then the n-gram matches and totals for n = 1..4 (case-insensitive, 13a)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but "
                         f"{len(references)} references")
    if not hypotheses:
        raise ValueError("BLEU of an empty corpus is undefined")
    stats = _bleu()._extract_corpus_statistics(list(hypotheses), [list(references)])
    return torch.tensor(stats, dtype=torch.long)


def bleu_from_statistics(stats: torch.Tensor) -> float:
    """Corpus sacreBLEU from statistics (N, 10) summed over the sentences."""
    return _bleu()._compute_score_from_stats(stats.sum(0).tolist()).score


@functools.cache
def _bleu():
    from sacrebleu.metrics import BLEU

    return BLEU(lowercase=True)  # chapter 2's sacrebleu_corpus


@dataclass
class BleuDifference:
    """BLEU(a) - BLEU(b) on the test set, and its paired-bootstrap spread."""

    diff: float  # on the whole test set
    low: float  # 95 % interval of the difference over resampled test sets
    high: float
    a_ahead: float  # share of the resamples in which a scores higher
    sentences: int

    @property
    def separated(self) -> bool:
        """Does the interval exclude zero?"""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return (f"{self.diff:+.1f} BLEU (95 % interval {self.low:+.1f} to "
                f"{self.high:+.1f}, {self.sentences} sentences)")


def paired_bootstrap(hyps_a: Sequence[str], hyps_b: Sequence[str],
                     references: Sequence[str], samples: int = 1000,
                     seed: int = 0) -> BleuDifference:
    """Koehn's paired bootstrap: both systems scored on the same resampled test sets."""
    if len(hyps_a) != len(hyps_b):
        raise ValueError(f"{len(hyps_a)} hypotheses for a, {len(hyps_b)} for b")
    if samples < 10:
        raise ValueError(f"samples must be at least 10, got {samples}")
    stats_a = bleu_statistics(hyps_a, references)  # (N, 10)
    stats_b = bleu_statistics(hyps_b, references)
    n = len(references)
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(n, (samples, n), generator=generator)  # sentence indices
    diffs = torch.tensor([bleu_from_statistics(stats_a[d])
                          - bleu_from_statistics(stats_b[d]) for d in draws],
                         dtype=torch.float64)  # (samples,)
    low, high = torch.quantile(diffs, torch.tensor([0.025, 0.975], dtype=torch.float64))
    diff = bleu_from_statistics(stats_a) - bleu_from_statistics(stats_b)
    ahead = float((diffs > 0).double().mean())
    return BleuDifference(diff, float(low), float(high), ahead, n)


# %% book/03_seq2seq.md, code cell 43 (A task with a known answer: reversing sequences)
def reversal_pairs(n: int, max_len: int, n_symbols: int = 10, min_len: int = 1,
                   seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n` pairs (src, tgt) of the reversal task, in the translation data's format.

    src = x_1 .. x_L <eos>; tgt = <sos> x_L .. x_1 <eos>; L uniform in
    [min_len, max_len], symbols uniform over ids 4 .. 3 + n_symbols.
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if n < 1 or n_symbols < 1:
        raise ValueError(f"need n >= 1 and n_symbols >= 1, got {n}, {n_symbols}")
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    eos, sos = torch.tensor([EOS_IDX]), torch.tensor([SOS_IDX])
    pairs = []
    for L in lengths.tolist():
        x = torch.randint(4, 4 + n_symbols, (L,), generator=g)  # after the specials
        pairs.append((torch.cat([x, eos]), torch.cat([sos, x.flip(0), eos])))
    return pairs


def reversal_scores(model: Seq2Seq, pairs: list) -> dict[str, list]:
    """Per sentence: length, share of words right, and (with attention) the share
    of output words whose attention peaks on their source position L + 1 - t."""
    src, tgt = pad_batch(pairs)  # (B, S), (B, T + 1)
    lengths = (src != PAD_IDX).sum(1) - 1  # L, without <eos>
    tokens, attn = model.greedy_decode(src, max_len=tgt.size(1) + 2,
                                       return_attention=True)  # (B, L'), (B, L', S)
    words = min(tokens.size(1), tgt.size(1) - 1)
    t = torch.arange(words)  # output word t + 1 is at index t
    is_word = t[None] < lengths[:, None]  # (B, words): the L words, not <eos>
    right = (tokens[:, :words] == tgt[:, 1:words + 1]) & is_word
    scores = {"length": lengths.tolist(),
              "word accuracy": (right.sum(1) / lengths).tolist()}
    if attn is not None:
        wanted = lengths[:, None] - 1 - t[None]  # source index of output word t + 1
        written = attn[:, :words].sum(-1) > 0  # a model that stopped early: 0 rows
        on_target = (attn[:, :words].argmax(-1) == wanted) & is_word & written
        scores["alignment"] = (on_target.sum(1) / lengths).tolist()
    return scores
