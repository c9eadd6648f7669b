# GENERATED FILE, DO NOT EDIT. It is exported from book/01_attention.md
# by tools/export.py; change the chapter and run `make export` instead.
"""Attention (from book/01_attention.md)."""


# %% book/01_attention.md, code cell 3 (Attention)
import math
import time

import torch
import torch.nn.functional as F
from torch import nn


# %% book/01_attention.md, code cell 9 (Masks: which keys a query may see)
def padding_mask(x: torch.Tensor, pad_idx: int | None = None,
                 max_len: int | None = None) -> torch.Tensor:
    """Boolean (B, S) mask, True at real tokens.

    Built from token ids and `pad_idx`, or from lengths (B,) and `max_len`.
    """
    if pad_idx is not None:
        if x.dim() != 2:
            raise ValueError("padding_mask: token ids must be (batch, seq_len), "
                             f"got shape {tuple(x.shape)}")
        return x != pad_idx  # (B, S)
    if x.dim() != 1:
        raise ValueError("padding_mask: lengths must be (batch,), got shape "
                         f"{tuple(x.shape)} (pass pad_idx=... to build the mask "
                         "from token ids)")
    max_len = int(x.max()) if max_len is None else max_len
    return torch.arange(max_len, device=x.device) < x[:, None]  # (B, S)


def causal_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (size, size) mask, True where query i may see key j, i.e. j <= i."""
    if size < 1:
        raise ValueError(f"causal_mask: size must be >= 1, got {size}")
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


# %% book/01_attention.md, code cell 11 (Masks: which keys a query may see)
def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None,
                   dim: int = -1) -> torch.Tensor:
    """Softmax over `dim` where False entries of `mask` get weight 0.

    Fully masked rows are all 0.
    """
    if mask is None:
        return scores.softmax(dim=dim)
    floor = torch.finfo(scores.dtype).min
    weights = scores.masked_fill(~mask, floor).softmax(dim=dim)
    return weights * mask  # zero where masked, incl. rows with no visible key


# %% book/01_attention.md, code cell 13 (Scaled dot-product attention)
def _check_qkv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise ValueError("attention: query, key and value need at least 2 dims "
                         f"(..., len, dim); got {tuple(query.shape)}, "
                         f"{tuple(key.shape)}, {tuple(value.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError("attention: query and key sizes differ: query "
                         f"{tuple(query.shape)} has d_k={query.shape[-1]}, "
                         f"key {tuple(key.shape)} has d_k={key.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"attention: key {tuple(key.shape)} and value "
                         f"{tuple(value.shape)} must have the same number of "
                         "positions (dim -2)")


def _check_mask(mask: torch.Tensor, scores_shape: torch.Size) -> torch.Tensor:
    if mask.dtype != torch.bool:
        raise TypeError("attention: mask must be boolean (True = attend), "
                        f"got dtype {mask.dtype}")
    try:
        if torch.broadcast_shapes(mask.shape, scores_shape) != scores_shape:
            raise RuntimeError
    except RuntimeError:
        raise ValueError(f"attention: mask of shape {tuple(mask.shape)} does not "
                         f"broadcast to the scores' shape {tuple(scores_shape)} "
                         "(..., q_len, k_len)") from None
    return mask


# %% book/01_attention.md, code cell 14 (Scaled dot-product attention)
def scaled_dot_product_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    mask: torch.Tensor | None = None, dropout: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d_k) V over the last two dims; returns (output, weights)."""
    _check_qkv(query, key, value)
    d_k = query.shape[-1]
    # (..., q_len, d_k) @ (..., d_k, k_len) -> (..., q_len, k_len)
    scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)
    if mask is not None:
        mask = _check_mask(mask, scores.shape)
    weights = masked_softmax(scores, mask)  # (..., q_len, k_len)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ value, weights  # (..., q_len, d_v), (..., q_len, k_len)


# %% book/01_attention.md, code cell 16 (Additive (Bahdanau) attention)
class AdditiveAttention(nn.Module):
    """Bahdanau attention, e_j = vᵀ tanh(W_q q + W_k k_j); the keys are the values."""

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int):
        super().__init__()
        self.W_q = nn.Linear(query_dim, hidden_dim, bias=False)
        self.W_k = nn.Linear(key_dim, hidden_dim, bias=True)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """W_k k for every key, (B, S, key_dim) -> (B, S, hidden_dim).

        Computed once per sentence, it can be reused across decoder steps.
        """
        return self.W_k(keys)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, d_q), keys (B, S, d_k), mask (B, S).

        Returns the context (B, d_k) and the weights (B, S).
        """
        _check_pair(query, keys, mask, "AdditiveAttention")
        # (B, S, H): W_k k_j, computed here unless the caller passes it
        pk = self.project_keys(keys) if projected_keys is None else projected_keys
        q = self.W_q(query)[:, None, :]  # (B, 1, H)
        scores = self.v(torch.tanh(q + pk)).squeeze(-1)  # (B, S)
        weights = masked_softmax(scores, mask)  # (B, S)
        return (weights[:, None, :] @ keys).squeeze(1), weights  # (B, d_k), (B, S)


# %% book/01_attention.md, code cell 17 (Additive (Bahdanau) attention)
def _check_pair(query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None,
                who: str) -> None:
    if query.dim() != 2 or keys.dim() != 3 or query.shape[0] != keys.shape[0]:
        raise ValueError(f"{who}: expected query (B, d_q) and keys (B, S, d_k) with "
                         f"the same B, got query {tuple(query.shape)} and keys "
                         f"{tuple(keys.shape)}")
    if mask is not None and (mask.dtype != torch.bool
                             or tuple(mask.shape) != tuple(keys.shape[:2])):
        raise ValueError(f"{who}: mask must be a boolean (B, S) = "
                         f"{tuple(keys.shape[:2])} tensor, got {mask.dtype} "
                         f"{tuple(mask.shape)}")


# %% book/01_attention.md, code cell 19
# (Cosine attention (the course's seq2seq decoder))
def cosine_attention(query: torch.Tensor, keys: torch.Tensor,
                     mask: torch.Tensor | None = None,
                     eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax of cosine similarities: query (B, d), keys (B, S, d).

    Returns the context (B, d) and the weights (B, S).
    """
    _check_pair(query, keys, mask, "cosine_attention")
    if query.shape[-1] != keys.shape[-1]:
        raise ValueError(f"cosine_attention: query dim {query.shape[-1]} "
                         f"!= key dim {keys.shape[-1]}")
    q = F.normalize(query, dim=-1, eps=eps)  # (B, d)
    k = F.normalize(keys, dim=-1, eps=eps)  # (B, S, d)
    scores = (k @ q[:, :, None]).squeeze(-1)  # (B, S) cosine similarities
    weights = masked_softmax(scores, mask)  # (B, S)
    return (weights[:, None, :] @ keys).squeeze(1), weights


# %% book/01_attention.md, code cell 21 (Multi-head attention)
class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention, batch-first; last weights in `.attn`."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0,
                 bias: bool = True):
        super().__init__()
        if n_heads < 1 or d_model % n_heads != 0:
            raise ValueError(f"MultiHeadAttention: d_model={d_model} is not "
                             f"divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_k = d_model, n_heads, d_model // n_heads
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(d_model, d_model, bias=bias)
        self.W_v = nn.Linear(d_model, d_model, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.attn: torch.Tensor | None = None  # (B, h, T, S) after a forward call

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_k).transpose(1, 2)  # (B, h, T, d_k)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """query (B, T, d_model), key/value (B, S, d_model), mask -> (B, T, d_model)."""
        _check_mha_inputs(self.d_model, query, key, value)
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None]  # (B, 1, T, S): the same mask for every head
        Q = self._split(self.W_q(query))  # (B, h, T, d_k)
        K = self._split(self.W_k(key))  # (B, h, S, d_k)
        V = self._split(self.W_v(value))  # (B, h, S, d_k)
        out, self.attn = scaled_dot_product_attention(Q, K, V, mask, self.dropout)
        B, _, T, _ = out.shape  # out: (B, h, T, d_k)
        # merge the heads: (B, h, T, d_k) -> (B, T, h * d_k)
        out = out.transpose(1, 2).reshape(B, T, self.d_model)
        return self.W_o(out)


# %% book/01_attention.md, code cell 22 (Multi-head attention)
def _check_mha_inputs(d_model: int, *tensors: torch.Tensor) -> None:
    for name, x in zip(("query", "key", "value"), tensors):
        if x.dim() != 3 or x.shape[-1] != d_model:
            raise ValueError(f"MultiHeadAttention: {name} must be (batch, len, "
                             f"d_model={d_model}), got {tuple(x.shape)}")
    if (tensors[1].shape[:2] != tensors[2].shape[:2]
            or tensors[0].shape[0] != tensors[1].shape[0]):
        raise ValueError("MultiHeadAttention: key and value must share (batch, len), "
                         "and query the batch size; got "
                         f"{[tuple(t.shape) for t in tensors]}")


# %% book/01_attention.md, code cell 24 (Checking against `torch.nn.MultiheadAttention`)
def copy_from_torch_mha(ours: MultiHeadAttention,
                        ref: nn.MultiheadAttention) -> MultiHeadAttention:
    """Copy the weights of a batch-first `nn.MultiheadAttention` into ours."""
    if ref.embed_dim != ours.d_model or ref.num_heads != ours.n_heads:
        raise ValueError("copy_from_torch_mha: shapes differ (ours "
                         f"d_model={ours.d_model}, heads={ours.n_heads}; torch "
                         f"embed_dim={ref.embed_dim}, heads={ref.num_heads})")
    W_q, W_k, W_v = ref.in_proj_weight.detach().chunk(3)
    b_q, b_k, b_v = ref.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for lin, W, b in ((ours.W_q, W_q, b_q), (ours.W_k, W_k, b_k),
                          (ours.W_v, W_v, b_v),
                          (ours.W_o, ref.out_proj.weight, ref.out_proj.bias)):
            lin.weight.copy_(W)
            lin.bias.copy_(b)
    return ours


# %% book/01_attention.md, code cell 36 (How fast is it?)
class SDPAMultiHeadAttention(MultiHeadAttention):
    """The same module around PyTorch's fused SDPA: the speed reference for ours."""

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Same contract as MultiHeadAttention.forward (but keeps no weights)."""
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None]
        Q = self._split(self.W_q(query))  # (B, h, T, d_k)
        K = self._split(self.W_k(key))  # (B, h, S, d_k)
        V = self._split(self.W_v(value))  # (B, h, S, d_k)
        out = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)  # (B, h, T, d_k)
        B, _, T, _ = out.shape
        return self.W_o(out.transpose(1, 2).reshape(B, T, self.d_model))


def time_forward_backward(module: nn.Module, x: torch.Tensor, repeats: int = 10,
                          warmup: int = 2) -> float:
    """Fastest seconds of one forward + backward pass of self-attention on x.

    Other work on the machine only ever adds time, so the fastest of `repeats`
    passes is the best estimate of the cost itself (as `timeit` advises)."""
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        out = module(x, x, x)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return min(times)
