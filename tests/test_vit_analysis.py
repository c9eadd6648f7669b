"""Tests for annotated.vit_analysis: CLS maps, x-uniform units, rollout, attention distance and
entropy, position similarity, CKA, and the faithfulness tests (deletion, randomisation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from annotated.vit import VisionTransformer, ViTConfig, predict
from annotated.vit_analysis import (
    attention_entropy,
    attention_rollout,
    cka_matrix,
    cls_attention_maps,
    delete_patches,
    deletion_curve,
    explorer_rows,
    linear_cka,
    mean_attention_distance,
    minibatch_cka,
    neighbourhood_attention,
    own_patch_similarity,
    position_similarity,
    random_ranking,
    randomised_top_down,
    rank_correlation,
    times_uniform,
    unbiased_hsic,
)

TINY_3_BLOCKS = ViTConfig(image_size=8, patch_size=4, d_model=8, depth=3, n_heads=2, d_ff=16)
TINY_16PX = ViTConfig(image_size=16, patch_size=4, d_model=16, depth=2, n_heads=2, d_ff=32)


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


# ---------------------------------------------------------------- x uniform
def test_times_uniform_of_uniform_attention_is_one_whatever_the_scale():
    flat = torch.full((2, 3, 4, 4), 0.01)  # rows need not sum to 1 over the patches
    assert torch.allclose(times_uniform(flat), torch.ones(2, 3, 4, 4))
    # the class token's row (1 + 16 tokens) with 1/17 on each: uniform over patches again
    row = torch.full((1, 17, 17), 1 / 17)
    assert torch.allclose(times_uniform(cls_attention_maps(row)), torch.ones(1, 4, 4))


def test_times_uniform_by_hand():
    one_hot = torch.zeros(3, 3)
    one_hot[1, 2] = 0.4  # all of the patches' weight on one of 9 patches
    out = times_uniform(one_hot)
    assert out[1, 2].item() == pytest.approx(9.0) and out.sum().item() == pytest.approx(9.0)
    m = torch.tensor([[1.0, 3.0], [0.0, 4.0]])  # shares 1/8, 3/8, 0, 1/2 of 4 patches
    assert times_uniform(m).flatten().tolist() == pytest.approx([0.5, 1.5, 0.0, 2.0])


def test_times_uniform_bad_input():
    with pytest.raises(ValueError, match="cannot hold negative weights"):
        times_uniform(torch.tensor([[1.0, -1.0], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="no weight on any patch"):
        times_uniform(torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="must end in a \\(g, g\\) grid"):
        times_uniform(torch.ones(4))


# ---------------------------------------------------------------- entropy, neighbourhood
def test_uniform_attention_has_maximal_entropy_and_known_distance():
    for g, P in ((2, 4), (4, 4), (8, 4)):
        N = g * g
        uniform = torch.full((1, 2, N + 1, N + 1), 1 / (N + 1))  # with a class token
        assert attention_entropy(uniform, g).tolist() == pytest.approx([math.log(N)] * 2)
        # independent reference: the mean over all ordered pairs of patch centres (NumPy)
        ys, xs = np.divmod(np.arange(N), g)
        d = P * np.hypot(ys[:, None] - ys[None], xs[:, None] - xs[None])
        assert mean_attention_distance(uniform, g, P).tolist() == pytest.approx([d.mean()] * 2)


def test_entropy_of_one_hot_and_of_two_patches():
    eye = torch.eye(9).expand(2, 3, 9, 9)
    assert torch.allclose(attention_entropy(eye, 3), torch.zeros(3, dtype=torch.float64))
    half = torch.zeros(1, 1, 4, 4)
    half[0, 0, :, :2] = 0.5  # every row split evenly over two patches
    assert attention_entropy(half, 2).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="11 tokens do not fit a 3x3 grid"):
        attention_entropy(torch.zeros(1, 1, 11, 11), 3)


def test_neighbourhood_attention():
    A = neighbourhood_attention(4, radius=1)
    assert torch.allclose(A.sum(-1), torch.ones(16, dtype=torch.float64))
    assert (A[0] > 0).sum() == 4 and (A[5] > 0).sum() == 9  # a corner, an interior patch
    # an interior patch: itself, 4 neighbours at P and 4 at P sqrt(2) -> 4.29 px at P = 4
    interior = torch.zeros(1, 1, 16, 16)
    interior[0, 0, 5] = A[5]
    per_query = (interior[0, 0, 5] * torch.tensor(
        [4 * math.hypot(5 // 4 - j // 4, 5 % 4 - j % 4) for j in range(16)])).sum()
    assert per_query.item() == pytest.approx(4 * (4 + 4 * math.sqrt(2)) / 9)
    assert torch.allclose(neighbourhood_attention(4, radius=0), torch.eye(16, dtype=torch.float64))
    assert torch.allclose(neighbourhood_attention(3, radius=2), torch.full((9, 9), 1 / 9,
                                                                          dtype=torch.float64))
    with pytest.raises(ValueError, match="radius must be >= 0, got -1"):
        neighbourhood_attention(3, radius=-1)


# ---------------------------------------------------------------- deletion
class BrightCorner(torch.nn.Module):
    """A 'model' that reads only the top-left 4x4 patch: class 1 if it is bright, else 0."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # predict() asks for a device

    def forward(self, x):  # x: normalised (B, 3, 8, 8)
        bright = x[:, :, :4, :4].mean((1, 2, 3))
        return torch.stack([-bright, bright], 1) + 0 * self.dummy


def corner_data(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    images[labels == 1, :, :4, :4] = 250  # class 1: a bright top-left patch
    return images, labels


def test_delete_patches_replaces_exactly_the_top_k():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2], [0.8, 0.1, 0.2, 0.3]])  # 2x2 patches of 2x2
    out = delete_patches(images, scores, 2, 2, fill=-1.0)
    gone = out == -1
    assert gone[0, 0].tolist() == [[False, False, True, True], [False, False, True, True],
                                   [True, True, False, False], [True, True, False, False]]
    assert gone[1, 0, :2, :2].all() and gone[1, 0, 2:, 2:].all() and gone.sum() == 16
    assert torch.equal(out[~gone], images[~gone])
    assert torch.equal(delete_patches(images, scores, 0, 2, fill=-1.0), images)
    # a per-channel colour
    rgb = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    out = delete_patches(rgb, torch.ones(1, 1), 1, 2, fill=torch.tensor([10, 20, 30]))
    assert out[0, :, 0, 0].tolist() == [10, 20, 30] and out.dtype == torch.uint8


def test_deletion_curve_at_zero_is_the_plain_accuracy_and_faithful_maps_fall_faster():
    images, labels = corner_data()
    model = BrightCorner()
    faithful = torch.zeros(len(images), 4)
    faithful[:, 0] = 1.0  # the top-left patch ranked first: what the model reads
    unfaithful = torch.zeros(len(images), 4)
    unfaithful[:, 3] = 1.0  # the bottom-right patch ranked first: never read
    fill = torch.zeros(3)  # black
    curve = deletion_curve(model, images, labels, faithful, [0, 1, 4], 4, fill)
    accuracy = (predict(model, images).argmax(1) == labels).double().mean()
    assert curve[0] == accuracy == 1.0
    assert curve[1] == 0.5  # the corner gone: every image looks like class 0
    ignored = deletion_curve(model, images, labels, unfaithful, [0, 1], 4, fill)
    assert ignored.tolist() == [1.0, 1.0]


def test_random_ranking_is_reproducible_at_a_seed():
    a, b = random_ranking(5, 16, seed=3), random_ranking(5, 16, seed=3)
    assert torch.equal(a, b) and a.shape == (5, 16)
    assert not torch.equal(a, random_ranking(5, 16, seed=4))
    # every image gets its own order, and all orders are equally likely in the long run
    firsts = random_ranking(4000, 4, seed=0).argmax(1).bincount(minlength=4).double()
    assert (firsts / 4000 - 0.25).abs().max() < 0.03


def test_deletion_bad_input():
    images = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="scores must be \\(images, patches\\) = \\(2, 4\\), "
                                         "got \\(2, 5\\)"):
        delete_patches(images, torch.zeros(2, 5), 1, 4, 0.0)
    with pytest.raises(ValueError, match="k must be between 0 and 4 patches, got 5"):
        delete_patches(images, torch.zeros(2, 4), 5, 4, 0.0)
    with pytest.raises(ValueError, match="8x8 images do not split into 3x3 patches"):
        delete_patches(images, torch.zeros(2, 4), 1, 3, 0.0)
    with pytest.raises(ValueError, match="images must be \\(B, C, H, W\\)"):
        delete_patches(torch.zeros(3, 8, 8), torch.zeros(3, 4), 1, 4, 0.0)


# ---------------------------------------------------------------- randomisation
def numpy_spearman(a, b):
    """Spearman's rho as Pearson's r of the ranks (no ties in continuous data)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return np.corrcoef(ra, rb)[0, 1]


def test_rank_correlation_matches_numpy_and_ignores_monotone_maps():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(6, 3, 3, generator=g), torch.rand(6, 3, 3, generator=g)
    ours = rank_correlation(a, b)
    expected = [numpy_spearman(x.flatten().numpy(), z.flatten().numpy()) for x, z in zip(a, b)]
    assert ours.tolist() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(rank_correlation(a, a.exp() * 5), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(rank_correlation(a, -a), -torch.ones(6, dtype=torch.float64))
    # ties share their average rank
    tied = torch.tensor([[1.0, 1.0, 2.0, 3.0]])
    assert rank_correlation(tied, torch.tensor([[1.0, 2.0, 3.0, 4.0]])).item() == \
        pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])


def test_rank_correlation_bad_input():
    with pytest.raises(ValueError, match="one shape"):
        rank_correlation(torch.rand(2, 4), torch.rand(2, 5))
    with pytest.raises(ValueError, match="constant map"):
        rank_correlation(torch.ones(2, 4), torch.rand(2, 4))


def test_randomised_top_down_replaces_one_more_part_each_step():
    torch.manual_seed(0)
    trained = VisionTransformer(TINY_3_BLOCKS)
    torch.manual_seed(1)
    control = VisionTransformer(TINY_3_BLOCKS)
    steps = randomised_top_down(trained, control)
    assert [name for name, _ in steps] == ["trained", "head", "block 3", "block 2", "block 1",
                                           "embedding"]

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                     b.state_dict().values()))
    assert same(steps[0][1], trained) and same(steps[-1][1], control)
    assert same(steps[1][1].head, control.head) and same(steps[1][1].layers[2], trained.layers[2])
    assert same(steps[2][1].layers[2], control.layers[2])
    assert same(steps[2][1].layers[1], trained.layers[1])
    assert same(steps[4][1].layers[0], control.layers[0])
    assert torch.equal(steps[4][1].pos_embed, trained.pos_embed)  # the embedding goes last
    assert steps[0][1] is not trained  # copies: the trained model is left alone


def test_randomised_maps_change_but_the_head_does_not_touch_attention():
    torch.manual_seed(0)
    trained = VisionTransformer(TINY_16PX)
    torch.manual_seed(1)
    control = VisionTransformer(TINY_16PX)
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    maps = [cls_attention_maps(attention_rollout(m.attention_maps(x)))
            for _, m in randomised_top_down(trained, control)]
    assert torch.equal(maps[0], maps[1])  # the classifier head never enters attention
    assert rank_correlation(maps[-1], maps[0]).mean() < 0.9


# ---------------------------------------------------------------- token identity
def numpy_own_patch_similarity(state, inputs):
    """The same measure with explicit loops, in NumPy."""
    total_own, total_other, n_other = 0.0, 0.0, 0
    for a, b in zip(state[:, 1:], inputs[:, 1:]):
        a, b = a - a.mean(0), b - b.mean(0)
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        for i in range(len(a)):
            for j in range(len(b)):
                if i == j:
                    total_own += a[i] @ b[j]
                else:
                    total_other += a[i] @ b[j]
                    n_other += 1
    return total_own / (len(state) * (state.shape[1] - 1)) - total_other / n_other


def test_own_patch_similarity():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(3, 10, 16, generator=g, dtype=torch.float64)
    z = z0 + 0.5 * torch.randn(3, 10, 16, generator=g, dtype=torch.float64)
    assert own_patch_similarity(z, z0) == pytest.approx(
        numpy_own_patch_similarity(z.numpy(), z0.numpy()), abs=1e-12)
    # tokens equal to their inputs: similarity 1 with their own, about 0 with the others
    assert own_patch_similarity(z0, z0) > 0.9
    # tokens shuffled across positions: no token stands for its own patch any more
    shuffled = torch.cat([z0[:, :1], z0[:, 1:].roll(1, dims=1)], 1)
    assert abs(own_patch_similarity(shuffled, z0)) < 0.2
    # the class token is ignored
    other_cls = z0.clone()
    other_cls[:, 0] = 100.0
    assert own_patch_similarity(other_cls, z0) == pytest.approx(own_patch_similarity(z0, z0))
    with pytest.raises(ValueError, match="of one shape"):
        own_patch_similarity(z0, z0[:, :5])


# ---------------------------------------------------------------- patch explorer
def test_explorer_rows_match_the_models_attention_maps():
    torch.manual_seed(0)
    model = VisionTransformer(TINY_16PX)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    attention = model.attention_maps(x)[:, 1]  # (L, H, T, T): the second image
    rows = explorer_rows(attention, 4)
    assert len(rows) == 2 * 2 * 17
    for row in rows:
        a = attention[row["layer"] - 1, row["head"] - 1, row["query"], 1:]  # (16,) patches
        expected = 16 * a / a.sum()  # x uniform, by hand
        assert row["weights"] == pytest.approx(expected.tolist(), abs=0.006)  # 2 decimals
    cls_row = next(r for r in rows if (r["layer"], r["head"], r["query"]) == (2, 1, 0))
    cls_map = times_uniform(cls_attention_maps(attention))[1, 0].flatten()
    assert cls_row["weights"] == pytest.approx(cls_map.tolist(), abs=0.006)
    with pytest.raises(ValueError, match="with N = 3\\*\\*2"):
        explorer_rows(attention, 3)
