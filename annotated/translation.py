# GENERATED FILE, DO NOT EDIT. It is exported from book/02_translation.md
# by tools/export.py; change the chapter and run `make export` instead.
"""Translation data and the training loop (from book/02_translation.md)."""


# %% book/02_translation.md, code cell 3 (Translation data and the training loop)
import functools
import gzip
import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from annotated.plumbing import fetch
from annotated.training import model_device, process_share


# %% book/02_translation.md, code cell 4 (Multi30k: 31,014 captions in two languages)
MULTI30K_URL = (
    "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{}"
)
MULTI30K_FILES = {  # file name -> SHA-256 of the official gzipped file
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz":
        "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz":
        "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
}
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}


# %% book/02_translation.md, code cell 5 (Multi30k: 31,014 captions in two languages)
def read_lines(path: str | Path) -> list[str]:
    """The stripped lines of a UTF-8 text file, gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return [line.strip() for line in lines]


def load_multi30k(split: str) -> list[tuple[str, str]]:
    """The (German, English) pairs of Multi30k task-1 split 'train', 'val' or 'test'."""
    if split not in MULTI30K_SPLITS:
        raise ValueError(f"unknown Multi30k split {split!r}; "
                         f"choose one of {sorted(MULTI30K_SPLITS)}")
    paths = []
    for lang in ("de", "en"):
        name = f"{MULTI30K_SPLITS[split]}.{lang}.gz"
        paths.append(fetch(MULTI30K_URL.format(name), MULTI30K_FILES[name], "multi30k"))
    de, en = read_lines(paths[0]), read_lines(paths[1])
    if len(de) != len(en):
        raise ValueError(f"{paths[0].name} has {len(de)} lines but {paths[1].name} "
                         f"has {len(en)}: not a parallel corpus")
    return list(zip(de, en, strict=True))


# %% book/02_translation.md, code cell 7
# (Tokenisation, and the newline that was not there)
@functools.cache
def spacy_tokenizer(lang: str):
    """spaCy's rule-based tokenizer for 'de' or 'en' (no model download), cached."""
    import spacy

    return spacy.blank(lang).tokenizer


# %% book/02_translation.md, code cell 9
# (Tokenisation, and the newline that was not there)
def tokenize(text: str, lang: str) -> list[str]:
    """Lowercased spaCy tokens of `text` in `lang`, whitespace tokens dropped."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    doc = spacy_tokenizer(lang)(text.strip())
    return [t.text.lower() for t in doc if not t.is_space]


def tokenize_de(text: str) -> list[str]:
    """German tokens, lowercased (spaCy rules)."""
    return tokenize(text, "de")


def tokenize_en(text: str) -> list[str]:
    """English tokens, lowercased (spaCy rules)."""
    return tokenize(text, "en")


# %% book/02_translation.md, code cell 11
# (Tokenisation, and the newline that was not there)
_NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", ")", "]", "}", "%",
                    "'s", "n't", "'re", "'ve", "'ll", "'d", "'m", "'", "-", "/"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "-", "/"}


def detokenize_en(tokens: Sequence[str]) -> str:
    """Join English tokens, undoing spaCy's splits of punctuation, clitics, hyphens."""
    out: list[str] = []
    glue = True  # no space before the first token
    quote_open = False
    for tok in tokens:
        if tok == '"':
            quote_open = not quote_open
            out.append(tok if (glue or not quote_open) else " " + tok)
            glue = quote_open
            continue
        out.append(tok if (glue or tok in _NO_SPACE_BEFORE) else " " + tok)
        glue = tok in _NO_SPACE_AFTER
    return "".join(out)


# %% book/02_translation.md, code cell 13 (The vocabulary)
SPECIALS = ("<unk>", "<pad>", "<sos>", "<eos>")
UNK_IDX, PAD_IDX, SOS_IDX, EOS_IDX = range(4)


class Vocab:
    """Token <-> id maps with the specials <unk>=0, <pad>=1, <sos>=2, <eos>=3 first."""

    unk_idx, pad_idx, sos_idx, eos_idx = UNK_IDX, PAD_IDX, SOS_IDX, EOS_IDX

    def __init__(self, itos: Sequence[str]):
        itos = list(itos)
        if tuple(itos[:4]) != SPECIALS:
            raise ValueError(f"a Vocab must start with {SPECIALS}, "
                             f"got {tuple(itos[:4])}")
        if len(set(itos)) != len(itos):
            dupes = sorted(t for t, n in Counter(itos).items() if n > 1)
            raise ValueError(f"duplicate tokens in vocabulary: {dupes[:10]}")
        self.itos = itos
        self.stoi = {tok: i for i, tok in enumerate(itos)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 2) -> "Vocab":
        """Tokens seen at least `min_freq` times, by frequency then alphabetically."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts = Counter(tok for tokens in token_lists for tok in tokens)
        kept = [t for t, n in counts.items() if n >= min_freq and t not in SPECIALS]
        kept.sort(key=lambda t: (-counts[t], t))
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {self.itos[4:9]}...)"

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; tokens not in the vocabulary become <unk>."""
        if isinstance(tokens, str):
            raise TypeError("encode expects a list of tokens, not a str "
                            "(tokenize it first)")
        return [self.stoi.get(tok, UNK_IDX) for tok in tokens]

    def decode(self, ids: Sequence[int] | torch.Tensor,
               strip_specials: bool = True) -> list[str]:
        """Tokens of `ids`; strip_specials: stop at first <eos>, drop <sos>/<pad>."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError("decode expects a 1-D sequence of ids, "
                                 f"got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        bad = [i for i in ids if not 0 <= i < len(self.itos)]
        if bad:
            raise ValueError(f"ids {bad[:5]} out of range for a vocabulary of "
                             f"{len(self.itos)} tokens")
        if not strip_specials:
            return [self.itos[i] for i in ids]
        out = []
        for i in ids:
            if i == EOS_IDX:
                break
            if i not in (SOS_IDX, PAD_IDX):
                out.append(self.itos[i])
        return out

    def decode_batch(self, ids: torch.Tensor,
                     strip_specials: bool = True) -> list[list[str]]:
        """decode() for each row of a (B, T) tensor of ids."""
        if ids.dim() != 2:
            raise ValueError("decode_batch expects (B, T) ids, "
                             f"got shape {tuple(ids.shape)}")
        return [self.decode(row, strip_specials) for row in ids]

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        payload = {"format": "annotated.Vocab/1", "itos": self.itos}
        tmp.write_text(json.dumps(payload, ensure_ascii=False))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        """Read a vocabulary written by save()."""
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
            itos = payload["itos"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a saved Vocab "
                             f"({type(err).__name__}: {err})") from None
        return cls(itos)

    def digest(self) -> str:
        """A short fingerprint: the sha256 of the words in id order (16 hex digits)."""
        return hashlib.sha256("\n".join(self.itos).encode()).hexdigest()[:16]


def vocab_size(value, name: str) -> int:
    """The size a model config asks for, from an int or from a Vocab (its length)."""
    if isinstance(value, Vocab):
        return len(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a vocabulary size (an int) or a Vocab, "
                        f"got {type(value).__name__}")
    return value


# %% book/02_translation.md, code cell 24 (From sentences to tensors)
class TranslationDataset(Dataset):
    """Pairs of id lists: source x_1..x_n <eos>, target <sos> y_1..y_m <eos>."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]], index: list[int],
                 skipped: dict[str, int]):
        self.src, self.tgt = src, tgt
        self.index = index  # position of each example in the pairs it was made from
        self.skipped = skipped  # {"empty": n, "overlong": n} pairs left out
        self.pad_idx = PAD_IDX

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.src[i], self.tgt[i]

    def __repr__(self) -> str:
        return f"TranslationDataset({len(self)} pairs, skipped {self.skipped})"


# %% book/02_translation.md, code cell 25 (From sentences to tensors)
def make_dataset(pairs: Sequence[tuple], src_vocab: Vocab, tgt_vocab: Vocab,
                 max_len: int | None = None, overlong: str = "drop",
                 src_tokenize: Callable[[str], list[str]] = tokenize_de,
                 tgt_tokenize: Callable[[str], list[str]] = tokenize_en
                 ) -> TranslationDataset:
    """Tokenise (unless token lists) and encode pairs; drop empty, over-long ones."""
    if overlong not in ("drop", "truncate"):
        raise ValueError(f"overlong must be 'drop' or 'truncate', got {overlong!r}")
    if max_len is not None and max_len < 1:
        raise ValueError("max_len must be a positive number of tokens or None, "
                         f"got {max_len}")
    src, tgt, index, skipped = [], [], [], {"empty": 0, "overlong": 0}
    for i, (s, t) in enumerate(pairs):
        s = src_tokenize(s) if isinstance(s, str) else list(s)
        t = tgt_tokenize(t) if isinstance(t, str) else list(t)
        if not s or not t:
            skipped["empty"] += 1
            continue
        if max_len is not None and max(len(s), len(t)) > max_len:
            if overlong == "drop":
                skipped["overlong"] += 1
                continue
            s, t = s[:max_len], t[:max_len]
        src.append(src_vocab.encode(s) + [EOS_IDX])
        tgt.append([SOS_IDX] + tgt_vocab.encode(t) + [EOS_IDX])
        index.append(i)
    return TranslationDataset(src, tgt, index, skipped)


# %% book/02_translation.md, code cell 27 (Padding, and how much of it bucketing saves)
def pad_batch(examples: Sequence[tuple[Sequence[int], Sequence[int]]],
              pad_idx: int = PAD_IDX) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (src, tgt) id lists into LongTensors (B, S), (B, T), padded at the end."""
    if len(examples) == 0:
        raise ValueError("cannot make a batch out of zero examples")
    out = []
    for side in (0, 1):
        seqs = [ex[side] for ex in examples]
        longest = max(map(len, seqs))
        batch = torch.full((len(seqs), longest), pad_idx, dtype=torch.long)  # (B, L)
        for row, seq in enumerate(seqs):
            batch[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        out.append(batch)
    return out[0], out[1]


# %% book/02_translation.md, code cell 28 (Padding, and how much of it bucketing saves)
class TokenBatchSampler(Sampler[list[int]]):
    """Index batches with B * max(S, T) <= max_tokens, optionally bucketed by length."""

    def __init__(self, dataset: TranslationDataset, max_tokens: int,
                 shuffle: bool = True, seed: int = 0, bucket: bool = True,
                 shard: bool | None = None):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.src_len = [len(s) for s in dataset.src]
        self.tgt_len = [len(t) for t in dataset.tgt]
        self.max_tokens, self.shuffle = max_tokens, shuffle
        self.seed, self.bucket = seed, bucket
        self.shard = shuffle if shard is None else shard  # torchrun: one share each
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration draws (0-based), as DistributedSampler's."""
        self.epoch = epoch

    def state_dict(self) -> dict:
        """Where the sampler is: what a resumed training run puts back."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of one epoch (deterministic given seed and epoch)."""
        g = torch.Generator().manual_seed(self.seed + epoch)
        n = len(self.src_len)
        order = list(range(n))
        if self.shuffle:
            order = torch.randperm(n, generator=g).tolist()
        if self.bucket:  # stable sort: equal lengths keep their random order
            order.sort(key=lambda i: (self.src_len[i], self.tgt_len[i]))
        batches, current, longest = [], [], 0
        for i in order:
            size = max(self.src_len[i], self.tgt_len[i])
            if current and (len(current) + 1) * max(longest, size) > self.max_tokens:
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, size)
        if current:
            batches.append(current)
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[j] for j in perm]
        return process_share(batches) if self.shard else batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        return len(self.batches(self.epoch))


# %% book/02_translation.md, code cell 29 (Padding, and how much of it bucketing saves)
def make_loader(dataset: TranslationDataset, max_tokens: int, shuffle: bool = True,
                seed: int = 0, bucket: bool = True,
                shard: bool | None = None) -> DataLoader:
    """A DataLoader of (src (B, S), tgt (B, T)) id batches under a token budget."""
    sampler = TokenBatchSampler(dataset, max_tokens, shuffle=shuffle, seed=seed,
                                bucket=bucket, shard=shard)
    return DataLoader(dataset, batch_sampler=sampler,
                      collate_fn=functools.partial(pad_batch, pad_idx=dataset.pad_idx))


def padding_fraction(loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
                     pad_idx: int = PAD_IDX) -> float:
    """The padded share of all (src and tgt) positions in one pass over `loader`."""
    pads = total = 0
    for src, tgt in loader:
        pads += int((src == pad_idx).sum() + (tgt == pad_idx).sum())
        total += src.numel() + tgt.numel()
    return pads / total


# %% book/02_translation.md, code cell 34 (A bundle for the later chapters)
@dataclass
class TranslationData:
    """Multi30k de->en, ready to batch: raw pairs, vocabularies, datasets per split."""

    src_vocab: Vocab
    tgt_vocab: Vocab
    train: TranslationDataset
    val: TranslationDataset
    test: TranslationDataset
    train_pairs: list[tuple[str, str]]
    val_pairs: list[tuple[str, str]]
    test_pairs: list[tuple[str, str]]


def prepare_multi30k(train_size: int | None = None, val_size: int | None = None,
                     test_size: int | None = None, min_freq: int = 2,
                     max_len: int | None = None) -> TranslationData:
    """Load the first train/val/test_size pairs, vocabularies from train, encode all."""
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    pairs = {s: load_multi30k(s)[:n] for s, n in sizes.items()}
    src_tok = [tokenize_de(de) for de, _ in pairs["train"]]
    tgt_tok = [tokenize_en(en) for _, en in pairs["train"]]
    src_vocab = Vocab.build(src_tok, min_freq)
    tgt_vocab = Vocab.build(tgt_tok, min_freq)
    train = make_dataset(list(zip(src_tok, tgt_tok)), src_vocab, tgt_vocab,
                         max_len=max_len)
    val = make_dataset(pairs["val"], src_vocab, tgt_vocab)
    test = make_dataset(pairs["test"], src_vocab, tgt_vocab)
    return TranslationData(src_vocab, tgt_vocab, train, val, test,
                           pairs["train"], pairs["val"], pairs["test"])


# %% book/02_translation.md, code cell 35 (The loss, and perplexity)
def sequence_loss(logits: torch.Tensor, targets: torch.Tensor,
                  pad_idx: int = PAD_IDX, label_smoothing: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(loss to optimise: mean per non-pad token, summed plain CE, non-pad tokens)."""
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(f"logits must be (B, T, V) and targets (B, T); "
                         f"got {tuple(logits.shape)} and {tuple(targets.shape)}")
    log_p = logits.float().log_softmax(dim=-1)  # (B, T, V)
    mask = targets != pad_idx  # (B, T)
    n_tokens = int(mask.sum())
    nll = -log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)[mask]  # (n_tokens,)
    nll_sum = nll.sum()
    loss = nll_sum
    if label_smoothing > 0:
        uniform = -log_p.mean(dim=-1)[mask]  # (n_tokens,)
        loss = (1 - label_smoothing) * nll_sum + label_smoothing * uniform.sum()
    return loss / max(n_tokens, 1), nll_sum.detach(), n_tokens


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(summed cross-entropy / number of tokens); inf when that overflows a float."""
    if n_tokens <= 0:
        raise ValueError("perplexity of zero tokens is undefined "
                         f"(n_tokens={n_tokens})")
    mean = float(nll_sum) / n_tokens
    # exp(709.8) is the largest double
    return math.exp(mean) if mean < 709.0 else math.inf


# %% book/02_translation.md, code cell 38 (One training step, written out)
def teacher_forcing_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], *,
                         label_smoothing: float = 0.0,
                         pad_idx: int = PAD_IDX) -> tuple[torch.Tensor, float, int]:
    """fit()'s step for a translation model: (loss, summed plain CE, target tokens)."""
    device = model_device(model)
    src, tgt = batch[0].to(device), batch[1].to(device)  # (B, S), (B, T + 1)
    logits = model(src, tgt[:, :-1])  # (B, T, V)
    loss, nll_sum, n = sequence_loss(logits, tgt[:, 1:], pad_idx, label_smoothing)
    return loss, float(nll_sum), n


# %% book/02_translation.md, code cell 39 (One training step, written out)
@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, *, max_steps: int | None = None,
             pad_idx: int = PAD_IDX) -> dict:
    """Teacher-forced CE and perplexity over all non-pad target tokens of `loader`."""
    device = model_device(model)
    model.eval()
    nll_total, tokens = 0.0, 0
    for step, (src, tgt) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        src, tgt = src.to(device), tgt.to(device)
        _, nll_sum, n = sequence_loss(model(src, tgt[:, :-1]), tgt[:, 1:], pad_idx)
        nll_total, tokens = nll_total + float(nll_sum), tokens + n
    return {"loss": nll_total / max(tokens, 1), "ppl": perplexity(nll_total, tokens),
            "tokens": tokens}


# %% book/02_translation.md, code cell 40 (Free-running perplexity)
@torch.no_grad()
def free_running_perplexity(model: nn.Module, loader: Iterable, *,
                            max_steps: int | None = None,
                            pad_idx: int = PAD_IDX) -> dict:
    """CE and perplexity of the references while the model reads its own greedy output.

    The model must implement ``free_running_logits(src, tgt_len)``: for ``src`` (B, S),
    decode greedily from <sos> for exactly ``tgt_len`` steps, feeding back each step's
    argmax (not stopping at <eos>), and return the logits of every step,
    (B, tgt_len, V). They are scored against ``tgt[:, 1:]``, padding ignored.
    """
    if not callable(getattr(model, "free_running_logits", None)):
        raise TypeError(f"{type(model).__name__} has no "
                        f"free_running_logits(src, tgt_len) method "
                        f"(see the protocol in annotated.translation)")
    device = model_device(model)
    model.eval()
    nll_total, tokens = 0.0, 0
    for step, (src, tgt) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        src, tgt_out = src.to(device), tgt[:, 1:].to(device)  # (B, S), (B, T)
        logits = model.free_running_logits(src, tgt_out.size(1))  # (B, T, V)
        _, nll_sum, n = sequence_loss(logits, tgt_out, pad_idx)
        nll_total, tokens = nll_total + float(nll_sum), tokens + n
    return {"loss": nll_total / max(tokens, 1), "ppl": perplexity(nll_total, tokens),
            "tokens": tokens}


# %% book/02_translation.md, code cell 42 (The loss curves)
def plot_history(history: dict, title: str | None = None):
    """Training and validation loss and perplexity per epoch, the best epoch marked."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key, style in (("train", "-o"), ("val", "-s")):
        ax_loss.plot(history["epoch"], history[f"{key}_loss"], style, ms=3, label=key)
        ppl = [math.exp(v) for v in history[f"{key}_loss"]]
        ax_ppl.plot(history["epoch"], ppl, style, ms=3, label=key)
    for ax, name in ((ax_loss, "cross-entropy (nats/token)"), (ax_ppl, "perplexity")):
        if history.get("best_epoch"):
            ax.axvline(history["best_epoch"], color="grey", ls=":", lw=1,
                       label="best epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    # a log scale labelled at 1, 2, 5, 10, 20, 50, ...: readable at any range
    ax_ppl.set_yscale("log")
    ax_ppl.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax_ppl.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_ppl.yaxis.set_minor_formatter(NullFormatter())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# %% book/02_translation.md, code cell 43 (BLEU, two ways)
def sacrebleu_corpus(hypotheses: Sequence[str],
                     references: Sequence[str]) -> tuple[float, str]:
    """Case-insensitive sacreBLEU, detokenised vs raw references: (score, signature)."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but "
                         f"{len(references)} references")
    if not hypotheses:
        raise ValueError("BLEU of an empty corpus is undefined")
    bleu = BLEU(lowercase=True)
    score = bleu.corpus_score(list(hypotheses), [list(references)])
    return score.score, str(bleu.get_signature())


# %% book/02_translation.md, code cell 44 (BLEU, two ways)
def tokenized_bleu(hyp_tokens: Sequence[Sequence[str]],
                   ref_tokens: Sequence[Sequence[str]]) -> float:
    """The tutorials' 'tokenised BLEU': corpus BLEU of given tokens, no smoothing."""
    from sacrebleu.metrics import BLEU

    if len(hyp_tokens) != len(ref_tokens):
        raise ValueError(f"{len(hyp_tokens)} hypotheses but "
                         f"{len(ref_tokens)} references")
    if not hyp_tokens:
        raise ValueError("BLEU of an empty corpus is undefined")
    for tokens in (*hyp_tokens[:1], *ref_tokens[:1]):
        if isinstance(tokens, str):
            raise TypeError("tokenized_bleu expects lists of tokens, not strings")
    bleu = BLEU(tokenize="none", smooth_method="none", force=True)
    hyps = [" ".join(t) for t in hyp_tokens]
    return bleu.corpus_score(hyps, [[" ".join(t) for t in ref_tokens]]).score


# %% book/02_translation.md, code cell 46 (BLEU, two ways)
def bleu_report(hyp_tokens: Sequence[Sequence[str]],
                pairs: Sequence[tuple[str, str]]) -> dict:
    """Both BLEUs of token-list hypotheses vs the raw English references of `pairs`."""
    references = [en for _, en in pairs]
    texts = [detokenize_en(t) for t in hyp_tokens]
    score, signature = sacrebleu_corpus(texts, references)
    ref_tokens = [tokenize_en(r) for r in references]
    return {"sacrebleu": score, "signature": signature,
            "tokenized_bleu": tokenized_bleu(hyp_tokens, ref_tokens)}


# %% book/02_translation.md, code cell 47 (BLEU, two ways)
Decode = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]


def greedy_method(model: nn.Module, src: torch.Tensor, max_len: int) -> torch.Tensor:
    """translate()'s default decode: the model's own greedy_decode(src, max_len)."""
    if not callable(getattr(model, "greedy_decode", None)):
        raise TypeError(f"a {type(model).__name__} has no greedy_decode method: pass "
                        "decode=annotated.transformer.greedy_decode (any family) or "
                        "beam_search_decoder(k)")
    return model.greedy_decode(src, max_len)


def check_vocab_size(model: nn.Module, vocab: Vocab, name: str) -> None:
    """Raise unless `vocab` has the size model.cfg gives `name` (src_/tgt_vocab)."""
    size = getattr(getattr(model, "cfg", None), name, None)
    if size is not None and len(vocab) != size:
        raise ValueError(f"{name} has {len(vocab):,} words but the model was built "
                         f"for {size:,}: it is another data set's vocabulary")


@torch.no_grad()
def translate(model: nn.Module, dataset: TranslationDataset, tgt_vocab: Vocab, *,
              decode: Decode = greedy_method, bucket: bool = True,
              max_tokens: int = 4000, extra_len: int = 10) -> list[list[str]]:
    """English token lists for every sentence of `dataset`, in the data set's order."""
    check_vocab_size(model, tgt_vocab, "tgt_vocab")
    model.eval()
    device = model_device(model)
    hypotheses: list[list[str]] = [[] for _ in dataset.src]
    sampler = TokenBatchSampler(dataset, max_tokens, shuffle=False, bucket=bucket)
    for idx in sampler.batches(0):
        src, _ = pad_batch([dataset[i] for i in idx], dataset.pad_idx)  # (B, S)
        ids = decode(model, src.to(device), src.size(1) + extra_len)  # (B, L)
        for i, row in zip(idx, ids.cpu()):
            hypotheses[i] = tgt_vocab.decode(row)
    return hypotheses


# %% book/02_translation.md, code cell 49 (The loop at work: a baseline)
class BagOfWordsTranslator(nn.Module):
    """Baseline: the next word from the previous one and the mean source embedding."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d: int = 128,
                 dropout: float = 0.1):
        super().__init__()
        self.src_emb = nn.Embedding(src_vocab_size, d, padding_idx=PAD_IDX)
        self.tgt_emb = nn.Embedding(tgt_vocab_size, d, padding_idx=PAD_IDX)
        self.hidden = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(d, tgt_vocab_size)

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        """Mean embedding of the non-pad source tokens: (B, S) -> (B, d)."""
        keep = (src != PAD_IDX).unsqueeze(-1).float()  # (B, S, 1)
        return (self.src_emb(src) * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B, d)

    def step(self, x_bar: torch.Tensor, y_prev: torch.Tensor) -> torch.Tensor:
        """Logits for the next word: x_bar (B, d), y_prev (B, T) -> (B, T, V)."""
        x_bar = x_bar.unsqueeze(1).expand(-1, y_prev.size(1), -1)  # (B, T, d)
        return self.out(self.hidden(torch.cat([self.tgt_emb(y_prev), x_bar], dim=-1)))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: (B, S), (B, T) -> logits (B, T, V)."""
        return self.step(self.encode(src), tgt_in)

    def free_running_logits(self, src: torch.Tensor, tgt_len: int) -> torch.Tensor:
        """Greedy, fed its own argmax, for tgt_len steps from <sos>: (B, tgt_len, V)."""
        x_bar = self.encode(src)  # (B, d)
        y = torch.full((src.size(0), 1), SOS_IDX, dtype=torch.long,
                       device=src.device)  # (B, 1)
        steps = []
        for _ in range(tgt_len):
            logits = self.step(x_bar, y)  # (B, 1, V)
            steps.append(logits)
            y = logits.argmax(-1)  # (B, 1)
        return torch.cat(steps, dim=1)  # (B, tgt_len, V)
