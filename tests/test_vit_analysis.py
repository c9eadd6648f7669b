"""Tests for annotated.vit_analysis: CLS maps, rollout, attention distance, position similarity, CKA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from annotated.vit_analysis import (
    attention_rollout,
    cka_matrix,
    cls_attention_maps,
    linear_cka,
    mean_attention_distance,
    minibatch_cka,
    position_similarity,
    unbiased_hsic,
)


def random_attention(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).softmax(-1)


# ---------------------------------------------------------------- class-token maps
def test_cls_attention_maps_puts_each_patch_in_its_grid_cell():
    att = torch.zeros(2, 1, 3, 10, 10)
    att[..., 0, 1:] = torch.arange(9, dtype=torch.float32)  # class token -> patch k gets weight k
    maps = cls_attention_maps(att)
    assert maps.shape == (2, 1, 3, 3, 3)
    assert maps[0, 0, 0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # row-major, like the patches


def test_cls_attention_maps_rejects_non_square_grids():
    with pytest.raises(ValueError, match="9 tokens are not 1 class token \\+ a square grid"):
        cls_attention_maps(torch.zeros(1, 1, 9, 9))
    with pytest.raises(ValueError, match="must end in \\(tokens, tokens\\)"):
        cls_attention_maps(torch.zeros(1, 4, 5))


# ---------------------------------------------------------------- rollout
def test_rollout_of_one_layer_is_half_attention_plus_identity():
    A = random_attention(1, 3, 1, 5, 5)  # one layer, one head
    rolled = attention_rollout(A)
    assert torch.allclose(rolled, (A[0, :, 0] + torch.eye(5)) / 2, atol=1e-12)
    # with several heads the layer's attention is their mean
    A = random_attention(1, 2, 4, 5, 5, seed=1)
    assert torch.allclose(attention_rollout(A), (A[0].mean(1) + torch.eye(5)) / 2, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(layers=st.integers(1, 4), tokens=st.integers(2, 9), ratio=st.sampled_from([0.0, 0.3, 0.6]),
       seed=st.integers(0, 1000))
def test_rollout_rows_are_distributions(layers, tokens, ratio, seed):
    rolled = attention_rollout(random_attention(layers, 2, 3, tokens, tokens, seed=seed), discard_ratio=ratio)
    assert rolled.shape == (2, tokens, tokens)
    assert (rolled >= 0).all()
    assert torch.allclose(rolled.sum(-1), torch.ones(2, tokens, dtype=torch.float64), atol=1e-10)


def test_rollout_multiplies_layers_in_order():
    A = random_attention(2, 1, 1, 4, 4, seed=3)
    eye = torch.eye(4, dtype=torch.float64)
    expected = ((A[1, 0, 0] + eye) / 2) @ ((A[0, 0, 0] + eye) / 2)
    assert torch.allclose(attention_rollout(A)[0], expected, atol=1e-12)


def test_rollout_bad_input():
    with pytest.raises(ValueError, match=r"\(layers, batch, heads, tokens, tokens\), got shape \(2, 3, 4"):
        attention_rollout(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="discard_ratio must be in \\[0, 1\\), got 1.0"):
        attention_rollout(random_attention(1, 1, 1, 3, 3), discard_ratio=1.0)


# ---------------------------------------------------------------- mean attention distance
def test_identity_attention_has_zero_distance():
    eye = torch.eye(16).expand(2, 3, 16, 16)
    assert torch.allclose(mean_attention_distance(eye, 4, 8), torch.zeros(3, dtype=torch.float64))
    with_cls = torch.eye(17).expand(2, 3, 17, 17)
    assert torch.allclose(mean_attention_distance(with_cls, 4, 8), torch.zeros(3, dtype=torch.float64))


def test_attention_distance_by_hand():
    # 2x2 grid, patch size 4: from any patch the others are 4, 4 and 4*sqrt(2) px away
    uniform = torch.full((1, 1, 4, 4), 0.25)
    expected = 4 * (0 + 1 + 1 + math.sqrt(2)) / 4
    assert mean_attention_distance(uniform, 2, 4).item() == pytest.approx(expected)
    # head 0 attends to the right-hand neighbour only (patches 0->1, 1->0, 2->3, 3->2): 4 px
    # head 1 attends to the diagonal patch: 4 sqrt(2) px
    att = torch.zeros(1, 2, 4, 4)
    for i, j in ((0, 1), (1, 0), (2, 3), (3, 2)):
        att[0, 0, i, j] = 1
    for i, j in ((0, 3), (3, 0), (1, 2), (2, 1)):
        att[0, 1, i, j] = 1
    assert mean_attention_distance(att, 2, 4).tolist() == pytest.approx([4.0, 4 * math.sqrt(2)])


def test_attention_distance_drops_the_class_token_and_renormalises():
    att = torch.zeros(1, 1, 5, 5)
    att[0, 0, :, 0] = 0.5  # half of every row on the class token
    att[0, 0, 1:, 1:] = torch.eye(4) * 0.5
    att[0, 0, 0, 1:] = 0.125
    assert mean_attention_distance(att, 2, 4).item() == pytest.approx(0.0)


def test_attention_distance_bad_input():
    with pytest.raises(ValueError, match="11 tokens do not fit a 3x3 grid \\(expected 9 patches, or 10"):
        mean_attention_distance(torch.zeros(1, 1, 11, 11), 3, 4)
    with pytest.raises(ValueError, match="\\(batch, heads, tokens, tokens\\)"):
        mean_attention_distance(torch.zeros(4, 4), 2, 4)


def test_position_similarity():
    pos = torch.randn(1, 10, 6)
    sim = position_similarity(pos, 3)
    assert sim.shape == (3, 3, 3, 3)
    assert torch.allclose(sim.reshape(9, 9).diagonal(), torch.ones(9, dtype=torch.float64))
    with pytest.raises(ValueError, match="7 position embeddings do not fit a 3x3 grid"):
        position_similarity(torch.randn(7, 6), 3)


# ---------------------------------------------------------------- CKA
def numpy_linear_cka(X, Y):
    """Feature-space formula of Kornblith et al.: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)."""
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    return np.linalg.norm(Y.T @ X) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 40), p1=st.integers(1, 12), p2=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_linear_cka_matches_numpy_and_lies_in_unit_interval(n, p1, p2, seed):
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(n, p1)), rng.normal(size=(n, p2)) + rng.normal() * rng.normal(size=(n, 1))
    ours = linear_cka(torch.from_numpy(X), torch.from_numpy(Y))
    assert ours == pytest.approx(numpy_linear_cka(X, Y), abs=1e-9)
    assert -1e-12 <= ours <= 1 + 1e-12


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), c=st.floats(0.01, 100.0))
def test_linear_cka_invariant_to_rotation_and_scaling(seed, c):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(30, 8, generator=g, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    assert linear_cka(X, X @ Q) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(X, c * X) == pytest.approx(1.0, abs=1e-9)
    Y = torch.randn(30, 5, generator=g, dtype=torch.float64)
    assert linear_cka(X @ Q, c * Y) == pytest.approx(linear_cka(X, Y), abs=1e-9)


def test_cka_bad_input():
    with pytest.raises(ValueError, match="X has 10 rows, Y has 9"):
        linear_cka(torch.randn(10, 3), torch.randn(9, 3))
    with pytest.raises(ValueError, match="X has 10 rows, Y has 9"):
        minibatch_cka(torch.randn(10, 3), torch.randn(9, 3), 4)
    with pytest.raises(ValueError, match="constant representation"):
        linear_cka(torch.ones(5, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="batch_size=3, n=10"):
        minibatch_cka(torch.randn(10, 3), torch.randn(10, 3), 3)
    with pytest.raises(ValueError, match="features must be \\(examples, ...\\)"):
        linear_cka(torch.randn(10), torch.randn(10))


def numpy_unbiased_hsic(K, L):
    """Song et al. (2012), eq. 5, written with explicit loops-free NumPy."""
    m = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    ones = np.ones(m)
    return (np.trace(K @ L) + ones @ K @ ones * (ones @ L @ ones) / ((m - 1) * (m - 2))
            - 2 / (m - 2) * ones @ K @ L @ ones) / (m * (m - 3))


def test_unbiased_hsic_matches_numpy():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(9, 4)), rng.normal(size=(9, 6))
    ours = unbiased_hsic(torch.from_numpy(X @ X.T), torch.from_numpy(Y @ Y.T)).item()
    assert ours == pytest.approx(numpy_unbiased_hsic(X @ X.T, Y @ Y.T), rel=1e-10)
    with pytest.raises(ValueError, match="at least 4 examples, got 3"):
        unbiased_hsic(torch.eye(3), torch.eye(3))


def test_unbiased_hsic_is_unbiased_for_independent_features():
    """For independent X, Y the unbiased HSIC averages to 0; the biased estimator stays positive."""
    g = torch.Generator().manual_seed(0)
    unbiased, biased = [], []
    for _ in range(300):
        X = torch.randn(8, 3, generator=g, dtype=torch.float64)
        Y = torch.randn(8, 3, generator=g, dtype=torch.float64)
        K, L = X @ X.T, Y @ Y.T
        H = torch.eye(8, dtype=torch.float64) - 1 / 8
        unbiased.append(unbiased_hsic(K, L).item())
        biased.append((K @ H @ L @ H).trace().item() / 7 ** 2)
    se = np.std(unbiased) / math.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 3 * se
    assert np.mean(biased) > 10 * se


def test_minibatch_cka_converges_to_full_batch():
    g = torch.Generator().manual_seed(0)
    n = 2048
    X = torch.randn(n, 16, generator=g, dtype=torch.float64)
    Y = X[:, :8] @ torch.randn(8, 12, generator=g, dtype=torch.float64) + torch.randn(n, 12, generator=g,
                                                                                      dtype=torch.float64)
    full = linear_cka(X, Y)
    errors = [abs(minibatch_cka(X, Y, b) - full) for b in (16, 256, 2048)]
    assert max(errors) < 0.02  # many small batches already estimate the full-batch value
    assert errors[-1] < 0.005  # one batch of all n: the unbiased and biased estimators agree up to O(1/n)
    small_gap = abs(minibatch_cka(X[:32], Y[:32], 32) - linear_cka(X[:32], Y[:32]))
    assert errors[-1] < small_gap


def test_cka_matrix_is_symmetric_with_unit_diagonal():
    g = torch.Generator().manual_seed(1)
    layers = [torch.randn(64, 5, generator=g)]
    layers.append(layers[0] @ torch.randn(5, 7, generator=g) + 0.3 * torch.randn(64, 7, generator=g))
    layers.append(torch.randn(64, 4, 2, generator=g))  # any trailing shape is flattened
    M = cka_matrix(layers, layers, batch_size=32)
    assert M.shape == (3, 3)
    assert torch.allclose(M, M.T) and torch.allclose(M.diagonal(), torch.ones(3, dtype=torch.float64))
    assert M[0, 1] > M[0, 2]
