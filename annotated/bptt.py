# GENERATED FILE, DO NOT EDIT. It is exported from book/04_bptt.md
# by tools/export.py; change the chapter and run `make export` instead.
"""Backpropagation through time (from book/04_bptt.md)."""


# %% book/04_bptt.md, code cell 3 (Backpropagation through time)
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch


# %% book/04_bptt.md, code cell 5 (The vanilla RNN and its indexing convention)
@dataclass
class RNNParams:
    """The vanilla RNN's weights: a_t = U x_t + W h_{t-1} + b, o_t = V h_t + c."""

    U: torch.Tensor  # (H, D) input -> hidden
    W: torch.Tensor  # (H, H) hidden -> hidden, the recurrence
    V: torch.Tensor  # (K, H) hidden -> output logits
    b: torch.Tensor  # (H,)   hidden bias
    c: torch.Tensor  # (K,)   output bias

    def __post_init__(self) -> None:
        names = ("U", "W", "V", "b", "c")
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"RNNParams.{name} must be a torch.Tensor, "
                                f"got {type(value).__name__}")
        shapes = {name: tuple(getattr(self, name).shape) for name in names}
        if len(shapes["U"]) != 2 or len(shapes["V"]) != 2:
            raise ValueError("RNNParams: U must be (H, D) and V (K, H), "
                             f"got U {shapes['U']}, V {shapes['V']}")
        (H, D), K = shapes["U"], shapes["V"][0]
        expected = {"U": (H, D), "W": (H, H), "V": (K, H), "b": (H,), "c": (K,)}
        wrong = [f"{n} has shape {shapes[n]}, expected {expected[n]}"
                 for n in names if shapes[n] != expected[n]]
        if wrong:
            raise ValueError(f"RNNParams shapes do not fit (H={H}, D={D} from U, "
                             f"K={K} from V): " + "; ".join(wrong))
        dtypes = {name: getattr(self, name).dtype for name in names}
        if len(set(dtypes.values())) != 1 or not self.U.is_floating_point():
            raise TypeError("RNNParams needs one floating dtype for all tensors, "
                            f"got {dtypes}")

    @property
    def H(self) -> int:
        """Hidden size."""
        return self.U.shape[0]

    @property
    def D(self) -> int:
        """Input size."""
        return self.U.shape[1]

    @property
    def K(self) -> int:
        """Number of classes."""
        return self.V.shape[0]


# %% book/04_bptt.md, code cell 6 (The vanilla RNN and its indexing convention)
def random_rnn_params(H: int, D: int, K: int, spectral_radius: float | None = None,
                      generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64) -> RNNParams:
    """Gaussian RNN weights (variance 1/fan-in).

    W is rescaled to the spectral radius `spectral_radius` if it is given.
    """
    g = dict(generator=generator, dtype=dtype)
    U = torch.randn(H, D, **g) / math.sqrt(D)
    W = torch.randn(H, H, **g) / math.sqrt(H)
    if spectral_radius is not None:
        W = W * (spectral_radius / torch.linalg.eigvals(W).abs().max())
    V = torch.randn(K, H, **g) / math.sqrt(H)
    return RNNParams(U, W, V, 0.1 * torch.randn(H, **g), 0.1 * torch.randn(K, **g))


# %% book/04_bptt.md, code cell 7 (The vanilla RNN and its indexing convention)
def _check_inputs(params: RNNParams, xs: torch.Tensor,
                  h_init: torch.Tensor | None = None,
                  ys: Sequence[int] | torch.Tensor | None = None, t: int | None = None):
    """Check xs (T, D), h_init (H,), ys (T,) and 0 <= t < T; return (xs, h_init, ys)."""
    if not isinstance(xs, torch.Tensor) or xs.dim() != 2 or xs.shape[1] != params.D:
        shape = tuple(xs.shape) if isinstance(xs, torch.Tensor) else type(xs).__name__
        raise ValueError(f"xs must be a (T, D={params.D}) tensor, got {shape}")
    T = xs.shape[0]
    if T == 0:
        raise ValueError("xs is an empty sequence (T=0); BPTT needs at least one step")
    if xs.dtype != params.U.dtype:
        raise TypeError(f"xs has dtype {xs.dtype} but the parameters have "
                        f"{params.U.dtype}")
    if h_init is None:
        h_init = xs.new_zeros(params.H)  # h_{-1} = 0
    elif tuple(h_init.shape) != (params.H,):
        raise ValueError(f"h_init must have shape (H,) = ({params.H},), "
                         f"got {tuple(h_init.shape)}")
    if ys is not None:
        ys = torch.as_tensor(ys, dtype=torch.long)
        if tuple(ys.shape) != (T,):
            raise ValueError(f"ys must hold one class per step, shape ({T},), "
                             f"got {tuple(ys.shape)}")
        if ys.min() < 0 or ys.max() >= params.K:
            raise ValueError(f"ys must be classes in 0..{params.K - 1} (K={params.K}), "
                             f"got values in {ys.min().item()}..{ys.max().item()}")
    if t is not None and (isinstance(t, bool) or not isinstance(t, numbers.Integral)
                          or not 0 <= t < T):
        raise ValueError(f"t={t!r} is outside the sequence: valid 0-based steps are "
                         f"0..{T - 1} (T={T})")
    return xs, h_init, ys


# %% book/04_bptt.md, code cell 8 (The vanilla RNN and its indexing convention)
def _forward_logits(params: RNNParams, xs: torch.Tensor, h_init: torch.Tensor):
    """Hidden states (T, H) and logits o_t (T, K) of the vanilla RNN."""
    Ux_b = xs @ params.U.T + params.b                 # (T, H): U x_t + b, all t at once
    h, hs = h_init, []
    for Ux_b_t in Ux_b:                               # the recurrence, t = 0 .. T-1
        h = torch.tanh(Ux_b_t + params.W @ h)         # h_t = tanh(a_t), (H,)
        hs.append(h)
    hs = torch.stack(hs)                              # (T, H)
    return hs, hs @ params.V.T + params.c             # (T, H), (T, K)


def rnn_forward(params: RNNParams, xs: torch.Tensor,
                h_init: torch.Tensor | None = None):
    """Run the RNN over xs (T, D).

    Returns the hidden states h_0..h_{T-1} (T, H) and the softmax outputs (T, K).
    """
    xs, h_init, _ = _check_inputs(params, xs, h_init)
    hs, logits = _forward_logits(params, xs, h_init)
    return hs, torch.softmax(logits, dim=-1)


def rnn_loss(params: RNNParams, xs: torch.Tensor, ys, t: int,
             h_init: torch.Tensor | None = None) -> torch.Tensor:
    """The loss at 0-based step t, L_t = -log ŷ_t[y_t] (a differentiable scalar)."""
    xs, h_init, ys = _check_inputs(params, xs, h_init, ys, t)
    _, logits = _forward_logits(params, xs, h_init)
    return -torch.log_softmax(logits[t], dim=-1)[ys[t]]


# %% book/04_bptt.md, code cell 12 (The general formula: a sum over earlier steps)
def _bptt(params: RNNParams, xs, ys, t: int, h_init=None):
    """Backward recursion for L_t.

    Returns δ_k = ∂L_t/∂a_k and g_k = ∂L_t/∂h_k for k = 0..t, the inputs and h_{k-1}.
    """
    xs, h_init, ys = _check_inputs(params, xs, h_init, ys, t)
    hs, logits = _forward_logits(params, xs, h_init)
    e_y = torch.nn.functional.one_hot(ys[t], params.K).to(logits.dtype)  # e_{y_t}, (K,)
    eps = torch.softmax(logits[t], dim=-1) - e_y          # ε_t = ∂L_t/∂o_t, (K,)
    g = params.V.T @ eps                                  # ∂L_t/∂h_t, (H,)
    deltas, grads_h = [], []
    for k in range(t, -1, -1):                            # k = t, t-1, ..., 0
        delta = (1 - hs[k] ** 2) * g                      # δ_k = (1 - h_k ⊙ h_k) ⊙ g_k
        deltas.append(delta)
        grads_h.append(g)
        g = params.W.T @ delta                            # ∂L_t/∂h_{k-1} = Wᵀ δ_k
    deltas = torch.stack(deltas[::-1])                    # (t+1, H), row k is δ_k
    h_prev = torch.cat([h_init[None], hs[:t]])            # (t+1, H), row k is h_{k-1}
    return deltas, torch.stack(grads_h[::-1]), xs[: t + 1], h_prev


# %% book/04_bptt.md, code cell 13 (The general formula: a sum over earlier steps)
def loss_grad_U(params: RNNParams, xs: torch.Tensor, ys, t: int,
                h_init: torch.Tensor | None = None) -> torch.Tensor:
    """∂L_t/∂U = Σ_{k=0}^{t} δ_k x_kᵀ, (H, D), by the explicit BPTT formula."""
    deltas, _, x, _ = _bptt(params, xs, ys, t, h_init)
    return deltas.T @ x                                   # (H, t+1) @ (t+1, D)


def loss_grad_W(params: RNNParams, xs: torch.Tensor, ys, t: int,
                h_init: torch.Tensor | None = None) -> torch.Tensor:
    """∂L_t/∂W = Σ_{k=0}^{t} δ_k h_{k-1}ᵀ, (H, H), by the explicit BPTT formula."""
    deltas, _, _, h_prev = _bptt(params, xs, ys, t, h_init)
    return deltas.T @ h_prev                              # (H, t+1) @ (t+1, H)


def loss_grad_b(params: RNNParams, xs: torch.Tensor, ys, t: int,
                h_init: torch.Tensor | None = None) -> torch.Tensor:
    """∂L_t/∂b = Σ_{k=0}^{t} δ_k, (H,), by the explicit BPTT formula."""
    deltas, _, _, _ = _bptt(params, xs, ys, t, h_init)
    return deltas.sum(0)


def loss_grad_hidden(params: RNNParams, xs: torch.Tensor, ys, t: int,
                     h_init: torch.Tensor | None = None) -> torch.Tensor:
    """∂L_t/∂h_k for k = 0..t, stacked (t+1, H), by the explicit BPTT recursion."""
    return _bptt(params, xs, ys, t, h_init)[1]


# %% book/04_bptt.md, code cell 17
# (Checking the formulas against autograd, for every $t$)
class BPTTLoss(torch.autograd.Function):
    """L_t with our BPTT formulas as its backward (for torch.autograd.gradcheck)."""

    @staticmethod
    def forward(ctx, U, W, b, V, c, xs, ys, t, h_init):
        params = RNNParams(U, W, V, b, c)
        ctx.saved = (params, xs, ys, t, h_init)
        return rnn_loss(params, xs, ys, t, h_init)

    @staticmethod
    def backward(ctx, grad_out):
        params, xs, ys, t, h_init = ctx.saved
        deltas, _, x, h_prev = _bptt(params, xs, ys, t, h_init)
        # ∂L_t/∂U, ∂L_t/∂W, ∂L_t/∂b; none for V, c, xs, ys, t, h_init
        return (grad_out * deltas.T @ x, grad_out * deltas.T @ h_prev,
                grad_out * deltas.sum(0), None, None, None, None, None, None)
