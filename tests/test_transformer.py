"""Tests for annotated.transformer (chapter 5): layers, equivalence with torch.nn, decoding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from annotated.transformer import (
    Encoder,
    EncoderLayer,
    copy_encoder_layer_from_torch,
)


def _keep_mask(B: int, S: int, lengths: list[int]) -> torch.Tensor:
    keep = torch.zeros(B, S, dtype=torch.bool)
    for i, n in enumerate(lengths):
        keep[i, :n] = True
    return keep


# ---------------------------------------------------------------- encoder layer
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_torch(norm_first, activation):
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(24, 3, 40, dropout=0.0, batch_first=True,
                                        norm_first=norm_first, activation=activation).eval()
    ours = EncoderLayer(24, 3, 40, dropout=0.0, norm_first=norm_first, activation=activation).eval()
    copy_encoder_layer_from_torch(ours, theirs)
    x = torch.randn(3, 6, 24)
    keep = _keep_mask(3, 6, [6, 4, 1])
    out = ours(x, keep[:, None, None, :])
    ref = theirs(x, src_key_padding_mask=~keep)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert ours.self_attn.attn.shape == (3, 3, 6, 6)
    # masked keys get zero weight
    assert ours.self_attn.attn[2, :, :, 1:].abs().max() == 0


def test_encoder_layer_padding_invariance():
    torch.manual_seed(1)
    layer = EncoderLayer(16, 4, 32, dropout=0.0).eval()
    x = torch.randn(2, 5, 16)
    keep = _keep_mask(2, 5, [5, 3])
    y = x.clone()
    y[1, 3:] = torch.randn(2, 16) * 10  # change only padded positions
    out_x = layer(x, keep[:, None, None, :])
    out_y = layer(y, keep[:, None, None, :])
    torch.testing.assert_close(out_x[1, :3], out_y[1, :3], atol=1e-6, rtol=0)
    torch.testing.assert_close(out_x[0], out_y[0])


def test_encoder_stack_shapes_and_final_norm():
    torch.manual_seed(2)
    enc = Encoder(16, 2, 32, n_layers=3, dropout=0.0, norm_first=True).eval()
    out = enc(torch.randn(4, 9, 16) * 5 + 3)
    assert out.shape == (4, 9, 16)
    assert len(enc.layers) == 3
    # the final LayerNorm (weight 1, bias 0 at init) gives zero mean, unit variance rows
    torch.testing.assert_close(out.mean(-1), torch.zeros(4, 9), atol=1e-5, rtol=0)


def test_encoder_layer_bad_activation():
    with pytest.raises(ValueError, match="activation must be one of.*'tanh'"):
        EncoderLayer(16, 4, 32, activation="tanh")


def test_copy_encoder_layer_refuses_mismatch():
    theirs = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    with pytest.raises(ValueError, match="norm_first differs"):
        copy_encoder_layer_from_torch(EncoderLayer(16, 4, 32, norm_first=True), theirs)
    with pytest.raises(ValueError, match="d_model=24.*d_model=16"):
        copy_encoder_layer_from_torch(EncoderLayer(24, 4, 32), theirs)
    with pytest.raises(ValueError, match="heads=2.*heads=4"):
        copy_encoder_layer_from_torch(EncoderLayer(16, 2, 32), theirs)
    with pytest.raises(ValueError, match=r"shape \(48, 16\).*\(32, 16\)"):
        copy_encoder_layer_from_torch(EncoderLayer(16, 4, 48), theirs)
