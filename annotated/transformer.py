# GENERATED FILE, DO NOT EDIT. It is exported from book/05_transformer.md
# by tools/export.py; change the chapter and run `make export` instead.
"""The Transformer (from book/05_transformer.md)."""


# %% book/05_transformer.md, code cell 3 (The Transformer)
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from annotated.attention import MultiHeadAttention, copy_from_torch_mha


# %% book/05_transformer.md, code cell 4 (Embeddings and positions)
def check_tokens(tokens: torch.Tensor, vocab_size: int, name: str = "tokens") -> None:
    """Raise a ValueError naming the values if `tokens` is not a non-empty (B, T) batch of ids < vocab_size."""
    if tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int, torch.int16, torch.uint8):
        raise TypeError(f"{name} must be a (batch, length) tensor of integer ids, "
                        f"got shape {tuple(tokens.shape)} and dtype {tokens.dtype}")
    if tokens.numel() == 0:
        raise ValueError(f"empty batch: {name} has shape {tuple(tokens.shape)}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} holds ids in [{low}, {high}], outside the vocabulary "
                         f"[0, {vocab_size - 1}] (vocab_size={vocab_size})")


class TokenEmbedding(nn.Module):
    """Token ids to vectors, scaled by sqrt(d_model)."""

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.vocab_size, self.d_model = vocab_size, d_model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_tokens(tokens, self.vocab_size)
        return self.embedding(tokens) * math.sqrt(self.d_model)  # (B, T, d_model)


# %% book/05_transformer.md, code cell 5 (Embeddings and positions)
def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """The (max_len, d_model) table of sinusoidal position encodings."""
    p = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2) / d_model)  # 1 / 10000^(2i/d)
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(p * inv_freq)
    table[:, 1::2] = torch.cos(p * inv_freq[: d_model // 2])
    return table


class PositionalEncoding(nn.Module):
    """Add sinusoidal (fixed) or learned position vectors, then dropout."""

    def __init__(self, d_model: int, max_len: int = 256, dropout: float = 0.1, learned: bool = False):
        super().__init__()
        self.max_len, self.learned = max_len, learned
        if learned:
            self.table = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        else:
            self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(1)  # x: (B, T, d_model)
        if T > self.max_len:
            raise ValueError(f"sequence of length {T} is longer than the positional table "
                             f"(max_len={self.max_len}); build the model with a larger max_len")
        return self.dropout(x + self.table[:T])


# %% book/05_transformer.md, code cell 8 (The encoder layer)
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear, activation, dropout, Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)  # W_1, b_1
        self.linear2 = nn.Linear(d_ff, d_model)  # W_2, b_2
        self.dropout = nn.Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))  # (B, T, d_model)


# %% book/05_transformer.md, code cell 9 (The encoder layer)
class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each with a residual connection and LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "relu"):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def _sa(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.dropout1(self.self_attn(x, x, x, mask))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, S, d_model); mask: True = may attend, broadcastable to (B, h, S, S)
        if self.norm_first:
            x = x + self._sa(self.norm1(x), mask)
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self._sa(x, mask))
        return self.norm2(x + self.dropout2(self.ff(x)))


# %% book/05_transformer.md, code cell 11 (The encoder layer)
class Encoder(nn.Module):
    """A stack of `n_layers` encoder layers followed by a final LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_layers: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "relu"):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first, activation)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)  # (B, S, d_model)
        return self.norm(x)


# %% book/05_transformer.md, code cell 13 (The encoder layer against PyTorch)
def _check_same_shape(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    if ours.shape != theirs.shape:
        raise ValueError(f"cannot copy {name}: ours has shape {tuple(ours.shape)}, "
                         f"PyTorch's has shape {tuple(theirs.shape)}")


@torch.no_grad()
def _copy_(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    _check_same_shape(name, ours, theirs)
    ours.copy_(theirs)


@torch.no_grad()
def _copy_linear_or_norm(ours: nn.Module, theirs: nn.Module, name: str = "") -> None:
    name = name or type(theirs).__name__
    _copy_(name + " weight", ours.weight, theirs.weight)
    _copy_(name + " bias", ours.bias, theirs.bias)


def copy_encoder_layer_from_torch(ours: EncoderLayer, theirs: nn.TransformerEncoderLayer) -> None:
    """Copy an `nn.TransformerEncoderLayer`'s weights into our `EncoderLayer`."""
    if ours.norm_first != theirs.norm_first:
        raise ValueError(f"norm_first differs: ours {ours.norm_first}, PyTorch's {theirs.norm_first}")
    copy_from_torch_mha(ours.self_attn, theirs.self_attn)
    _copy_linear_or_norm(ours.ff.linear1, theirs.linear1)
    _copy_linear_or_norm(ours.ff.linear2, theirs.linear2)
    _copy_linear_or_norm(ours.norm1, theirs.norm1)
    _copy_linear_or_norm(ours.norm2, theirs.norm2)


# %% book/05_transformer.md, code cell 15 (The course's encoder-only translator)
class EncoderOnlyTranslator(nn.Module):
    """The course's encoder-only translator: encoder over the source, then a position-wise projection."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 128, n_heads: int = 2,
                 n_layers: int = 2, d_ff: int = 512, dropout: float = 0.1, norm_first: bool = False,
                 *, pad_idx: int = 1, max_len: int = 256, learned_positions: bool = True):
        super().__init__()
        self.config = dict(kind="encoder-only", src_vocab=src_vocab, tgt_vocab=tgt_vocab,
                           d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff,
                           dropout=dropout, norm_first=norm_first, pad_idx=pad_idx,
                           max_len=max_len, learned_positions=learned_positions)
        self.pad_idx = pad_idx
        self.src_embed = TokenEmbedding(src_vocab, d_model)
        self.positions = PositionalEncoding(d_model, max_len, dropout, learned_positions)
        self.encoder = Encoder(d_model, n_heads, d_ff, n_layers, dropout, norm_first)
        self.generator = nn.Linear(d_model, tgt_vocab)

    def free_running_logits(self, src: torch.Tensor, tgt_len: int) -> torch.Tensor:
        """Logits for `tgt_len` target positions (B, tgt_len, V); they never depend on the target."""
        S = src.size(1)
        if S < tgt_len:  # pad the source so that there is one output position per target word
            src = F.pad(src, (0, tgt_len - S), value=self.pad_idx)
        mask = (src != self.pad_idx)[:, None, None, :]  # (B, 1, 1, max(S, T))
        h = self.encoder(self.positions(self.src_embed(src)), mask)
        return self.generator(h[:, :tgt_len])  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V): the target is used only for its length."""
        return self.free_running_logits(src, tgt.size(1))


# %% book/05_transformer.md, code cell 17 (The decoder)
class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the memory, feed-forward; each with residual + LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "relu"):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))
        self.norm_first = norm_first

    def forward(self, y: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        # y: (B, T, d_model), memory: (B, S, d_model); masks broadcast to (B, h, T, T) and (B, h, T, S)
        sa = lambda z: self.dropout1(self.self_attn(z, z, z, tgt_mask))  # noqa: E731
        ca = lambda z: self.dropout2(self.cross_attn(z, memory, memory, memory_mask))  # noqa: E731
        ff = lambda z: self.dropout3(self.ff(z))  # noqa: E731
        if self.norm_first:
            y = y + sa(self.norm1(y))
            y = y + ca(self.norm2(y))
            return y + ff(self.norm3(y))
        y = self.norm1(y + sa(y))
        y = self.norm2(y + ca(y))
        return self.norm3(y + ff(y))


class Decoder(nn.Module):
    """A stack of `n_layers` decoder layers followed by a final LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_layers: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "relu"):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, d_ff, dropout, norm_first, activation)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            y = layer(y, memory, tgt_mask, memory_mask)  # (B, T, d_model)
        return self.norm(y)


# %% book/05_transformer.md, code cell 19 (The full encoder-decoder)
def source_mask(src: torch.Tensor, pad_idx: int) -> torch.Tensor:
    """(B, 1, 1, S) boolean mask, True where the source token is not padding."""
    return (src != pad_idx)[:, None, None, :]


def target_mask(tgt: torch.Tensor, pad_idx: int) -> torch.Tensor:
    """(B, 1, T, T) boolean mask: causal and no padding keys."""
    T = tgt.size(1)
    causal = torch.ones(T, T, dtype=torch.bool, device=tgt.device).tril()  # (T, T)
    return causal[None, None] & (tgt != pad_idx)[:, None, None, :]


# %% book/05_transformer.md, code cell 20 (The full encoder-decoder)
class Transformer(nn.Module):
    """The encoder-decoder Transformer of Vaswani et al. (2017), batch-first."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 256, n_heads: int = 8,
                 n_layers: int = 3, d_ff: int = 1024, dropout: float = 0.1, norm_first: bool = False,
                 *, pad_idx: int = 1, sos_idx: int = 2, max_len: int = 256,
                 learned_positions: bool = False, tie_embeddings: bool = False,
                 n_decoder_layers: int | None = None, activation: str = "relu"):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        n_dec = n_layers if n_decoder_layers is None else n_decoder_layers
        self.config = dict(kind="encoder-decoder", src_vocab=src_vocab, tgt_vocab=tgt_vocab,
                           d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff,
                           dropout=dropout, norm_first=norm_first, pad_idx=pad_idx, sos_idx=sos_idx,
                           max_len=max_len, learned_positions=learned_positions,
                           tie_embeddings=tie_embeddings, n_decoder_layers=n_dec,
                           activation=activation)
        self.pad_idx, self.sos_idx = pad_idx, sos_idx
        self.src_embed = TokenEmbedding(src_vocab, d_model)
        self.tgt_embed = TokenEmbedding(tgt_vocab, d_model)
        self.src_positions = PositionalEncoding(d_model, max_len, dropout, learned_positions)
        self.tgt_positions = PositionalEncoding(d_model, max_len, dropout, learned_positions)
        self.encoder = Encoder(d_model, n_heads, d_ff, n_layers, dropout, norm_first, activation)
        self.decoder = Decoder(d_model, n_heads, d_ff, n_dec, dropout, norm_first, activation)
        self.generator = nn.Linear(d_model, tgt_vocab)
        self._reset_parameters(tie_embeddings)

    def _reset_parameters(self, tie: bool) -> None:
        for p in self.parameters():  # Xavier for every matrix, as in nn.Transformer
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        if tie:
            self.generator.weight = self.tgt_embed.embedding.weight

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a (B, S) source batch: memory (B, S, d_model) and its padding mask (B, 1, 1, S)."""
        mask = source_mask(src, self.pad_idx)
        return self.encoder(self.src_positions(self.src_embed(src)), mask), mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """Target-vocabulary logits (B, T, V) for a (B, T) target prefix given the memory."""
        y = self.tgt_positions(self.tgt_embed(tgt))  # (B, T, d_model)
        return self.generator(self.decoder(y, memory, target_mask(tgt, self.pad_idx), src_mask))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for source (B, S) and target input (B, T)."""
        memory, src_mask = self.encode(src)
        return self.decode(tgt, memory, src_mask)

    def free_running_logits(self, src: torch.Tensor, tgt_len: int) -> torch.Tensor:
        """Logits (B, tgt_len, V) when the decoder is fed its own greedy predictions (chapter 2)."""
        memory, src_mask = self.encode(src)
        ys = torch.full((src.size(0), 1), self.sos_idx, dtype=torch.long, device=src.device)
        steps = []
        for _ in range(tgt_len):
            logits = self.decode(ys, memory, src_mask)[:, -1]  # (B, V)
            steps.append(logits)
            ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
        return torch.stack(steps, dim=1)  # (B, tgt_len, V)


# %% book/05_transformer.md, code cell 22 (Equivalence with `torch.nn.Transformer`)
class TorchTransformer(nn.Module):
    """The same model built from `torch.nn.Transformer` (the reference for tests and timings)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 256, n_heads: int = 8,
                 n_layers: int = 3, d_ff: int = 1024, dropout: float = 0.1, norm_first: bool = False,
                 *, pad_idx: int = 1, max_len: int = 256):
        super().__init__()
        self.pad_idx, self.d_model = pad_idx, d_model
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, d_model), nn.Embedding(tgt_vocab, d_model)
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        with warnings.catch_warnings():  # PyTorch warns that pre-norm disables its nested-tensor path
            warnings.simplefilter("ignore", UserWarning)
            self.transformer = nn.Transformer(d_model, n_heads, n_layers, n_layers, d_ff, dropout,
                                              batch_first=True, norm_first=norm_first)
        self.generator = nn.Linear(d_model, tgt_vocab)

    def _embed(self, embed: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        x = embed(tokens) * math.sqrt(self.d_model)
        return self.dropout(x + self.table[: tokens.size(1)])

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        T = tgt.size(1)
        future = torch.ones(T, T, dtype=torch.bool, device=tgt.device).triu(1)  # True = hidden
        h = self.transformer(self._embed(self.src_embed, src), self._embed(self.tgt_embed, tgt),
                             tgt_mask=future, tgt_is_causal=True,
                             src_key_padding_mask=src == self.pad_idx,  # True = ignore (PyTorch)
                             tgt_key_padding_mask=tgt == self.pad_idx,
                             memory_key_padding_mask=src == self.pad_idx)
        return self.generator(h)


# %% book/05_transformer.md, code cell 23 (Equivalence with `torch.nn.Transformer`)
def copy_decoder_layer_from_torch(ours: DecoderLayer, theirs: nn.TransformerDecoderLayer) -> None:
    """Copy an `nn.TransformerDecoderLayer`'s weights into our `DecoderLayer`."""
    if ours.norm_first != theirs.norm_first:
        raise ValueError(f"norm_first differs: ours {ours.norm_first}, PyTorch's {theirs.norm_first}")
    copy_from_torch_mha(ours.self_attn, theirs.self_attn)
    copy_from_torch_mha(ours.cross_attn, theirs.multihead_attn)
    for mine, their in ((ours.ff.linear1, theirs.linear1), (ours.ff.linear2, theirs.linear2),
                        (ours.norm1, theirs.norm1), (ours.norm2, theirs.norm2),
                        (ours.norm3, theirs.norm3)):
        _copy_linear_or_norm(mine, their)


def copy_from_torch(ours: Transformer, theirs: TorchTransformer) -> None:
    """Copy every weight of a `TorchTransformer` (nn.Transformer + embeddings + generator) into ours."""
    enc, dec = theirs.transformer.encoder, theirs.transformer.decoder
    if (len(ours.encoder.layers), len(ours.decoder.layers)) != (len(enc.layers), len(dec.layers)):
        raise ValueError(f"layer counts differ: ours {len(ours.encoder.layers)}+"
                         f"{len(ours.decoder.layers)}, PyTorch's {len(enc.layers)}+{len(dec.layers)}")
    for mine, their in zip(ours.encoder.layers, enc.layers):
        copy_encoder_layer_from_torch(mine, their)
    for mine, their in zip(ours.decoder.layers, dec.layers):
        copy_decoder_layer_from_torch(mine, their)
    _copy_("source embedding", ours.src_embed.embedding.weight, theirs.src_embed.weight)
    _copy_("target embedding", ours.tgt_embed.embedding.weight, theirs.tgt_embed.weight)
    _copy_linear_or_norm(ours.encoder.norm, enc.norm, "final encoder LayerNorm")
    _copy_linear_or_norm(ours.decoder.norm, dec.norm, "final decoder LayerNorm")
    _copy_linear_or_norm(ours.generator, theirs.generator, "generator")


# %% book/05_transformer.md, code cell 25 (Decoding: greedy search and beam search)
def _check_decode_args(model: nn.Module, src: torch.Tensor, max_len: int, beam_size: int = 1) -> None:
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}")
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an integer >= 1, got {beam_size!r}")
    check_tokens(src, model.src_embed.vocab_size, "src")


def _eval_mode(fn: Callable) -> Callable:
    """Run `fn(model, ...)` without gradients and in eval mode, restoring the model's mode after."""
    def wrapper(model: nn.Module, *args, **kwargs):
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return fn(model, *args, **kwargs)
        finally:
            model.train(was_training)
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


# %% book/05_transformer.md, code cell 26 (Decoding: greedy search and beam search)
def _pad_after_eos(tokens: torch.Tensor, eos_idx: int, pad_idx: int) -> torch.Tensor:
    """Replace every token after the first <eos> of each row by <pad>."""
    after = (tokens == eos_idx).long().cumsum(1) - (tokens == eos_idx).long() > 0  # (B, L)
    return tokens.masked_fill(after, pad_idx)


def _never_pad_or_sos(logits: torch.Tensor, pad_idx: int, sos_idx: int) -> torch.Tensor:
    """Forbid generating <pad> or <sos> as a word: (..., V) logits with those two set to -inf."""
    logits = logits.clone()
    logits[..., [pad_idx, sos_idx]] = float("-inf")
    return logits


@_eval_mode
def greedy_decode(model: nn.Module, src: torch.Tensor, max_len: int, sos_idx: int,
                  eos_idx: int) -> torch.Tensor:
    """Greedy translations (B, <= max_len) of a source batch (B, S), without <sos>, <pad> after <eos>."""
    _check_decode_args(model, src, max_len)
    if isinstance(model, EncoderOnlyTranslator):  # all positions at once, independently
        logits = _never_pad_or_sos(model.free_running_logits(src, max_len), model.pad_idx, sos_idx)
        return _pad_after_eos(logits.argmax(-1), eos_idx, model.pad_idx)
    memory, src_mask = model.encode(src)  # (B, S, d_model), (B, 1, 1, S)
    ys = torch.full((src.size(0), 1), sos_idx, dtype=torch.long, device=src.device)  # (B, 1)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        logits = _never_pad_or_sos(model.decode(ys, memory, src_mask)[:, -1], model.pad_idx, sos_idx)
        next_word = logits.argmax(-1)  # (B,)
        next_word = next_word.masked_fill(done, model.pad_idx)
        ys = torch.cat([ys, next_word[:, None]], dim=1)
        done |= next_word == eos_idx
        if done.all():
            break
    return ys[:, 1:]


# %% book/05_transformer.md, code cell 27 (Decoding: greedy search and beam search)
@_eval_mode
def beam_search(model: Transformer, src: torch.Tensor, beam_size: int, max_len: int, sos_idx: int,
                eos_idx: int, length_penalty: float = 0.6, return_all: bool = False):
    """Beam-search translations (B, <= max_len); with return_all, all beams (B, k, L) and scores (B, k)."""
    _check_decode_args(model, src, max_len, beam_size)
    B, k, pad, device = src.size(0), beam_size, model.pad_idx, src.device
    memory, src_mask = model.encode(src)
    memory, src_mask = memory.repeat_interleave(k, 0), src_mask.repeat_interleave(k, 0)  # (B k, S, ...)
    ys = torch.full((B * k, 1), sos_idx, dtype=torch.long, device=device)  # (B k, 1)
    scores = torch.full((B, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live beam to start with, so the first step does not pick k copies
    finished = torch.zeros(B, k, dtype=torch.bool, device=device)
    alive = torch.arange(B, device=device)  # which sentences are still being searched
    out = torch.full((B, k, max_len), pad, dtype=torch.long, device=device)
    final = torch.zeros(B, k, device=device)
    for step in range(max_len):
        b = alive.numel()
        logits = _never_pad_or_sos(model.decode(ys, memory, src_mask)[:, -1], pad, sos_idx)
        logp = logits.log_softmax(-1)  # (b k, V)
        V = logp.size(-1)
        logp = logp.view(b, k, V).masked_fill(finished[..., None], float("-inf"))
        logp[..., pad] = torch.where(finished, 0.0, logp[..., pad])  # frozen beams: <pad> for free
        scores, index = (scores[..., None] + logp).view(b, k * V).topk(k, dim=-1)  # (b, k)
        beam, word = index // V, index % V
        rows = (beam + torch.arange(b, device=device)[:, None] * k).view(-1)
        ys = torch.cat([ys[rows], word.view(-1, 1)], dim=1)  # (b k, step + 2)
        finished = finished.gather(1, beam) | (word == eos_idx)
        done = finished.all(1) if step < max_len - 1 else torch.ones_like(finished[:, 0])  # (b,)
        if done.any():  # store the finished sentences and drop them from the batch
            out[alive[done], :, : step + 1] = ys.view(b, k, -1)[done, :, 1:]
            final[alive[done]] = scores[done]
            keep = ~done
            alive, scores, finished = alive[keep], scores[keep], finished[keep]
            keep_rows = keep.repeat_interleave(k)
            ys, memory, src_mask = ys[keep_rows], memory[keep_rows], src_mask[keep_rows]
            if alive.numel() == 0:
                break
    lengths = (out != pad).sum(-1)  # (B, k)
    out = out[..., : int(lengths.max())]
    normalised = final / ((5.0 + lengths.float()) / 6.0) ** length_penalty
    normalised, order = normalised.sort(dim=1, descending=True)
    out = out.gather(1, order[..., None].expand_as(out))
    return (out, normalised) if return_all else out[:, 0]


# %% book/05_transformer.md, code cell 29 (Looking inside: attention maps)
def attention_maps(model: Transformer) -> dict[str, list[torch.Tensor]]:
    """The attention weights of the model's last forward pass, per kind, a (B, h, q, k) tensor per layer."""
    return {"encoder self-attention": [layer.self_attn.attn for layer in model.encoder.layers],
            "decoder self-attention": [layer.self_attn.attn for layer in model.decoder.layers],
            "cross-attention": [layer.cross_attn.attn for layer in model.decoder.layers]}


# %% book/05_transformer.md, code cell 30 (Training recipe)
def noam_schedule(optimizer: torch.optim.Optimizer, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the optimizer's lr over `warmup` steps, then inverse-square-root decay."""
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1 step, got {warmup}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1))))


# %% book/05_transformer.md, code cell 31 (Training recipe)
def translate(model: nn.Module, dataset, tgt_vocab, *, beam_size: int = 1, max_tokens: int = 4000,
              extra_len: int = 10, length_penalty: float = 0.6) -> list[list[str]]:
    """English token lists for every sentence of `dataset` (in order), greedy or beam search."""
    from annotated.translation import EOS_IDX, SOS_IDX, make_loader

    device = next(model.parameters()).device
    out: list[list[str]] = []
    for src, _ in make_loader(dataset, max_tokens, shuffle=False, bucket=False):
        src, max_len = src.to(device), src.size(1) + extra_len
        if beam_size == 1:
            ids = greedy_decode(model, src, max_len, SOS_IDX, EOS_IDX)
        else:
            ids = beam_search(model, src, beam_size, max_len, SOS_IDX, EOS_IDX, length_penalty)
        out.extend(tgt_vocab.decode_batch(ids.cpu()))
    return out
