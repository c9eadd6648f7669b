# GENERATED FILE, DO NOT EDIT. It is exported from book/05_transformer.md by tools/export.py;
# change the chapter and run `make export` instead.
"""The Transformer (from book/05_transformer.md)."""


# %% book/05_transformer.md, cell 4 (The Transformer)
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from annotated.attention import MultiHeadAttention


# %% book/05_transformer.md, cell 6 (The encoder layer)
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


# %% book/05_transformer.md, cell 8 (The encoder layer)
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


# %% book/05_transformer.md, cell 12 (The encoder layer)
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


# %% book/05_transformer.md, cell 15 (The encoder layer against PyTorch)
def _check_same_shape(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    if ours.shape != theirs.shape:
        raise ValueError(f"cannot copy {name}: ours has shape {tuple(ours.shape)}, "
                         f"PyTorch's has shape {tuple(theirs.shape)}")


@torch.no_grad()
def _copy_(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    _check_same_shape(name, ours, theirs)
    ours.copy_(theirs)


@torch.no_grad()
def copy_attention_from_torch(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Copy an `nn.MultiheadAttention`'s weights into our `MultiHeadAttention`."""
    if ours.n_heads != theirs.num_heads or ours.W_q.in_features != theirs.embed_dim:
        raise ValueError(f"cannot copy attention: ours has d_model={ours.W_q.in_features}, "
                         f"heads={ours.n_heads}; PyTorch's has d_model={theirs.embed_dim}, "
                         f"heads={theirs.num_heads}")
    W_q, W_k, W_v = theirs.in_proj_weight.chunk(3)  # each (d_model, d_model)
    b_q, b_k, b_v = theirs.in_proj_bias.chunk(3)
    for mine, w, b in ((ours.W_q, W_q, b_q), (ours.W_k, W_k, b_k), (ours.W_v, W_v, b_v),
                       (ours.W_o, theirs.out_proj.weight, theirs.out_proj.bias)):
        _copy_("attention weight", mine.weight, w)
        _copy_("attention bias", mine.bias, b)


@torch.no_grad()
def _copy_linear_or_norm(ours: nn.Module, theirs: nn.Module) -> None:
    _copy_(type(theirs).__name__ + ".weight", ours.weight, theirs.weight)
    _copy_(type(theirs).__name__ + ".bias", ours.bias, theirs.bias)


def copy_encoder_layer_from_torch(ours: EncoderLayer, theirs: nn.TransformerEncoderLayer) -> None:
    """Copy an `nn.TransformerEncoderLayer`'s weights into our `EncoderLayer`."""
    if ours.norm_first != theirs.norm_first:
        raise ValueError(f"norm_first differs: ours {ours.norm_first}, PyTorch's {theirs.norm_first}")
    copy_attention_from_torch(ours.self_attn, theirs.self_attn)
    _copy_linear_or_norm(ours.ff.linear1, theirs.linear1)
    _copy_linear_or_norm(ours.ff.linear2, theirs.linear2)
    _copy_linear_or_norm(ours.norm1, theirs.norm1)
    _copy_linear_or_norm(ours.norm2, theirs.norm2)
