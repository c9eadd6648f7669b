# GENERATED FILE, DO NOT EDIT. It is exported from book/07_vit_inside.md
# by tools/export.py; change the chapter and run `make export` instead.
"""Inside the Vision Transformer (from book/07_vit_inside.md)."""


# %% book/07_vit_inside.md, code cell 3 (Inside the Vision Transformer)
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from annotated.vit import average_ranks, predict


# %% book/07_vit_inside.md, code cell 11 (Where does the class token look?)
def cls_attention_maps(attentions: torch.Tensor,
                       grid_size: int | None = None) -> torch.Tensor:
    """The class token's attention to the patches, as grids.

    Shapes: (..., 1+g*g, 1+g*g) -> (..., g, g).
    """
    if attentions.dim() < 2 or attentions.shape[-1] != attentions.shape[-2]:
        raise ValueError("attentions must end in (tokens, tokens), "
                         f"got shape {tuple(attentions.shape)}")
    n_patches = attentions.shape[-1] - 1
    g = grid_size if grid_size is not None else math.isqrt(n_patches)
    if g * g != n_patches:
        raise ValueError(f"{attentions.shape[-1]} tokens are not 1 class token + a "
                         f"square grid of patches (grid_size {grid_size})")
    return attentions[..., 0, 1:].reshape(*attentions.shape[:-2], g, g)


# %% book/07_vit_inside.md, code cell 13 (Where does the class token look?)
def times_uniform(maps: torch.Tensor) -> torch.Tensor:
    """Patch maps (..., g, g) in units of uniform attention: N a / sum(a), N = g*g.

    Uniform attention over the patches is 1 everywhere.
    """
    if maps.dim() < 2:
        raise ValueError(f"maps must end in a (g, g) grid, got {tuple(maps.shape)}")
    if (maps < 0).any():
        raise ValueError("attention maps cannot hold negative weights")
    total = maps.sum((-2, -1), keepdim=True)  # (..., 1, 1)
    if (total == 0).any():
        raise ValueError("a map with no weight on any patch has no 'x uniform'")
    return maps.shape[-2] * maps.shape[-1] * maps / total


# %% book/07_vit_inside.md, code cell 19 (Attention rollout)
def attention_rollout(attentions: torch.Tensor,
                      discard_ratio: float = 0.0) -> torch.Tensor:
    """Rollout of (L, B, heads, T, T) attention -> (B, T, T).

    The product over layers of (A_l + I) / 2, with A_l the head-mean attention.
    """
    if attentions.dim() != 5 or attentions.shape[-1] != attentions.shape[-2]:
        raise ValueError(f"attentions must be (layers, batch, heads, tokens, tokens), "
                         f"got shape {tuple(attentions.shape)}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    _, B, _, T, _ = attentions.shape
    eye = torch.eye(T, dtype=torch.float64, device=attentions.device)
    rollout = eye.expand(B, T, T)
    for A in attentions.double().mean(2):  # (B, T, T): heads averaged
        n_drop = int(discard_ratio * T)
        if n_drop:
            weakest = A.topk(n_drop, dim=-1, largest=False).indices
            A = A.scatter(-1, weakest, 0.0)
        A = (A + eye) / 2
        A = A / A.sum(-1, keepdim=True)  # rows are distributions again
        rollout = A @ rollout  # (B, T, T): the newest layer on the left
    return rollout.to(attentions.dtype)


# %% book/07_vit_inside.md, code cell 25 (A patch explorer)
def explorer_rows(attention: torch.Tensor, grid_size: int) -> list[dict]:
    """One image's attention (L, heads, 1+N, 1+N) as rows for the patch explorer.

    One row per layer, head and query (0: the class token), with the query's
    attention over the N patches in units of uniform attention.
    """
    if attention.dim() != 4 or attention.shape[-1] != grid_size ** 2 + 1:
        raise ValueError("attention must be (layers, heads, 1+N, 1+N) with N = "
                         f"{grid_size}**2, got {tuple(attention.shape)}")
    L, H, T, _ = attention.shape
    patches = attention[..., 1:].reshape(L, H, T, grid_size, grid_size)
    maps = times_uniform(patches).flatten(-2)  # (L, H, T, N)
    return [{"layer": layer + 1, "head": head + 1, "query": q,
             "weights": [round(float(w), 2) for w in maps[layer, head, q]]}
            for layer in range(L) for head in range(H) for q in range(T)]


# %% book/07_vit_inside.md, code cell 27 (Are the maps faithful?)
def random_ranking(n_images: int, n_patches: int, seed: int) -> torch.Tensor:
    """Random patch scores (n_images, n_patches): the chance baseline, at `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n_images, n_patches, generator=generator)


def delete_patches(images: torch.Tensor, scores: torch.Tensor, k: int,
                   patch_size: int, fill) -> torch.Tensor:
    """Replace each image's k highest-scoring patches by the colour `fill`.

    images (B, C, H, W); scores (B, N), one per patch in row-major order;
    fill: one value per channel, in the images' units.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    B, C, H, W = images.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError(f"{H}x{W} images do not split into {P}x{P} patches")
    g_h, g_w = H // P, W // P
    if scores.shape != (B, g_h * g_w):
        raise ValueError(f"scores must be (images, patches) = ({B}, {g_h * g_w}), "
                         f"got {tuple(scores.shape)}")
    if not 0 <= k <= g_h * g_w:
        raise ValueError(f"k must be between 0 and {g_h * g_w} patches, got {k}")
    top = scores.topk(k, dim=1).indices  # (B, k)
    gone = torch.zeros(B, g_h * g_w, dtype=torch.bool).scatter(1, top, True)
    # (B, 1, H, W): each patch's flag spread over its P x P pixels
    gone = gone.reshape(B, 1, g_h, g_w).repeat_interleave(P, 2).repeat_interleave(P, 3)
    fill = torch.as_tensor(fill, dtype=images.dtype).reshape(1, -1, 1, 1)
    return torch.where(gone.to(images.device), fill.to(images.device), images)


def deletion_curve(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   scores: torch.Tensor, ks: list[int], patch_size: int,
                   fill) -> torch.Tensor:
    """Accuracy on uint8 `images` with each one's top-k patches deleted, per k."""
    accuracy = []
    for k in ks:
        masked = delete_patches(images, scores, k, patch_size, fill)
        correct = predict(model, masked).argmax(1) == labels
        accuracy.append(correct.double().mean())
    return torch.stack(accuracy)  # (len(ks),)


# %% book/07_vit_inside.md, code cell 32 (Are the maps faithful?)
def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of each pair of maps: (B, ...), (B, ...) -> (B,)."""
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(f"need two batches of maps of one shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    ranks = [torch.stack([average_ranks(m) for m in t.flatten(1)]) for t in (a, b)]
    ra, rb = (r - r.mean(1, keepdim=True) for r in ranks)  # (B, n) centred ranks
    norms = ra.norm(dim=1) * rb.norm(dim=1)
    if (norms == 0).any():
        raise ValueError("rank correlation is undefined for a constant map")
    return (ra * rb).sum(1) / norms


def randomised_top_down(model: nn.Module,
                        control: nn.Module) -> list[tuple[str, nn.Module]]:
    """Copies of a ViT with its top parts replaced by `control`'s, one more each time.

    Starts with the model itself, then the head (with the final norm), the last
    block, ..., the first block, and finally everything (the control itself).
    """
    current = copy.deepcopy(model).eval()
    steps = [("trained", copy.deepcopy(current))]
    current.head.load_state_dict(control.head.state_dict())
    current.norm.load_state_dict(control.norm.state_dict())
    steps.append(("head", copy.deepcopy(current)))
    for i in reversed(range(len(current.layers))):
        current.layers[i].load_state_dict(control.layers[i].state_dict())
        steps.append((f"block {i + 1}", copy.deepcopy(current)))
    current.load_state_dict(control.state_dict())
    steps.append(("embedding", current))
    return steps


# %% book/07_vit_inside.md, code cell 36 (How far does each head look?)
def patch_distances(grid_size: int, patch_size: int) -> torch.Tensor:
    """Pixel distances between the centres of every pair of patches: (g*g, g*g)."""
    ys, xs = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size),
                            indexing="ij")
    # (N, 2): one row per patch
    centres = torch.stack([ys.flatten(), xs.flatten()], -1).double() * patch_size
    return torch.cdist(centres, centres)  # (N, N)


def _patch_attention(attention: torch.Tensor, grid_size: int) -> torch.Tensor:
    """(B, heads, T, T) -> (B, heads, N, N): patch-to-patch rows, renormalised."""
    if attention.dim() != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError("attention must be (batch, heads, tokens, tokens), "
                         f"got {tuple(attention.shape)}")
    T, N = attention.shape[-1], grid_size * grid_size
    if T not in (N, N + 1):
        raise ValueError(f"{T} tokens do not fit a {grid_size}x{grid_size} grid "
                         f"(expected {N} patches, or {N + 1} with a class token)")
    a = attention[..., T - N:, T - N:].double()  # drop the class token's row and column
    return a / a.sum(-1, keepdim=True).clamp(min=1e-12)  # (B, h, N, N)


def mean_attention_distance(attention: torch.Tensor, grid_size: int,
                            patch_size: int) -> torch.Tensor:
    """Mean attention distance in pixels of each head: (B, heads, T, T) -> (heads,)."""
    a = _patch_attention(attention, grid_size)  # (B, h, N, N)
    D = patch_distances(grid_size, patch_size).to(a.device)
    return (a * D).sum(-1).mean((0, 2))  # (heads,)


def attention_entropy(attention: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Mean entropy (nats) of each head's patch attention: (B, h, T, T) -> (h,)."""
    a = _patch_attention(attention, grid_size)  # (B, h, N, N)
    plogp = torch.where(a > 0, a * a.clamp(min=1e-300).log(), torch.zeros_like(a))
    return -plogp.sum(-1).mean((0, 2))  # (heads,)


def neighbourhood_attention(grid_size: int, radius: int = 1) -> torch.Tensor:
    """Even attention from each patch to those at most `radius` rows/columns away."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    ys, xs = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size),
                            indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()  # (N,) each
    near = ((ys[:, None] - ys[None]).abs() <= radius) & \
        ((xs[:, None] - xs[None]).abs() <= radius)  # (N, N)
    return near.double() / near.sum(-1, keepdim=True)


# %% book/07_vit_inside.md, code cell 44 (What the position embeddings learned)
def position_similarity(pos_embed: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Cosine similarity of each patch's position embedding with all others.

    Returns (g, g, g, g): entry [i, j] is the map of the patch in row i, column j.
    """
    pos = pos_embed.reshape(-1, pos_embed.shape[-1])
    if pos.shape[0] not in (grid_size ** 2, grid_size ** 2 + 1):
        raise ValueError(f"{pos.shape[0]} position embeddings do not fit a "
                         f"{grid_size}x{grid_size} grid")
    pos = F.normalize(pos[-grid_size ** 2:].double(), dim=-1)  # (N, d), no class token
    return (pos @ pos.T).reshape(grid_size, grid_size, grid_size, grid_size)


# %% book/07_vit_inside.md, code cell 49 (Does token $i$ still stand for patch $i$?)
def own_patch_similarity(state: torch.Tensor, inputs: torch.Tensor) -> float:
    """How much more each patch token resembles its own input token than others.

    state, inputs: (B, 1+N, d) tokens of a layer and of z_0 (class token first).
    Returns mean cosine similarity with its own input minus with the others.
    """
    if state.dim() != 3 or state.shape != inputs.shape:
        raise ValueError("need two (batch, 1+N, d) token tensors of one shape, got "
                         f"{tuple(state.shape)} and {tuple(inputs.shape)}")
    a, b = (t[:, 1:].double() for t in (state, inputs))  # (B, N, d): patches only
    a, b = (F.normalize(t - t.mean(1, keepdim=True), dim=-1) for t in (a, b))
    S = a @ b.transpose(1, 2)  # (B, N, N): token i of the layer vs input token j
    N = S.shape[-1]
    own = S.diagonal(dim1=1, dim2=2).mean()
    others = (S.sum((1, 2)) - S.diagonal(dim1=1, dim2=2).sum(-1)).mean() / (N * (N - 1))
    return float(own - others)


# %% book/07_vit_inside.md, code cell 52
# (Do the ViT and the CNN compute similar things? CKA)
def _features(X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten (n, ...) features to (n, p) float64.

    Checks that both describe the same n examples.
    """
    if X.dim() < 2 or Y.dim() < 2:
        raise ValueError("features must be (examples, ...), got shapes "
                         f"{tuple(X.shape)} and {tuple(Y.shape)}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"CKA compares the same examples: X has {X.shape[0]} rows, "
                         f"Y has {Y.shape[0]} (shapes {tuple(X.shape)} and "
                         f"{tuple(Y.shape)})")
    return X.reshape(X.shape[0], -1).double(), Y.reshape(Y.shape[0], -1).double()


def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear CKA between features X (n, p1) and Y (n, p2) of the same n examples."""
    X, Y = _features(X, Y)
    if X.shape[0] < 2:
        raise ValueError(f"CKA needs at least 2 examples, got {X.shape[0]}")
    X, Y = X - X.mean(0), Y - Y.mean(0)  # centre every feature
    K, L = X @ X.T, Y @ Y.T  # (n, n) Gram matrices: cheap when features are wide
    hsic_kl, hsic_kk, hsic_ll = (K * L).sum(), (K * K).sum(), (L * L).sum()
    if hsic_kk == 0 or hsic_ll == 0:
        raise ValueError("CKA is undefined for a constant representation "
                         "(zero variance)")
    return float(hsic_kl / torch.sqrt(hsic_kk * hsic_ll))


# %% book/07_vit_inside.md, code cell 53
# (Do the ViT and the CNN compute similar things? CKA)
def unbiased_hsic(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator of two (m, m) Gram matrices (m >= 4)."""
    m = K.shape[0]
    if m < 4:
        raise ValueError("the unbiased HSIC needs minibatches of at least 4 examples, "
                         f"got {m}")
    K, L = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
    trace_KL = (K * L).sum()  # tr(K L) for symmetric K, L, without the (m, m) product
    ones_KL_ones = K.sum(0) @ L.sum(1)  # 1ᵀ K L 1
    sums_KL = K.sum() * L.sum() / ((m - 1) * (m - 2))  # 1ᵀ K 1 · 1ᵀ L 1 / ((m-1)(m-2))
    return (trace_KL + sums_KL - 2 * ones_KL_ones / (m - 2)) / (m * (m - 3))


def _grams(features: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Linear Gram matrices (m, m) of consecutive minibatches of (n, p) features.

    The last n % m examples are dropped.
    """
    n = features.shape[0]
    if batch_size < 4 or n < batch_size:
        raise ValueError("minibatch CKA needs 4 <= batch_size <= n; "
                         f"got batch_size={batch_size}, n={n}")
    f = features[: n - n % batch_size].reshape(n // batch_size, batch_size, -1).double()
    return list(f @ f.transpose(1, 2))  # (batches) x (m, m)


# %% book/07_vit_inside.md, code cell 54
# (Do the ViT and the CNN compute similar things? CKA)
def minibatch_cka(X: torch.Tensor, Y: torch.Tensor, batch_size: int = 256) -> float:
    """Minibatch linear CKA with the unbiased HSIC between X (n, ...) and Y (n, ...)."""
    X, Y = _features(X, Y)
    return float(cka_matrix([X], [Y], batch_size)[0, 0])


def cka_matrix(layers_a: list[torch.Tensor], layers_b: list[torch.Tensor],
               batch_size: int = 256) -> torch.Tensor:
    """Minibatch CKA of each layer in `layers_a` against each in `layers_b`: (A, B)."""
    for a in layers_a:
        for b in layers_b:
            _features(a, b)  # same number of examples everywhere
    grams_a = [_grams(a.reshape(a.shape[0], -1), batch_size) for a in layers_a]
    grams_b = [_grams(b.reshape(b.shape[0], -1), batch_size) for b in layers_b]
    self_a = [sum(unbiased_hsic(K, K) for K in ks) for ks in grams_a]
    self_b = [sum(unbiased_hsic(L, L) for L in ls) for ls in grams_b]
    out = torch.zeros(len(layers_a), len(layers_b), dtype=torch.float64)
    for i, ks in enumerate(grams_a):
        for j, ls in enumerate(grams_b):
            cross = sum(unbiased_hsic(K, L) for K, L in zip(ks, ls))
            out[i, j] = cross / torch.sqrt(self_a[i] * self_b[j])
    return out
