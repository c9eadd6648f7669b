"""Chapter 4 (annotated.bptt): the explicit BPTT formulas against autograd and finite differences."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from annotated.bptt import (
    BPTTLoss,
    RNNParams,
    loss_grad_b,
    loss_grad_hidden,
    loss_grad_U,
    loss_grad_W,
    random_rnn_params,
    rnn_forward,
    rnn_loss,
)

F64 = torch.float64


def make_problem(H, D, K, T, seed, h_init_scale=0.0, spectral_radius=None):
    gen = torch.Generator().manual_seed(seed)
    params = random_rnn_params(H, D, K, spectral_radius=spectral_radius, generator=gen)
    xs = torch.randn(T, D, generator=gen, dtype=F64)
    ys = torch.randint(0, K, (T,), generator=gen)
    h_init = h_init_scale * torch.randn(H, generator=gen, dtype=F64) if h_init_scale else None
    return params, xs, ys, h_init


def reference_forward(params, xs, h_init=None):
    """An independent, plain-loop forward pass written straight from the equations."""
    h = torch.zeros(params.H, dtype=xs.dtype) if h_init is None else h_init
    hs, probs = [], []
    for x in xs:
        a = params.U @ x + params.W @ h + params.b
        h = torch.tanh(a)
        o = params.V @ h + params.c
        hs.append(h)
        probs.append(torch.exp(o) / torch.exp(o).sum())
    return torch.stack(hs), torch.stack(probs)


def autograd_grads(params, xs, ys, t, h_init=None):
    """∂L_t/∂(U, W, b) and ∂L_t/∂h_k by autograd on the reference forward pass."""
    leaves = {n: getattr(params, n).detach().clone().requires_grad_() for n in "UWVbc"}
    p = RNNParams(**leaves)
    h = torch.zeros(p.H, dtype=F64) if h_init is None else h_init
    hs = []
    for x in xs[: t + 1]:
        h = torch.tanh(p.U @ x + p.W @ h + p.b)
        h.retain_grad()
        hs.append(h)
    loss = -torch.log_softmax(p.V @ hs[-1] + p.c, dim=-1)[ys[t]]
    loss.backward()
    return {"U": leaves["U"].grad, "W": leaves["W"].grad, "b": leaves["b"].grad,
            "h": torch.stack([h.grad for h in hs])}


# --- forward ------------------------------------------------------------------------------------

def test_forward_matches_plain_loop_and_outputs_are_distributions():
    params, xs, _, h_init = make_problem(5, 3, 4, 7, seed=1, h_init_scale=0.7)
    hs, y_hat = rnn_forward(params, xs, h_init)
    ref_hs, ref_probs = reference_forward(params, xs, h_init)
    assert hs.shape == (7, 5) and y_hat.shape == (7, 4)
    torch.testing.assert_close(hs, ref_hs, rtol=0, atol=1e-14)
    torch.testing.assert_close(y_hat, ref_probs, rtol=0, atol=1e-14)
    torch.testing.assert_close(y_hat.sum(-1), torch.ones(7, dtype=F64))


def test_loss_is_negative_log_probability_of_target():
    params, xs, ys, _ = make_problem(4, 2, 6, 5, seed=2)
    _, y_hat = rnn_forward(params, xs)
    for t in range(5):
        expected = -math.log(y_hat[t, ys[t]].item())
        assert rnn_loss(params, xs, ys, t).item() == pytest.approx(expected, abs=1e-12)


# --- the formulas against autograd -------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(H=st.integers(1, 7), D=st.integers(1, 5), K=st.integers(2, 6), T=st.integers(1, 8),
       seed=st.integers(0, 10_000), with_h_init=st.booleans())
def test_formulas_match_autograd_for_every_t(H, D, K, T, seed, with_h_init):
    params, xs, ys, h_init = make_problem(H, D, K, T, seed, h_init_scale=0.8 if with_h_init else 0.0)
    for t in range(T):
        ref = autograd_grads(params, xs, ys, t, h_init)
        gU = loss_grad_U(params, xs, ys, t, h_init)
        gW = loss_grad_W(params, xs, ys, t, h_init)
        gb = loss_grad_b(params, xs, ys, t, h_init)
        gh = loss_grad_hidden(params, xs, ys, t, h_init)
        assert gU.shape == (H, D) and gW.shape == (H, H) and gb.shape == (H,) and gh.shape == (t + 1, H)
        for ours, name in ((gU, "U"), (gW, "W"), (gb, "b"), (gh, "h")):
            torch.testing.assert_close(ours, ref[name], rtol=1e-10, atol=1e-12, msg=f"d L_{t} / d {name}")


def test_gradient_of_W_needs_the_initial_state_term():
    """With h_{-1} != 0 the k = 0 term δ_0 h_{-1}ᵀ matters; with h_{-1} = 0, ∂L_0/∂W is exactly zero."""
    params, xs, ys, h_init = make_problem(4, 3, 5, 4, seed=3, h_init_scale=1.0)
    assert torch.count_nonzero(loss_grad_W(params, xs, ys, 0)) == 0
    g0 = loss_grad_W(params, xs, ys, 0, h_init)
    torch.testing.assert_close(g0, autograd_grads(params, xs, ys, 0, h_init)["W"])
    assert g0.abs().max() > 1e-3


def test_constant_input_column_acts_as_bias():
    """If x_t = 1 for every t (D = 1), U is a second bias: ∂L_t/∂U[:, 0] = ∂L_t/∂b."""
    params, _, ys, _ = make_problem(6, 1, 4, 5, seed=4)
    xs = torch.ones(5, 1, dtype=F64)
    for t in range(5):
        torch.testing.assert_close(loss_grad_U(params, xs, ys, t)[:, 0], loss_grad_b(params, xs, ys, t),
                                   rtol=0, atol=1e-15)


def manual_deltas(params, xs, ys, t):
    """δ_k = ∂L_t/∂a_k for k = 0..t, written out step by step (independent of annotated.bptt._bptt)."""
    hs, _ = reference_forward(params, xs)
    eps = torch.softmax(params.V @ hs[t] + params.c, -1) - torch.nn.functional.one_hot(ys[t], params.K)
    deltas = {t: (1 - hs[t] ** 2) * (params.V.T @ eps)}
    for k in range(t, 0, -1):
        deltas[k - 1] = (1 - hs[k - 1] ** 2) * (params.W.T @ deltas[k])
    return deltas


def test_two_term_answer_is_complete_only_under_1_based_indexing():
    """The course's ∂L_2/∂U = δ_2 x_2ᵀ + δ_1 x_1ᵀ: whole sum 1-based, misses δ_0 x_0ᵀ 0-based."""
    params, xs, ys, _ = make_problem(5, 3, 4, 3, seed=5)
    # 1-based: the course's L_2 is the loss at the second step, our t = 1; two terms are everything.
    d = manual_deltas(params, xs, ys, 1)
    two_term = torch.outer(d[1], xs[1]) + torch.outer(d[0], xs[0])
    torch.testing.assert_close(two_term, autograd_grads(params, xs, ys, 1)["U"], rtol=1e-12, atol=1e-14)
    # 0-based: L_2 is the loss at the third step; the two-term answer misses exactly δ_0 x_0ᵀ.
    d = manual_deltas(params, xs, ys, 2)
    two_term = torch.outer(d[2], xs[2]) + torch.outer(d[1], xs[1])
    ref = autograd_grads(params, xs, ys, 2)["U"]
    torch.testing.assert_close(ref - two_term, torch.outer(d[0], xs[0]), rtol=1e-12, atol=1e-14)
    assert (ref - two_term).norm() > 1e-2 * ref.norm()
    torch.testing.assert_close(loss_grad_U(params, xs, ys, 2), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("t", [0, 1, 2, 3, 4])
def test_gradcheck_explicit_backward_against_finite_differences(t):
    params, xs, ys, h_init = make_problem(3, 2, 4, 5, seed=6, h_init_scale=0.5)
    U, W, b = (p.detach().clone().requires_grad_() for p in (params.U, params.W, params.b))
    fn = lambda U, W, b: BPTTLoss.apply(U, W, b, params.V, params.c, xs, ys, t, h_init)
    assert torch.autograd.gradcheck(fn, (U, W, b))


def test_bpttloss_backward_is_our_formula_not_autograd():
    """A deliberately wrong backward must be caught: scaling the returned gradient fails gradcheck."""
    params, xs, ys, _ = make_problem(3, 2, 4, 4, seed=7)

    class Wrong(BPTTLoss):
        @staticmethod
        def backward(ctx, grad_out):
            grads = BPTTLoss.backward(ctx, grad_out)
            return (1.01 * grads[0],) + grads[1:]

    U, W, b = (p.detach().clone().requires_grad_() for p in (params.U, params.W, params.b))
    fn = lambda U, W, b: Wrong.apply(U, W, b, params.V, params.c, xs, ys, 3, None)
    assert not torch.autograd.gradcheck(fn, (U, W, b), raise_exception=False)


# --- vanishing gradients ------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(rho=st.floats(0.2, 3.0), seed=st.integers(0, 1000))
def test_hidden_gradient_obeys_spectral_norm_bound(rho, seed):
    """‖∂L_t/∂h_k‖ ≤ ‖W‖₂^{t-k} ‖∂L_t/∂h_t‖, since 0 < 1 - h² ≤ 1."""
    params, xs, ys, _ = make_problem(8, 3, 5, 25, seed, spectral_radius=rho)
    g = loss_grad_hidden(params, xs, ys, 24).norm(dim=1)                     # (25,)
    sigma = torch.linalg.matrix_norm(params.W, ord=2)
    bound = sigma ** torch.arange(24, -1, -1, dtype=F64) * g[-1]
    assert (g <= bound * (1 + 1e-9) + 1e-300).all()


def test_small_spectral_radius_vanishes_large_one_does_not():
    small = [loss_grad_hidden(*make_problem(32, 4, 5, 40, s, spectral_radius=0.5)[:3], 39).norm(dim=1)
             for s in range(4)]
    large = [loss_grad_hidden(*make_problem(32, 4, 5, 40, s, spectral_radius=3.0)[:3], 39).norm(dim=1)
             for s in range(4)]
    assert all(g[0] < 1e-8 * g[-1] for g in small)    # 39 steps back: gone
    assert all(g[0] > g[-1] for g in large)           # 39 steps back: larger than at the loss


# --- random parameters --------------------------------------------------------------------------

def test_random_params_have_requested_spectral_radius_and_shapes():
    p = random_rnn_params(10, 3, 4, spectral_radius=1.7, generator=torch.Generator().manual_seed(0))
    assert torch.linalg.eigvals(p.W).abs().max().item() == pytest.approx(1.7, rel=1e-10)
    assert (p.H, p.D, p.K) == (10, 3, 4)
    assert p.U.dtype == F64


# --- bad input ----------------------------------------------------------------------------------

def good_tensors(H=4, D=3, K=5):
    return dict(U=torch.zeros(H, D), W=torch.zeros(H, H), V=torch.zeros(K, H),
                b=torch.zeros(H), c=torch.zeros(K))


@pytest.mark.parametrize("name, bad, pattern", [
    ("W", torch.zeros(4, 3), r"W has shape \(4, 3\), expected \(4, 4\)"),
    ("V", torch.zeros(5, 3), r"V has shape \(5, 3\), expected \(5, 4\)"),
    ("b", torch.zeros(3), r"b has shape \(3,\), expected \(4,\)"),
    ("c", torch.zeros(4), r"c has shape \(4,\), expected \(5,\)"),
    ("U", torch.zeros(4), r"U must be \(H, D\).*got U \(4,\)"),
])
def test_mismatched_parameter_shapes_are_named(name, bad, pattern):
    kwargs = good_tensors() | {name: bad}
    with pytest.raises(ValueError, match=pattern):
        RNNParams(**kwargs)


def test_parameters_must_be_tensors_of_one_float_dtype():
    with pytest.raises(TypeError, match="RNNParams.W must be a torch.Tensor, got list"):
        RNNParams(**good_tensors() | {"W": [[0.0] * 4] * 4})
    with pytest.raises(TypeError, match="one floating dtype"):
        RNNParams(**good_tensors() | {"b": torch.zeros(4, dtype=F64)})


@pytest.mark.parametrize("t", [5, 6, -1, 100])
def test_t_outside_the_sequence_is_refused(t):
    params, xs, ys, _ = make_problem(3, 2, 4, 5, seed=8)
    for fn in (loss_grad_U, loss_grad_W, loss_grad_b, loss_grad_hidden, rnn_loss):
        message = rf"t={t} is outside the sequence: valid 0-based steps are 0\.\.4 \(T=5\)"
        with pytest.raises(ValueError, match=message):
            fn(params, xs, ys, t)


def test_non_integer_t_is_refused():
    params, xs, ys, _ = make_problem(3, 2, 4, 5, seed=8)
    for t in (1.0, True, "1"):
        with pytest.raises(ValueError, match="outside the sequence"):
            loss_grad_U(params, xs, ys, t)


def test_bad_inputs_name_the_shapes():
    params, xs, ys, _ = make_problem(3, 2, 4, 5, seed=9)
    with pytest.raises(ValueError, match=r"xs must be a \(T, D=2\) tensor, got \(5, 3\)"):
        rnn_forward(params, torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"empty sequence \(T=0\)"):
        rnn_forward(params, torch.zeros(0, 2, dtype=F64))
    with pytest.raises(TypeError, match="xs has dtype torch.float32 but the parameters have torch.float64"):
        rnn_forward(params, xs.float())
    with pytest.raises(ValueError, match=r"h_init must have shape \(H,\) = \(3,\), got \(4,\)"):
        rnn_forward(params, xs, torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match=r"ys must hold one class per step, shape \(5,\), got \(4,\)"):
        loss_grad_U(params, xs, ys[:4], 0)
    with pytest.raises(ValueError, match=r"ys must be classes in 0\.\.3 \(K=4\), got values in 0\.\.4"):
        loss_grad_U(params, xs, torch.tensor([0, 1, 2, 3, 4]), 0)
