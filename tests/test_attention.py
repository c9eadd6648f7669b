"""Chapter 1: attention against PyTorch's references, properties, and bad input."""

import math

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from torch import nn

from annotated.attention import (
    AdditiveAttention,
    MultiHeadAttention,
    causal_mask,
    copy_from_torch_mha,
    cosine_attention,
    masked_softmax,
    padding_mask,
    scaled_dot_product_attention,
)

TOL = 1e-5
small = settings(max_examples=25, deadline=None)


def qkv(B=2, h=3, T=5, S=7, d=8, dv=None, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, h, T, d, generator=g, dtype=dtype),
            torch.randn(B, h, S, d, generator=g, dtype=dtype),
            torch.randn(B, h, S, dv or d, generator=g, dtype=dtype))


def random_lengths(B, S, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, S + 1, (B,), generator=g)


# --- agreement with independent references -------------------------------------------

@small
@given(B=st.integers(1, 3), T=st.integers(1, 9), S=st.integers(1, 9), d=st.integers(1, 16),
       seed=st.integers(0, 10_000), masked=st.booleans())
def test_sdpa_matches_torch(B, T, S, d, seed, masked):
    Q, K, V = qkv(B, 2, T, S, d, seed=seed)
    mask = padding_mask(random_lengths(B, S, seed), max_len=S)[:, None, None, :] if masked else None
    ours, weights = scaled_dot_product_attention(Q, K, V, mask)
    ref = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
    assert torch.allclose(ours, ref, atol=TOL)
    assert weights.shape == (B, 2, T, S)


def test_sdpa_matches_torch_causal():
    Q, K, V = qkv(T=6, S=6)
    ours, _ = scaled_dot_product_attention(Q, K, V, causal_mask(6))
    ref = F.scaled_dot_product_attention(Q, K, V, is_causal=True)
    assert torch.allclose(ours, ref, atol=TOL)


@pytest.mark.parametrize("masked", [False, True])
def test_mha_matches_torch_multihead(masked):
    torch.manual_seed(1)
    d_model, heads = 32, 4
    ref = nn.MultiheadAttention(d_model, heads, batch_first=True).eval()
    ours = copy_from_torch_mha(MultiHeadAttention(d_model, heads), ref).eval()
    q, kv = torch.randn(3, 4, d_model), torch.randn(3, 6, d_model)
    valid = padding_mask(torch.tensor([6, 2, 5]), max_len=6)
    ref_out, ref_w = ref(q, kv, kv, key_padding_mask=~valid if masked else None)
    out = ours(q, kv, kv, mask=valid[:, None, None, :] if masked else None)
    assert (out - ref_out).abs().max() <= TOL
    assert (ours.attn.mean(1) - ref_w).abs().max() <= TOL


def test_mha_three_dim_mask_equals_four_dim():
    torch.manual_seed(2)
    mha = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 5, 16)
    m3 = causal_mask(5).expand(2, 5, 5)
    assert torch.equal(mha(x, x, x, m3), mha(x, x, x, m3[:, None]))


def test_copy_from_torch_refuses_mismatch():
    with pytest.raises(ValueError, match="embed_dim=32"):
        copy_from_torch_mha(MultiHeadAttention(16, 2), nn.MultiheadAttention(32, 2, batch_first=True))


# --- properties -------------------------------------------------------------------------

@small
@given(B=st.integers(1, 3), T=st.integers(1, 6), S=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_rows_sum_to_one_and_masked_keys_get_zero(B, T, S, seed):
    Q, K, V = qkv(B, 2, T, S, 4, seed=seed)
    mask = padding_mask(random_lengths(B, S, seed), max_len=S)[:, None, None, :]
    _, w = scaled_dot_product_attention(Q, K, V, mask)
    assert torch.allclose(w.sum(-1), torch.ones(B, 2, T), atol=1e-6)
    assert torch.all(w.masked_select(~mask.expand_as(w)) == 0)


@small
@given(seed=st.integers(0, 10_000))
def test_masked_values_do_not_change_output(seed):
    Q, K, V = qkv(S=7, seed=seed)
    mask = padding_mask(torch.tensor([4, 7]), max_len=7)[:, None, None, :]
    out1, _ = scaled_dot_product_attention(Q, K, V, mask)
    K2, V2 = K.clone(), V.clone()
    K2[0, :, 4:] = 1e3 * torch.randn_like(K2[0, :, 4:])
    V2[0, :, 4:] = 1e3 * torch.randn_like(V2[0, :, 4:])
    out2, _ = scaled_dot_product_attention(Q, K2, V2, mask)
    assert torch.allclose(out1, out2, atol=1e-6)


def test_fully_masked_rows_give_zeros_not_nan_and_finite_grads():
    Q, K, V = qkv()
    for t in (Q, K, V):
        t.requires_grad_(True)
    mask = torch.zeros(2, 1, 5, 7, dtype=torch.bool)
    mask[0, :, :2, :3] = True  # batch 0: two queries see 3 keys; everything else sees nothing
    out, w = scaled_dot_product_attention(Q, K, V, mask)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert torch.all(out[1] == 0) and torch.all(w[1] == 0) and torch.all(out[0, :, 2:] == 0)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (Q, K, V))


def test_masked_softmax_fully_masked_row():
    w = masked_softmax(torch.randn(3, 4), torch.zeros(3, 4, dtype=torch.bool))
    assert torch.equal(w, torch.zeros(3, 4))


@small
@given(T=st.integers(2, 7), seed=st.integers(0, 10_000))
def test_self_attention_is_permutation_equivariant(T, seed):
    torch.manual_seed(seed)
    mha = MultiHeadAttention(12, 3).eval()
    x = torch.randn(2, T, 12)
    perm = torch.randperm(T)
    y = mha(x, x, x)
    y_perm = mha(x[:, perm], x[:, perm], x[:, perm])
    assert torch.allclose(y[:, perm], y_perm, atol=1e-5)


def test_causal_mask_blocks_the_future():
    torch.manual_seed(3)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(1, 6, 16)
    y1 = mha(x, x, x, causal_mask(6))
    x2 = x.clone()
    x2[:, 4:] = torch.randn(1, 2, 16)  # change the future of position 3
    y2 = mha(x2, x2, x2, causal_mask(6))
    assert torch.allclose(y1[:, :4], y2[:, :4], atol=1e-6)
    assert not torch.allclose(y1[:, 4:], y2[:, 4:])


def test_scaling_keeps_unit_variance():
    torch.manual_seed(0)
    d = 512
    q, k = torch.randn(4000, d), torch.randn(4000, d)
    raw = (q * k).sum(-1)
    assert abs(raw.var().item() / d - 1) < 0.1  # Var(q·k) = d_k
    assert abs((raw / math.sqrt(d)).var().item() - 1) < 0.1


# --- gradients (float64 gradcheck) ------------------------------------------------------

def test_gradcheck_sdpa_with_mask():
    Q, K, V = (t.requires_grad_(True) for t in qkv(1, 2, 3, 4, 3, dtype=torch.float64))
    mask = padding_mask(torch.tensor([3]), max_len=4)[:, None, None, :]
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask)[0],
                                    (Q, K, V))


def test_gradcheck_mha_additive_cosine():
    torch.manual_seed(0)
    mha = MultiHeadAttention(6, 2).double()
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: mha(x, x, x, causal_mask(3)), (x,))
    add = AdditiveAttention(4, 5, 3).double()
    q = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    m = padding_mask(torch.tensor([6, 3]), max_len=6)
    assert torch.autograd.gradcheck(lambda q, k: add(q, k, m)[0], (q, keys))
    q5 = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k: cosine_attention(q, k, m)[0], (q5, keys))


# --- additive and cosine attention ------------------------------------------------------

def test_additive_attention_matches_formula_and_masks():
    torch.manual_seed(4)
    add = AdditiveAttention(3, 4, 5)
    q, keys = torch.randn(2, 3), torch.randn(2, 6, 4)
    m = padding_mask(torch.tensor([6, 2]), max_len=6)
    ctx, w = add(q, keys, m)
    e = torch.stack([torch.stack([add.v.weight[0] @ torch.tanh(add.W_q.weight @ q[b] + add.W_k(keys[b, j]))
                                  for j in range(6)]) for b in range(2)])
    ref_w = e.masked_fill(~m, -1e30).softmax(-1)
    assert torch.allclose(w, ref_w, atol=1e-6)
    assert torch.allclose(ctx, torch.einsum("bs,bsd->bd", ref_w, keys), atol=1e-6)
    assert torch.allclose(add(q, keys, m, projected_keys=add.project_keys(keys))[0], ctx)
    assert torch.all(w[1, 2:] == 0)


def test_cosine_attention_is_scale_invariant_and_matches_reference():
    torch.manual_seed(5)
    q, keys = torch.randn(3, 8), torch.randn(3, 5, 8)
    _, w = cosine_attention(q, keys)
    ref = F.cosine_similarity(q[:, None], keys, dim=-1).softmax(-1)
    assert torch.allclose(w, ref, atol=1e-6)
    assert torch.allclose(cosine_attention(7.0 * q, keys)[1], w, atol=1e-6)


# --- masks and bad input ----------------------------------------------------------------

def test_padding_mask_from_tokens_and_lengths_agree():
    tokens = torch.tensor([[5, 6, 7, 1], [5, 1, 1, 1]])
    assert torch.equal(padding_mask(tokens, pad_idx=1), padding_mask(torch.tensor([3, 1]), max_len=4))
    assert torch.equal(causal_mask(3).int(), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]))


def test_bad_inputs_raise_clear_errors():
    Q, K, V = qkv(d=8)
    with pytest.raises(ValueError, match=r"d_k=8.*d_k=4"):
        scaled_dot_product_attention(Q, K[..., :4], V)
    with pytest.raises(ValueError, match="same number of positions"):
        scaled_dot_product_attention(Q, K, V[:, :, :3])
    with pytest.raises(ValueError, match=r"mask of shape \(3, 7\) does not broadcast"):
        scaled_dot_product_attention(Q, K, V, torch.ones(3, 7, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(Q, K, V, torch.ones(7))
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=3"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"query must be \(batch, len, d_model=8\)"):
        MultiHeadAttention(8, 2)(torch.randn(2, 3, 6), torch.randn(2, 3, 8), torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="key and value must share"):
        MultiHeadAttention(8, 2)(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"mask must be a boolean \(B, S\)"):
        cosine_attention(torch.randn(2, 4), torch.randn(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="query dim 4 != key dim 5"):
        cosine_attention(torch.randn(2, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="AdditiveAttention: expected query"):
        AdditiveAttention(4, 4, 4)(torch.randn(3, 4), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="size must be >= 1"):
        causal_mask(0)
    with pytest.raises(ValueError, match="lengths must be"):
        padding_mask(torch.ones(2, 3))
