# GENERATED FILE, DO NOT EDIT. It is exported from book/05_transformer.md
# by tools/export.py; change the chapter and run `make export` instead.
"""The Transformer (from book/05_transformer.md)."""


# %% book/05_transformer.md, code cell 3 (The Transformer)
import functools
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from annotated.attention import (
    MultiHeadAttention, causal_mask, copy_from_torch_mha, padding_mask,
    scaled_dot_product_attention)
from annotated.seq2seq import Seq2Seq, _check_src


# %% book/05_transformer.md, code cell 4 (Embeddings and positions)
def check_tokens(tokens: torch.Tensor, vocab_size: int, name: str = "tokens") -> None:
    """Raise, naming the values, unless `tokens` is a non-empty (B, T) batch of ids."""
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a (batch, length) tensor of int64 ids, "
                        f"got a {type(tokens).__name__}")
    if tokens.dim() != 2 or tokens.dtype != torch.long:  # as the data's, and Seq2Seq's
        raise TypeError(f"{name} must be a (batch, length) tensor of int64 ids, "
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
    # 1 / 10000^(2i/d), one frequency per pair of dimensions
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2) / d_model)
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(p * inv_freq)
    table[:, 1::2] = torch.cos(p * inv_freq[: d_model // 2])
    return table


class PositionalEncoding(nn.Module):
    """Add sinusoidal (fixed) or learned position vectors, then dropout."""

    def __init__(self, d_model: int, max_len: int = 256, dropout: float = 0.1,
                 learned: bool = False):
        super().__init__()
        self.max_len, self.learned = max_len, learned
        if learned:
            self.table = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        else:
            self.register_buffer("table", sinusoidal_table(max_len, d_model),
                                 persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x (B, T, d_model) holds positions offset, ..., offset + T - 1."""
        end = offset + x.size(1)
        if end > self.max_len:
            raise ValueError(f"sequence of length {end} is longer than the positional "
                             f"table (max_len={self.max_len}); build the model with a "
                             "larger max_len")
        return self.dropout(x + self.table[offset:end])


# %% book/05_transformer.md, code cell 8 (The encoder layer)
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "gelu": F.gelu}


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear, activation, dropout, Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1,
                 activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)  # W_1, b_1
        self.linear2 = nn.Linear(d_ff, d_model)  # W_2, b_2
        self.dropout = nn.Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.activation(self.linear1(x)))  # (B, T, d_ff)
        return self.linear2(h)  # (B, T, d_model)


# %% book/05_transformer.md, code cell 9 (The encoder layer)
class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each with a residual and a LayerNorm."""

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

    def forward(self, x: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, S, d_model); mask: True = may attend, broadcastable to (B, h, S, S)
        if self.norm_first:
            x = x + self._sa(self.norm1(x), mask)
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self._sa(x, mask))
        return self.norm2(x + self.dropout2(self.ff(x)))


# %% book/05_transformer.md, code cell 11 (The encoder layer)
class Encoder(nn.Module):
    """A stack of `n_layers` encoder layers followed by a final LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_layers: int,
                 dropout: float = 0.1, norm_first: bool = False,
                 activation: str = "relu"):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first, activation)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
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


def copy_encoder_layer_from_torch(ours: EncoderLayer,
                                  theirs: nn.TransformerEncoderLayer) -> None:
    """Copy an `nn.TransformerEncoderLayer`'s weights into our `EncoderLayer`."""
    if ours.norm_first != theirs.norm_first:
        raise ValueError(f"norm_first differs: ours {ours.norm_first}, "
                         f"PyTorch's {theirs.norm_first}")
    copy_from_torch_mha(ours.self_attn, theirs.self_attn)
    _copy_linear_or_norm(ours.ff.linear1, theirs.linear1)
    _copy_linear_or_norm(ours.ff.linear2, theirs.linear2)
    _copy_linear_or_norm(ours.norm1, theirs.norm1)
    _copy_linear_or_norm(ours.norm2, theirs.norm2)


# %% book/05_transformer.md, code cell 15 (The course's encoder-only translator)
@dataclass
class EncoderOnlyConfig:
    """Sizes and choices of the course's encoder-only translator."""

    src_vocab: int  # German vocabulary size V_src
    tgt_vocab: int  # English vocabulary size V
    d_model: int = 128  # width of every residual stream
    n_heads: int = 2  # h, attention heads per layer; d_k = d_model / h
    n_layers: int = 2  # N, encoder layers
    d_ff: int = 512  # inner width of the feed-forward networks
    dropout: float = 0.1  # on positions, attention weights and sub-layer outputs
    norm_first: bool = False  # pre-norm (True) or the paper's post-norm (False)
    pad_idx: int = 1  # id of <pad> in both vocabularies (chapter 2's numbering)
    max_len: int = 256  # longest sequence the position table covers
    learned_positions: bool = True  # a learned table (the course's), not the sinusoids
    init: str = "xavier"  # "xavier": as the Transformer; "default": PyTorch's own

    def __post_init__(self):
        from annotated.translation import vocab_size

        self.src_vocab = vocab_size(self.src_vocab, "src_vocab")  # a Vocab: its size
        self.tgt_vocab = vocab_size(self.tgt_vocab, "tgt_vocab")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by "
                             f"n_heads={self.n_heads}")
        if self.init not in ("xavier", "default"):
            raise ValueError(f"init must be 'xavier' or 'default', got {self.init!r}")


# %% book/05_transformer.md, code cell 16 (The course's encoder-only translator)
def xavier_init_(model: nn.Module) -> None:
    """Xavier-uniform for every parameter with two or more dimensions, in place."""
    for p in model.parameters():  # as nn.Transformer does
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


# %% book/05_transformer.md, code cell 17 (The course's encoder-only translator)
class EncoderOnlyTranslator(nn.Module):
    """The course's translator: an encoder, then a projection at every position."""

    def __init__(self, cfg: EncoderOnlyConfig):
        super().__init__()
        self.cfg, self.pad_idx = cfg, cfg.pad_idx  # pad_idx: read by the decoders
        self.src_embed = TokenEmbedding(cfg.src_vocab, cfg.d_model)
        self.positions = PositionalEncoding(cfg.d_model, cfg.max_len, cfg.dropout,
                                            cfg.learned_positions)
        self.encoder = Encoder(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.n_layers,
                               cfg.dropout, cfg.norm_first)
        self.generator = nn.Linear(cfg.d_model, cfg.tgt_vocab)
        if cfg.init == "xavier":
            xavier_init_(self)

    def free_running_logits(self, src: torch.Tensor, tgt_len: int) -> torch.Tensor:
        """Logits (B, tgt_len, V) for `tgt_len` target positions; no target is read."""
        S = src.size(1)
        if S < tgt_len:  # pad the source: one output position per target word
            src = F.pad(src, (0, tgt_len - S), value=self.pad_idx)
        x = self.positions(self.src_embed(src))  # (B, max(S, T), d_model)
        mask = padding_mask(src, self.pad_idx)[:, None, None, :]  # (B, 1, 1, max(S, T))
        return self.generator(self.encoder(x, mask)[:, :tgt_len])  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V): the target is used only for its length."""
        return self.free_running_logits(src, tgt.size(1))

    def greedy_decode(self, src: torch.Tensor, max_len: int,
                      return_attention: bool = False):
        """Seq2Seq's method for this family too: greedy_decode(self, ...), below."""
        return greedy_decode(self, src, max_len, return_attention=return_attention)


# %% book/05_transformer.md, code cell 19 (The decoder)
class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention, feed-forward; residual + LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "relu"):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (
            nn.Dropout(dropout) for _ in range(3))
        self.norm_first = norm_first

    def forward(self, y: torch.Tensor, memory: torch.Tensor,
                tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        # y: (B, T, d_model), memory: (B, S, d_model);
        # the masks broadcast to (B, h, T, T) and (B, h, T, S)
        sa = lambda z: self.dropout1(self.self_attn(z, z, z, tgt_mask))
        ca = lambda z: self.dropout2(self.cross_attn(z, memory, memory, memory_mask))
        return self.residuals(y, sa, ca)

    def residuals(self, y: torch.Tensor, sa, ca) -> torch.Tensor:
        """The three sublayers (self-attention sa, cross-attention ca, the MLP) with
        their residuals and LayerNorms, in either placement."""
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

    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_layers: int,
                 dropout: float = 0.1, norm_first: bool = False,
                 activation: str = "relu"):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, d_ff, dropout, norm_first, activation)
            for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, y: torch.Tensor, memory: torch.Tensor,
                tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            y = layer(y, memory, tgt_mask, memory_mask)  # (B, T, d_model)
        return self.norm(y)


# %% book/05_transformer.md, code cell 21 (The full encoder-decoder)
def source_mask(src: torch.Tensor, pad_idx: int) -> torch.Tensor:
    """(B, 1, 1, S) boolean mask, True where the source token is not padding."""
    return padding_mask(src, pad_idx)[:, None, None, :]


def target_mask(tgt: torch.Tensor, pad_idx: int) -> torch.Tensor:
    """(B, 1, T, T) boolean mask: causal and no padding keys."""
    causal = causal_mask(tgt.size(1), tgt.device)  # (T, T), True where j <= i
    return causal[None, None] & padding_mask(tgt, pad_idx)[:, None, None, :]


# %% book/05_transformer.md, code cell 22 (The full encoder-decoder)
@dataclass
class TransformerConfig:
    """Sizes and choices of the encoder-decoder Transformer."""

    src_vocab: int  # German vocabulary size V_src
    tgt_vocab: int  # English vocabulary size V
    d_model: int = 256  # width of every residual stream
    n_heads: int = 8  # h, attention heads per layer; d_k = d_model / h
    n_layers: int = 3  # N, layers of the encoder and, as many, of the decoder
    d_ff: int = 1024  # inner width of the feed-forward networks
    dropout: float = 0.1  # on positions, attention weights and sub-layer outputs
    norm_first: bool = False  # pre-norm (True) or the paper's post-norm (False)
    pad_idx: int = 1  # id of <pad> in both vocabularies (chapter 2's numbering)
    sos_idx: int = 2  # id of <sos>, the decoder's first input when it generates
    max_len: int = 256  # longest sentence the position tables cover
    learned_positions: bool = False  # learned position tables instead of sinusoids
    tie_embeddings: bool = False  # the generator shares the target embedding matrix
    activation: str = "relu"  # of the feed-forward networks: "relu" or "gelu"

    def __post_init__(self):
        from annotated.translation import vocab_size

        self.src_vocab = vocab_size(self.src_vocab, "src_vocab")  # a Vocab: its size
        self.tgt_vocab = vocab_size(self.tgt_vocab, "tgt_vocab")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by "
                             f"n_heads={self.n_heads}")


# %% book/05_transformer.md, code cell 23 (The full encoder-decoder)
class Transformer(nn.Module):
    """The encoder-decoder Transformer of Vaswani et al. (2017), batch-first."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.pad_idx, self.sos_idx = cfg.pad_idx, cfg.sos_idx  # read by the decoders
        d = cfg.d_model
        self.src_embed = TokenEmbedding(cfg.src_vocab, d)
        self.tgt_embed = TokenEmbedding(cfg.tgt_vocab, d)
        self.src_positions = PositionalEncoding(d, cfg.max_len, cfg.dropout,
                                                cfg.learned_positions)
        self.tgt_positions = PositionalEncoding(d, cfg.max_len, cfg.dropout,
                                                cfg.learned_positions)
        self.encoder = Encoder(d, cfg.n_heads, cfg.d_ff, cfg.n_layers, cfg.dropout,
                               cfg.norm_first, cfg.activation)
        self.decoder = Decoder(d, cfg.n_heads, cfg.d_ff, cfg.n_layers, cfg.dropout,
                               cfg.norm_first, cfg.activation)
        self.generator = nn.Linear(d, cfg.tgt_vocab)
        self._reset_parameters(cfg.tie_embeddings)

    def _reset_parameters(self, tie: bool) -> None:
        xavier_init_(self)  # every matrix, as in nn.Transformer
        if tie:
            self.generator.weight = self.tgt_embed.embedding.weight

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory (B, S, d_model) of a (B, S) source batch and its mask (B, 1, 1, S)."""
        x = self.src_positions(self.src_embed(src))  # (B, S, d_model)
        mask = source_mask(src, self.pad_idx)
        return self.encoder(x, mask), mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor,
               src_mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) over the target vocabulary for a (B, T) target prefix."""
        y = self.tgt_positions(self.tgt_embed(tgt))  # (B, T, d_model)
        y = self.decoder(y, memory, target_mask(tgt, self.pad_idx), src_mask)
        return self.generator(y)  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for source (B, S) and target input (B, T)."""
        memory, src_mask = self.encode(src)
        return self.decode(tgt, memory, src_mask)

    def free_running_logits(self, src: torch.Tensor, tgt_len: int) -> torch.Tensor:
        """Logits (B, tgt_len, V), the decoder fed its own greedy predictions."""
        memory, src_mask = self.encode(src)
        ys = torch.full((src.size(0), 1), self.sos_idx, dtype=torch.long,
                        device=src.device)  # (B, 1)
        steps = []
        for _ in range(tgt_len):
            logits = self.decode(ys, memory, src_mask)[:, -1]  # (B, V)
            steps.append(logits)
            ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
        return torch.stack(steps, dim=1)  # (B, tgt_len, V)

    def greedy_decode(self, src: torch.Tensor, max_len: int,
                      return_attention: bool = False):
        """Seq2Seq's method for this family too: greedy_decode(self, ...), below."""
        return greedy_decode(self, src, max_len, return_attention=return_attention)


# %% book/05_transformer.md, code cell 25 (Equivalence with `torch.nn.Transformer`)
class TorchTransformer(nn.Module):
    """Our model built from `torch.nn.Transformer`: what we test and time it against."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if cfg.learned_positions or cfg.tie_embeddings:
            raise ValueError("TorchTransformer has sinusoidal positions and an untied "
                             "generator only: build it with learned_positions=False, "
                             "tie_embeddings=False")
        d = cfg.d_model
        self.pad_idx, self.d_model = cfg.pad_idx, d
        self.src_embed, self.tgt_embed = (nn.Embedding(cfg.src_vocab, d),
                                          nn.Embedding(cfg.tgt_vocab, d))
        table = sinusoidal_table(cfg.max_len, d)  # (max_len, d_model)
        self.register_buffer("table", table, persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        with warnings.catch_warnings():  # pre-norm disables PyTorch's nested tensors
            warnings.simplefilter("ignore", UserWarning)
            self.transformer = nn.Transformer(
                d, cfg.n_heads, cfg.n_layers, cfg.n_layers, cfg.d_ff, cfg.dropout,
                activation=cfg.activation, batch_first=True, norm_first=cfg.norm_first)
        self.generator = nn.Linear(d, cfg.tgt_vocab)

    def _embed(self, embed: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        x = embed(tokens) * math.sqrt(self.d_model)
        return self.dropout(x + self.table[: tokens.size(1)])

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        T = tgt.size(1)
        # True = hidden: key j > query i
        future = torch.ones(T, T, dtype=torch.bool, device=tgt.device).triu(1)
        x, y = self._embed(self.src_embed, src), self._embed(self.tgt_embed, tgt)
        h = self.transformer(x, y, tgt_mask=future, tgt_is_causal=True,
                             src_key_padding_mask=src == self.pad_idx,  # True = ignore
                             tgt_key_padding_mask=tgt == self.pad_idx,
                             memory_key_padding_mask=src == self.pad_idx)
        return self.generator(h)


# %% book/05_transformer.md, code cell 26 (Equivalence with `torch.nn.Transformer`)
def copy_decoder_layer_from_torch(ours: DecoderLayer,
                                  theirs: nn.TransformerDecoderLayer) -> None:
    """Copy an `nn.TransformerDecoderLayer`'s weights into our `DecoderLayer`."""
    if ours.norm_first != theirs.norm_first:
        raise ValueError(f"norm_first differs: ours {ours.norm_first}, "
                         f"PyTorch's {theirs.norm_first}")
    copy_from_torch_mha(ours.self_attn, theirs.self_attn)
    copy_from_torch_mha(ours.cross_attn, theirs.multihead_attn)
    for mine, their in ((ours.ff.linear1, theirs.linear1),
                        (ours.ff.linear2, theirs.linear2),
                        (ours.norm1, theirs.norm1), (ours.norm2, theirs.norm2),
                        (ours.norm3, theirs.norm3)):
        _copy_linear_or_norm(mine, their)


def copy_from_torch(ours: Transformer, theirs: TorchTransformer) -> None:
    """Copy every weight of a `TorchTransformer` (its nn.Transformer and the rest)."""
    enc, dec = theirs.transformer.encoder, theirs.transformer.decoder
    n_ours = (len(ours.encoder.layers), len(ours.decoder.layers))
    if n_ours != (len(enc.layers), len(dec.layers)):
        raise ValueError(f"layer counts differ: ours {len(ours.encoder.layers)}+"
                         f"{len(ours.decoder.layers)}, "
                         f"PyTorch's {len(enc.layers)}+{len(dec.layers)}")
    for mine, their in zip(ours.encoder.layers, enc.layers):
        copy_encoder_layer_from_torch(mine, their)
    for mine, their in zip(ours.decoder.layers, dec.layers):
        copy_decoder_layer_from_torch(mine, their)
    _copy_("source embedding", ours.src_embed.embedding.weight, theirs.src_embed.weight)
    _copy_("target embedding", ours.tgt_embed.embedding.weight, theirs.tgt_embed.weight)
    _copy_linear_or_norm(ours.encoder.norm, enc.norm, "final encoder LayerNorm")
    _copy_linear_or_norm(ours.decoder.norm, dec.norm, "final decoder LayerNorm")
    _copy_linear_or_norm(ours.generator, theirs.generator, "generator")


# %% book/05_transformer.md, code cell 28 (Decoding: greedy search and beam search)
def _check_decode_args(model: nn.Module, src: torch.Tensor, max_len: int,
                       beam_size: int = 1, length_penalty: float = 0.0) -> None:
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}")
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an integer >= 1, got {beam_size!r}")
    if length_penalty < 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty!r}")
    if isinstance(model, Seq2Seq):
        return _check_src(src, model.cfg)  # chapter 3's checks, as Seq2Seq.encode's
    if not isinstance(model, (Transformer, EncoderOnlyTranslator)):
        raise TypeError("the decoders take a Seq2Seq, a Transformer or an "
                        f"EncoderOnlyTranslator, got a {type(model).__name__}")
    check_tokens(src, model.src_embed.vocab_size, "src")
    empty = (src == model.cfg.pad_idx).all(1)  # (B,): as Seq2Seq.encode refuses
    if empty.any():
        raise ValueError(f"source sentences {empty.nonzero().flatten().tolist()[:10]} "
                         "are all padding")


def _warn_about_source(model: nn.Module, src: torch.Tensor, sos_idx: int,
                       eos_idx: int) -> None:
    """Warn about source rows unlike the data's: no <eos> last, <sos>, only <unk>."""
    from annotated.translation import UNK_IDX

    real = (src != model.cfg.pad_idx).long()  # (B, S); _check_decode_args passed
    last = real.cumsum(1).argmax(1)  # (B,): the position of each row's last word
    unknown = (src == UNK_IDX) | (src == eos_idx) | (real == 0)  # (B, S)
    some_unk = (src == UNK_IDX).any(1)  # (B,)
    found = {  # what is wrong with a row, and what to do: rows (B,) where it is
        f"do not end in <eos> (id {eos_idx}); the translators learned from rows "
        "that do: append it, as translate_sentence does":
            src.gather(1, last[:, None])[:, 0] != eos_idx,
        f"hold <sos> (id {sos_idx}), which only targets begin with: remove it":
            (src == sos_idx).any(1),
        f"hold no word but <unk> (id {UNK_IDX}); the vocabulary is lower-case: "
        "tokenise with tokenize_de, as translate_sentence does":
            unknown.all(1) & some_unk}
    for what, rows in found.items():
        if rows.any():
            rows = rows.nonzero().flatten().tolist()
            more = " ..." if len(rows) > 8 else ""
            warnings.warn(f"source rows {rows[:8]}{more} {what}",
                          stacklevel=_outside_the_package())


def _outside_the_package() -> int:
    """warnings.warn's stacklevel, for a warning raised by this function's caller,
    of the first frame outside annotated.*: the user's line, the one to fix."""
    frame, level = sys._getframe(2), 2  # level 1: the caller; 2: the caller's caller
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
            "annotated."):
        frame, level = frame.f_back, level + 1
    return level


def _ids(model: nn.Module, sos_idx: int | None,
         eos_idx: int | None) -> tuple[int, int]:
    """The <sos> and <eos> ids: those given, else the model's, else chapter 2's."""
    from annotated.translation import EOS_IDX, SOS_IDX

    cfg = getattr(model, "cfg", None)
    sos = getattr(cfg, "sos_idx", SOS_IDX) if sos_idx is None else sos_idx
    eos = getattr(cfg, "eos_idx", EOS_IDX) if eos_idx is None else eos_idx
    if isinstance(model, Seq2Seq) and (sos, eos) != (cfg.sos_idx, cfg.eos_idx):
        raise ValueError(f"a Seq2Seq decodes with its own ids (<sos> {cfg.sos_idx}, "
                         f"<eos> {cfg.eos_idx}), got {sos} and {eos}")
    return sos, eos


def _eval_mode(fn: Callable) -> Callable:
    """Run `fn(model, ...)` without gradients in eval mode, then restore the mode."""
    @functools.wraps(fn)  # help() and inspect show fn's own signature
    def wrapper(model: nn.Module, *args, **kwargs):
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return fn(model, *args, **kwargs)
        finally:
            model.train(was_training)
    return wrapper


# %% book/05_transformer.md, code cell 30 (Incremental decoding: a key/value cache)
@dataclass
class KVCache:
    """What incremental decoding keeps between steps, one tensor per decoder layer."""

    self_k: list[torch.Tensor]  # (B, h, t, d_k): keys of the t target words so far
    self_v: list[torch.Tensor]  # (B, h, t, d_k): their values
    cross_k: list[torch.Tensor]  # (B, h, S, d_k): the memory's keys, computed once
    cross_v: list[torch.Tensor]  # (B, h, S, d_k): the memory's values
    keep: torch.Tensor  # (B, t): True at the cached words that are not <pad>
    src_mask: torch.Tensor  # (B, 1, 1, S): the source padding mask

    def select(self, rows: torch.Tensor) -> "KVCache":
        """The cache of batch rows `rows` (B',): reorders beams, drops sentences."""
        pick = lambda xs: [x[rows] for x in xs]  # noqa: E731
        return KVCache(pick(self.self_k), pick(self.self_v), pick(self.cross_k),
                       pick(self.cross_v), self.keep[rows], self.src_mask[rows])


def _heads(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    B, T, _ = x.shape  # (B, T, d_model) -> (B, h, T, d_k)
    return x.view(B, T, mha.n_heads, mha.d_k).transpose(1, 2)


def start_cache(model: "Transformer", memory: torch.Tensor,
                src_mask: torch.Tensor) -> KVCache:
    """A cache with the memory's keys and values and no target word yet."""
    layers = model.decoder.layers
    mha = layers[0].self_attn
    empty = memory.new_zeros(memory.size(0), mha.n_heads, 0, mha.d_k)  # (B, h, 0, d_k)
    return KVCache(
        self_k=[empty] * len(layers), self_v=[empty] * len(layers),
        cross_k=[_heads(lay.cross_attn, lay.cross_attn.W_k(memory)) for lay in layers],
        cross_v=[_heads(lay.cross_attn, lay.cross_attn.W_v(memory)) for lay in layers],
        keep=torch.zeros(memory.size(0), 0, dtype=torch.bool, device=memory.device),
        src_mask=src_mask)


# %% book/05_transformer.md, code cell 31 (Incremental decoding: a key/value cache)
def _attend(mha: MultiHeadAttention, query: torch.Tensor, K: torch.Tensor,
            V: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mha's output (B, 1, d_model) for one query position against cached K, V."""
    Q = _heads(mha, mha.W_q(query))  # (B, h, 1, d_k)
    out, mha.attn = scaled_dot_product_attention(Q, K, V, mask, mha.dropout)
    return mha.W_o(out.transpose(1, 2).reshape(query.shape))  # (B, 1, d_model)


def decoder_layer_step(layer: DecoderLayer, y: torch.Tensor, cache: KVCache,
                       i: int) -> torch.Tensor:
    """Layer i's output (B, 1, d_model) for the newest word's vector y (B, 1, d)."""
    def sa(z: torch.Tensor) -> torch.Tensor:
        mha = layer.self_attn  # append k_t, v_t, then attend over k_1..k_t
        cache.self_k[i] = torch.cat([cache.self_k[i], _heads(mha, mha.W_k(z))], dim=2)
        cache.self_v[i] = torch.cat([cache.self_v[i], _heads(mha, mha.W_v(z))], dim=2)
        keep = cache.keep[:, None, None, :]  # (B, 1, 1, t): no <pad> keys
        return layer.dropout1(_attend(mha, z, cache.self_k[i], cache.self_v[i], keep))
    ca = lambda z: layer.dropout2(_attend(  # noqa: E731
        layer.cross_attn, z, cache.cross_k[i], cache.cross_v[i], cache.src_mask))
    return layer.residuals(y, sa, ca)  # the same wiring as DecoderLayer.forward


def decode_step(model: "Transformer", word: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
    """Logits (B, V) of the word after `word` (B,), the words before it in `cache`."""
    t = cache.keep.size(1)  # words already cached: `word` sits at position t
    cache.keep = torch.cat([cache.keep, (word != model.pad_idx)[:, None]], dim=1)
    y = model.tgt_positions(model.tgt_embed(word[:, None]), offset=t)  # (B, 1, d)
    for i, layer in enumerate(model.decoder.layers):
        y = decoder_layer_step(layer, y, cache, i)
    return model.generator(model.decoder.norm(y))[:, 0]  # (B, V)


def _next_logits(model: "Transformer", ys: torch.Tensor, memory: torch.Tensor,
                 src_mask: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
    """Logits (B, V) of the word after the prefix ys (B, t), cached or recomputed."""
    if cache is None:  # the reference: the whole prefix through every layer again
        return model.decode(ys, memory, src_mask)[:, -1]
    return decode_step(model, ys[:, -1], cache)


# %% book/05_transformer.md, code cell 33 (Incremental decoding: a key/value cache)
def _after_eos(tokens: torch.Tensor, eos_idx: int) -> torch.Tensor:
    """(B, L): True where an <eos> comes strictly before, in the same row."""
    is_eos = (tokens == eos_idx).long()  # (B, L)
    return is_eos.cumsum(1) - is_eos > 0


def _pad_after_eos(tokens: torch.Tensor, eos_idx: int, pad_idx: int) -> torch.Tensor:
    """Replace every token after the first <eos> of each row by <pad>."""
    return tokens.masked_fill(_after_eos(tokens, eos_idx), pad_idx)


def _rows_written(attn: torch.Tensor, tokens: torch.Tensor,
                  eos_idx: int) -> torch.Tensor:
    """attn (B, L, S) with the rows of the padding after each <eos> set to 0."""
    return attn.masked_fill(_after_eos(tokens, eos_idx)[..., None], 0.0)


def _never_pad_or_sos(logits: torch.Tensor, pad_idx: int, sos_idx: int) -> torch.Tensor:
    """Forbid <pad> and <sos> as words: (..., V) logits with those two set to -inf."""
    logits = logits.clone()
    logits[..., [pad_idx, sos_idx]] = float("-inf")
    return logits


@_eval_mode
def greedy_decode(model: nn.Module, src: torch.Tensor, max_len: int,
                  sos_idx: int | None = None, eos_idx: int | None = None,
                  use_cache: bool = True, return_attention: bool = False):
    """Greedy output (B, L <= max_len) for src (B, S): no <sos>, <pad> after <eos>.

    src: a sentence per row, its ids then <eos>, right-padded with <pad> (as the
    data set's rows are; a row without the <eos> gets a warning).
    With return_attention, also the attention (B, L, S) each word was written with
    (row t: word t; zero rows after <eos>): a Transformer's last decoder layer's
    cross-attention, mean over heads; a Seq2Seq's own; None for a model without.
    """
    _check_decode_args(model, src, max_len)
    sos_idx, eos_idx = _ids(model, sos_idx, eos_idx)
    _warn_about_source(model, src, sos_idx, eos_idx)
    if isinstance(model, Seq2Seq):  # chapter 3's method: it steps its own state
        return model.greedy_decode(src, max_len, return_attention)  # rows: as below
    pad = model.pad_idx
    if isinstance(model, EncoderOnlyTranslator):  # all positions at once, independently
        all_logits = model.free_running_logits(src, max_len)  # (B, max_len, V)
        logits = _never_pad_or_sos(all_logits, pad, sos_idx)
        out = _pad_after_eos(logits.argmax(-1), eos_idx, pad)
        return (out, None) if return_attention else out
    memory, src_mask = model.encode(src)  # (B, S, d_model), (B, 1, 1, S)
    cache = start_cache(model, memory, src_mask) if use_cache else None
    ys = torch.full((src.size(0), 1), sos_idx, dtype=torch.long,
                    device=src.device)  # (B, 1)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    rows = []  # per step: the last layer's cross-attention of the newest word
    for _ in range(max_len):
        last = _next_logits(model, ys, memory, src_mask, cache)  # (B, V)
        rows.append(model.decoder.layers[-1].cross_attn.attn[:, :, -1].mean(1))
        logits = _never_pad_or_sos(last, pad, sos_idx)
        next_word = logits.argmax(-1)  # (B,)
        next_word = next_word.masked_fill(done, pad)
        ys = torch.cat([ys, next_word[:, None]], dim=1)
        done |= next_word == eos_idx
        if done.all():
            break
    out = ys[:, 1:]
    if not return_attention:
        return out
    return out, _rows_written(torch.stack(rows, dim=1), out, eos_idx)  # (B, L, S)


# %% book/05_transformer.md, code cell 34 (Incremental decoding: a key/value cache)
def _merge_finished(scores: torch.Tensor, tokens: torch.Tensor, new: torch.Tensor,
                    seqs: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of the finished (b, k) and new (b, c) hypotheses: scores, tokens."""
    k, L = tokens.shape[1:]  # tokens: (b, k, L); seqs: (b, c, t) with t <= L
    seqs = F.pad(seqs, (0, L - seqs.size(-1)), value=pad)  # (b, c, L)
    all_scores = torch.cat([scores, new], dim=1)  # (b, k + c)
    all_tokens = torch.cat([tokens, seqs], dim=1)  # (b, k + c, L)
    all_tokens = all_tokens.masked_fill(all_scores[..., None] == float("-inf"), pad)
    scores, best = all_scores.topk(k, dim=1)  # sorted, best first
    return scores, all_tokens.gather(1, best[..., None].expand(-1, -1, L))


def _penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha  # GNMT's lp for |y| = length


# %% book/05_transformer.md, code cell 35 (Incremental decoding: a key/value cache)
def _rows(x, rows: torch.Tensor):
    """x[rows] for a tensor, each of a tuple's tensors (an LSTM's (s, c)), or None."""
    if isinstance(x, tuple):
        return tuple(t[rows] for t in x)
    return None if x is None else x[rows]


class TransformerRows:
    """A Transformer's search rows: the memory, its mask and the key/value cache."""

    def __init__(self, model: Transformer, src: torch.Tensor, copies: int,
                 use_cache: bool = True):
        memory, src_mask = model.encode(src)  # (B, S, d_model), (B, 1, 1, S)
        self.model = model  # every sentence's rows repeated `copies` times
        self.memory = memory.repeat_interleave(copies, 0)  # (B copies, S, d_model)
        self.src_mask = src_mask.repeat_interleave(copies, 0)
        self.cache = (start_cache(model, self.memory, self.src_mask) if use_cache
                      else None)

    def next_logits(self, ys: torch.Tensor) -> torch.Tensor:
        """Logits (R, V) of the word after each row's prefix ys (R, t)."""
        return _next_logits(self.model, ys, self.memory, self.src_mask, self.cache)

    def select(self, rows: torch.Tensor) -> None:
        """Keep the rows `rows` (indices or a boolean mask), in that order."""
        self.memory, self.src_mask = self.memory[rows], self.src_mask[rows]
        self.cache = None if self.cache is None else self.cache.select(rows)


class Seq2SeqRows:
    """A Seq2Seq's search rows: encoder outputs, mask, decoder state (chapter 3)."""

    def __init__(self, model: Seq2Seq, src: torch.Tensor, copies: int,
                 use_cache: bool = True):  # use_cache: a recurrent state is one
        keys, mask, state, projected = model.encode(src)
        every = torch.arange(src.size(0), device=src.device).repeat_interleave(copies)
        self.decoder, self.attention = model.decoder, None  # attention: the last step's
        self.keys, self.mask, self.projected, self.state = (
            _rows(x, every) for x in (keys, mask, projected, state))

    def next_logits(self, ys: torch.Tensor) -> torch.Tensor:
        """Logits (R, V) of the next word; the state takes in the word ys[:, -1]."""
        emb = self.decoder.embedding(ys[:, -1])  # (R, E); dropout is off in eval
        self.state, f, self.attention = self.decoder.step(  # attention: (R, S)
            emb, self.state, self.keys, self.mask, self.projected)
        return self.decoder.logits(f, emb)  # (R, V)

    def select(self, rows: torch.Tensor) -> None:
        """Keep the rows `rows` (indices or a boolean mask), in that order."""
        self.keys, self.mask, self.projected, self.state = (
            _rows(x, rows) for x in (self.keys, self.mask, self.projected, self.state))


def search_rows(model: nn.Module, src: torch.Tensor, copies: int,
                use_cache: bool = True) -> TransformerRows | Seq2SeqRows:
    """The search rows of `model` for src (B, S), each sentence `copies` times."""
    if isinstance(model, Seq2Seq):
        return Seq2SeqRows(model, src, copies)
    if isinstance(model, Transformer):
        return TransformerRows(model, src, copies, use_cache)
    raise TypeError(f"beam search needs a decoder that reads its own output; a "
                    f"{type(model).__name__} writes every position at once "
                    "(use greedy_decode)")


# %% book/05_transformer.md, code cell 36 (Incremental decoding: a key/value cache)
@_eval_mode
def beam_search(model: nn.Module, src: torch.Tensor, beam_size: int, max_len: int,
                sos_idx: int | None = None, eos_idx: int | None = None,
                length_penalty: float = 0.6, return_all: bool = False,
                use_cache: bool = True, early_stopping: bool = True,
                return_attention: bool = False):
    """Beam-search translations (B, L <= max_len) of a Transformer or a Seq2Seq.

    src (B, S) as greedy_decode's; beam_size comes before max_len.
    return_all: the (B, k, L) beams and their scores instead; return_attention:
    also the attention (B, L, S) of the best translation, as greedy_decode's.
    """
    _check_decode_args(model, src, max_len, beam_size, length_penalty)
    sos_idx, eos_idx = _ids(model, sos_idx, eos_idx)
    _warn_about_source(model, src, sos_idx, eos_idx)
    B, k, device = src.size(0), beam_size, src.device
    pad = model.cfg.pad_idx
    state = search_rows(model, src, k, use_cache)  # B k rows: k per sentence
    ys = torch.full((B * k, 1), sos_idx, dtype=torch.long, device=device)  # (B k, 1)
    alive = torch.full((B, k), float("-inf"), device=device)  # live beams' log p
    alive[:, 0] = 0.0  # one live beam at first, so step 1 does not pick k copies
    fin_scores = torch.full((B, k), float("-inf"), device=device)  # normalised
    fin_tokens = torch.full((B, k, max_len), pad, dtype=torch.long, device=device)
    todo = torch.arange(B, device=device)  # the sentences still being searched
    for step in range(max_len):
        b = todo.numel()
        logits = _never_pad_or_sos(state.next_logits(ys), pad, sos_idx)
        logp = logits.log_softmax(-1).view(b, k, -1)  # (b, k, V)
        V = logp.size(-1)
        cand, index = (alive[..., None] + logp).view(b, k * V).topk(2 * k, dim=-1)
        rows = index // V + torch.arange(b, device=device)[:, None] * k  # (b, 2k)
        word = index % V  # (b, 2k)
        seqs = torch.cat([ys[rows.view(-1)], word.view(-1, 1)], dim=1)  # (b 2k, t+1)
        ends = (word == eos_idx) | (step == max_len - 1)  # at max_len all end
        normalised = (cand / _penalty(step + 1, length_penalty)).masked_fill(
            ~ends, float("-inf"))
        fin_scores[todo], fin_tokens[todo] = _merge_finished(
            fin_scores[todo], fin_tokens[todo], normalised,
            seqs.view(b, 2 * k, -1)[..., 1:], pad)
        alive, pick = cand.masked_fill(ends, float("-inf")).topk(k, dim=-1)  # (b, k)
        rows = rows.gather(1, pick).view(-1)  # (b k,): the rows the beams came from
        ys = torch.cat([ys[rows], word.gather(1, pick).view(-1, 1)], dim=1)
        state.select(rows)
        best_possible = alive[:, 0] / _penalty(max_len, length_penalty)  # (b,)
        done = (fin_scores[todo, -1] > best_possible) & early_stopping
        if step == max_len - 1 or done.all():
            break
        if done.any():  # drop the finished sentences' rows from the batch
            todo, alive = todo[~done], alive[~done]
            keep = (~done).repeat_interleave(k)
            ys = ys[keep]
            state.select(keep)
    out = fin_tokens[..., : max(int((fin_tokens != pad).sum(-1).max()), 1)]
    result = (out, fin_scores) if return_all else (out[:, 0],)
    if return_attention:
        result += (decode_attention(model, src, out[:, 0], sos_idx, eos_idx),)
    return result if len(result) > 1 else result[0]


@_eval_mode
def decode_attention(model: nn.Module, src: torch.Tensor, tokens: torch.Tensor,
                     sos_idx: int | None = None, eos_idx: int | None = None):
    """The attention (B, L, S) each word of `tokens` (B, L) was written with.

    The output is read again, teacher-forced: the same computation as the decode's
    (checked against greedy_decode's, which it records while it decodes); None for
    the encoder-only translator and a Seq2Seq without attention.
    """
    sos_idx, eos_idx = _ids(model, sos_idx, eos_idx)
    tgt_in = torch.cat([torch.full_like(tokens[:, :1], sos_idx), tokens[:, :-1]], 1)
    if isinstance(model, Transformer):
        model(src, tgt_in)  # (B, L): <sos> and the words before each one
        attn = model.decoder.layers[-1].cross_attn.attn.mean(1)  # (B, L, S)
    elif isinstance(model, Seq2Seq) and model.cfg.attention is not None:
        state, weights = Seq2SeqRows(model, src, 1), []
        for t in range(tgt_in.size(1)):
            state.next_logits(tgt_in[:, : t + 1])
            weights.append(state.attention)
        attn = torch.stack(weights, dim=1)  # (B, L, S)
    else:
        return None
    return _rows_written(attn, tokens, eos_idx)


# %% book/05_transformer.md, code cell 39 (Looking inside: attention maps)
def attention_maps(model: Transformer) -> dict[str, list[torch.Tensor]]:
    """The last forward pass's attention weights per kind: a (B, h, q, k) per layer."""
    encoder, decoder = model.encoder.layers, model.decoder.layers
    return {"encoder self-attention": [layer.self_attn.attn for layer in encoder],
            "decoder self-attention": [layer.self_attn.attn for layer in decoder],
            "cross-attention": [layer.cross_attn.attn for layer in decoder]}


# %% book/05_transformer.md, code cell 40 (Training recipe)
def noam_schedule(optimizer: torch.optim.Optimizer,
                  warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the optimizer's lr over `warmup` steps, then 1/sqrt decay."""
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1 step, got {warmup}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1))))


# %% book/05_transformer.md, code cell 41 (Training recipe)
def greedy_search(model: nn.Module, src: torch.Tensor, max_len: int,
                  use_cache: bool = True) -> torch.Tensor:
    """translate()'s decode: greedy_decode with the model's <sos> and <eos>."""
    return greedy_decode(model, src, max_len, use_cache=use_cache)


def beam_search_decoder(beam_size: int, length_penalty: float = 0.6,
                        use_cache: bool = True) -> Callable:
    """translate()'s decode: beam search of `beam_size` beams (any decoder model)."""
    def decode(model: nn.Module, src: torch.Tensor, max_len: int) -> torch.Tensor:
        return beam_search(model, src, beam_size, max_len,
                           length_penalty=length_penalty, use_cache=use_cache)
    return decode


# %% book/05_transformer.md, code cell 45 (Training on Multi30k)
@dataclass
class TransformerRecipe:
    """How a chapter-5 translator is trained (on top of the appendix's TrainConfig)."""

    epochs: int = 6  # at most this many passes (early stopping: patience 3 epochs)
    lr: float = 2e-3  # the peak learning rate, reached after `warmup` steps
    warmup: int = 400  # steps of linear warmup, then 1/sqrt decay (noam_schedule)
    label_smoothing: float = 0.1  # on the training loss only
    max_steps: int | None = None  # at most this many steps per epoch (None: all)

    def __post_init__(self):  # the batch size is the loader's (make_loader's budget)
        for name in ("epochs", "warmup"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a whole number >= 1, "
                                 f"got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("label_smoothing must be in [0, 1), "
                             f"got {self.label_smoothing!r}")


# %% book/05_transformer.md, code cell 50 (Warmup and the two LayerNorm placements)
def train_transformer(model: nn.Module, train_loader, val_loader,
                      recipe: TransformerRecipe, checkpoint=None, verbose: bool = True,
                      max_eval_steps: int | None = None) -> dict:
    """Train a Transformer or encoder-only translator; as train_seq2seq (chapter 3).

    training.fit with the recipe, resumable at `checkpoint` (a finished run there
    is loaded, not trained again); validation on at most max_eval_steps batches.
    """
    from annotated.training import TrainConfig, fit
    from annotated.translation import evaluate, teacher_forcing_step

    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98),
                                 eps=1e-9)
    config = TrainConfig(epochs=recipe.epochs, max_steps=recipe.max_steps,
                         patience=3, scheduler_interval="step", verbose=verbose)
    step = functools.partial(teacher_forcing_step,
                             label_smoothing=recipe.label_smoothing)
    budget = getattr(getattr(train_loader, "batch_sampler", None), "max_tokens", None)
    run = asdict(recipe) | ({} if budget is None else {"max_tokens": budget})
    return fit(model, step, train_loader,  # the loader's budget: part of the run
               evaluate=lambda m: evaluate(m, val_loader, max_steps=max_eval_steps),
               optimizer=optimizer, scheduler=noam_schedule(optimizer, recipe.warmup),
               config=config, checkpoint=checkpoint,
               settings={"model": asdict(model.cfg), "recipe": run})


# %% book/05_transformer.md, code cell 60 (What the cache buys)
def _seconds(fn: Callable, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.no_grad()
def decode_step_seconds(model: Transformer, src: torch.Tensor, prefix_len: int,
                        repeats: int = 5) -> dict[str, float]:
    """Seconds of one decoding step after `prefix_len` words, cached and recomputed.

    The two alternate run by run; medians and the ratio's median, min and max.
    """
    model.eval()
    memory, src_mask = model.encode(src)
    g = torch.Generator().manual_seed(0)
    words = torch.randint(4, model.cfg.tgt_vocab, (src.size(0), prefix_len + 1),
                          generator=g).to(src.device)  # (B, t + 1)
    cache = start_cache(model, memory, src_mask)
    for t in range(prefix_len):
        decode_step(model, words[:, t], cache)
    every_row = torch.arange(src.size(0), device=src.device)
    cached, recomputed = [], []
    for _ in range(repeats):
        fresh = cache.select(every_row)  # a copy: each run appends to its own
        cached.append(_seconds(functools.partial(decode_step, model, words[:, -1],
                                                 fresh), src.device))
        recomputed.append(_seconds(lambda: model.decode(words, memory, src_mask),
                                   src.device))
    ratios = sorted(r / c for r, c in zip(recomputed, cached))
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {"cached_s": median(cached), "recomputed_s": median(recomputed),
            "ratio": median(ratios), "ratio_min": ratios[0], "ratio_max": ratios[-1]}


# %% book/05_transformer.md, code cell 79 (Translate your own sentence)
@dataclass
class Translation:
    """One translated sentence and where each written word looked."""

    source: list[str]  # the German tokens the model read, <eos> last
    words: list[str]  # the English words written (no <eos>)
    text: str  # the words as a sentence
    rows: list[str]  # the map's row labels: the words written, then <eos> if written
    attention: torch.Tensor | None  # (len(rows), len(source)); None: no attention


@torch.no_grad()
def translate_sentence(model: nn.Module, german: str, src_vocab, tgt_vocab, *,
                       beam_size: int | None = None, length_penalty: float = 0.6,
                       extra_len: int = 10) -> Translation:
    """Translate one German string with a Transformer, encoder-only or Seq2Seq model.

    Greedy search, or beam search of `beam_size` beams (a Transformer or a
    Seq2Seq); the output may run `extra_len` words beyond the source's length.
    """
    from annotated.translation import (EOS_IDX, UNK_IDX, check_vocab_size,
                                       detokenize_en, tokenize_de)

    check_vocab_size(model, src_vocab, "src_vocab")
    check_vocab_size(model, tgt_vocab, "tgt_vocab")
    tokens = tokenize_de(german)
    if not tokens:
        raise ValueError("the sentence is empty: there is nothing to translate")
    ids = src_vocab.encode(tokens)
    if all(i == UNK_IDX for i in ids):
        raise ValueError(f"none of the words {tokens} is in the German vocabulary "
                         f"({len(src_vocab):,} words): the model could only write "
                         "<unk>")
    if beam_size is not None and isinstance(model, EncoderOnlyTranslator):
        raise ValueError("the encoder-only translator writes every position at "
                         "once, so there is nothing to search: use beam_size=None")
    src = torch.tensor([ids + [EOS_IDX]], device=next(model.parameters()).device)
    max_len = src.size(1) + extra_len
    if beam_size is None:
        out, attention = greedy_decode(model, src, max_len, return_attention=True)
    else:
        out, attention = beam_search(model, src, beam_size, max_len,
                                     length_penalty=length_penalty,
                                     return_attention=True)
    written = out[0].tolist()
    n_rows = written.index(EOS_IDX) + 1 if EOS_IDX in written else len(written)
    words = tgt_vocab.decode(written)
    attention = None if attention is None else attention[0, :n_rows]  # (rows, S)
    rows = words + (["<eos>"] if EOS_IDX in written else [])
    return Translation([src_vocab.itos[i] for i in src[0].tolist()], words,
                       detokenize_en(words), rows,
                       None if attention is None else attention.cpu())
