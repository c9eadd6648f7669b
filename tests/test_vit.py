"""Tests for annotated.vit: data loader (both formats), patches, the ViT, training, metrics."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from annotated.plumbing import CheckpointError, ChecksumError, DataUnavailableError, sha256_file
from annotated.training import items_per_second
from annotated.vit import (
    CIFAR10_CLASSES,
    ClassifierRecipe,
    PatchEmbedding,
    ResNetConfig,
    SmallResNet,
    VisionTransformer,
    ViTConfig,
    average_ranks,
    classification_metrics,
    load_cifar10,
    normalize,
    one_vs_rest_auc,
    patchify,
    predict,
    random_crop_flip,
    stratified_subset,
    train_classifier,
    warmup_cosine,
    weight_decay_groups,
)


# ---------------------------------------------------------------- fixtures in the real formats
def _flat_images(n: int, seed: int = 0) -> torch.Tensor:
    """Images of one flat colour each: JPEG keeps flat colours almost exactly."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.randint(0, 256, (n, 3, 1, 1), generator=g, dtype=torch.uint8)
    return colours.expand(n, 3, 32, 32).contiguous()


def make_zip(path: Path, split: str, per_class: int = 2, classes=CIFAR10_CLASSES) -> torch.Tensor:
    """A class-folder JPEG zip like the offline CIFAR-10 ones; returns the images written."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import encode_jpeg
    images = _flat_images(per_class * len(classes))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for k, img in enumerate(images):
            name = classes[k // per_class]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                data = encode_jpeg(img, quality=95).numpy().tobytes()
            z.writestr(f"{split}/{name}/{k % per_class:04d}.jpg", data)
    return images


def make_batches(root: Path, per_batch: int = 4) -> dict:
    """The official python-pickle format: cifar-10-batches-py/data_batch_1..5, test_batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        rng = np.random.default_rng(k)
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        written[name] = (data, labels)
    return written


def test_zip_loader_reads_images_and_labels(tmp_path):
    images = make_zip(tmp_path / "test.zip", "test")
    x, y = load_cifar10("test", root=tmp_path, zip_sha256=sha256_file(tmp_path / "test.zip"))
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8
    assert y.tolist() == [k // 2 for k in range(20)]  # sorted class folders = label index
    assert (x.int() - images.int()).abs().max() <= 3  # JPEG of flat colours: near exact
    # second call comes from the cache keyed by the digest and gives the same tensors
    x2, y2 = load_cifar10("test", root=tmp_path, zip_sha256=sha256_file(tmp_path / "test.zip"))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert list((tmp_path / ".decoded").glob("test-*.pt"))


def test_zip_loader_refuses_corrupt_and_incomplete_zips(tmp_path):
    make_zip(tmp_path / "train.zip", "train")
    with pytest.raises(ChecksumError, match="corrupt or incomplete: SHA-256"):
        load_cifar10("train", root=tmp_path, zip_sha256="0" * 64)
    # the shipped digests protect the default zips too
    with pytest.raises(ChecksumError, match="expected 958be545"):
        load_cifar10("train", root=tmp_path)
    broken = tmp_path / "b"
    broken.mkdir()
    (broken / "test.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ChecksumError, match="not a readable zip"):
        load_cifar10("test", root=broken, zip_sha256=sha256_file(broken / "test.zip"))
    partial = tmp_path / "p"
    partial.mkdir()
    make_zip(partial / "test.zip", "test", classes=CIFAR10_CLASSES[:9])
    with pytest.raises(ValueError, match="10 CIFAR-10 classes; found 18 images"):
        load_cifar10("test", root=partial, zip_sha256=sha256_file(partial / "test.zip"))


def test_pickle_batches_loader(tmp_path):
    written = make_batches(tmp_path)
    x, y = load_cifar10("train", root=tmp_path)
    assert x.shape == (20, 3, 32, 32) and y.shape == (20,)
    data, labels = written["data_batch_2"]
    assert torch.equal(x[4:8], torch.from_numpy(data).reshape(4, 3, 32, 32))
    assert y[4:8].tolist() == labels
    xt, yt = load_cifar10("test", root=tmp_path)
    assert torch.equal(xt[0, 0, 0, :3], torch.from_numpy(written["test_batch"][0][0, :3]))
    assert yt.tolist() == written["test_batch"][1]


def test_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_cifar10("valid", root=tmp_path)
    with pytest.raises(DataUnavailableError, match="put train.zip/test.zip"):
        load_cifar10("train", root=tmp_path)
    make_batches(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataUnavailableError, match="data_batch_3"):
        load_cifar10("train", root=tmp_path)


# ---------------------------------------------------------------- subsets and augmentation
def test_stratified_subset_is_balanced_and_checked():
    labels = torch.arange(10).repeat_interleave(30)
    idx = stratified_subset(labels, 50, seed=1)
    assert len(idx) == 50 and len(set(idx.tolist())) == 50
    assert torch.bincount(labels[idx]).tolist() == [5] * 10
    assert torch.equal(idx, stratified_subset(labels, 50, seed=1))
    with pytest.raises(ValueError, match="positive multiple of 10.*n=0"):
        stratified_subset(labels, 0)
    with pytest.raises(ValueError, match="n=15"):
        stratified_subset(labels, 15)
    with pytest.raises(ValueError, match="has 30 examples, 40 were asked for"):
        stratified_subset(labels, 400)


def test_crop_flip_is_a_window_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(x, pad=0, flip=False, generator=g), x)
    out = random_crop_flip(x, pad=2, flip=True, generator=g)
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    for b in range(6):
        windows = [padded[b, :, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(out[b].float(), w) for w in windows)


def test_normalize_uses_channel_statistics():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    expected = (1 - torch.tensor([0.4914, 0.4822, 0.4465])) / torch.tensor([0.2470, 0.2435, 0.2616])
    assert torch.allclose(normalize(x)[0, :, 0, 0], expected)


# ---------------------------------------------------------------- patches and the model
@settings(max_examples=15, deadline=None)
@given(p=st.sampled_from([1, 2, 4, 8]), c=st.integers(1, 4), d=st.integers(1, 12))
def test_patch_embedding_conv_equals_unfold_linear(p, c, d):
    torch.manual_seed(p * 100 + c * 10 + d)
    embed = PatchEmbedding(16, p, c, d)
    x = torch.randn(2, c, 16, 16)
    E = embed.proj.weight.flatten(1)  # (d, c p p)
    assert torch.allclose(embed(x), patchify(x, p) @ E.T + embed.proj.bias, atol=1e-5)


def test_patchify_matches_reshape_reference():
    x = torch.randn(2, 3, 8, 12)
    P = 4
    ref = x.reshape(2, 3, 2, P, 3, P).permute(0, 2, 4, 1, 3, 5).reshape(2, 6, 3 * P * P)
    assert torch.equal(patchify(x, P), ref)


def tiny_vit(**kw):
    cfg = dict(image_size=16, patch_size=4, in_channels=3, num_classes=5, d_model=24, depth=2,
               n_heads=3, d_ff=48, dropout=0.0)
    cfg.update(kw)
    return VisionTransformer(ViTConfig(**cfg))


def test_images_of_the_wrong_kind_are_refused_not_silently_misread():
    torch.manual_seed(0)
    vit, cnn = tiny_vit(), SmallResNet(ResNetConfig(widths=(4, 8, 8)))
    raw = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    labels = torch.tensor([0, 1])
    for model in (vit, cnn):
        with pytest.raises(TypeError, match=r"takes normalize\(\)d float images, got torch.uint8"):
            model(raw)
        with pytest.raises(ValueError, match=r"look like raw pixel values \(largest \|value\| 2"):
            model(raw.float())  # the API page's old mistake: unnormalised floats
        with pytest.raises(ValueError, match=r"scaled to \[0, 1\] \(as torchvision's ToTensor"):
            model(raw.float() / 255)
        with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
            model.hidden_states(torch.rand(2, 3, 16, 16))
        assert model(normalize(raw)).shape == (2, 5 if model is vit else 10)
        # one value below 0 is enough to pass, or one above 1 (a few bright CIFAR-10
        # images have no pixel darker than the mean), and so is the mean image (all 0)
        bright = normalize(raw).clamp(0, 1)
        bright[0, 0, 0, 0] = -0.01
        assert model(bright).shape == (2, 5 if model is vit else 10)
        assert model(normalize(raw).clamp(0, 1.5)).shape == (2, 5 if model is vit else 10)
        assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 5 if model is vit else 10)
    with pytest.raises(ValueError, match="raw pixel values"):
        vit.attention_maps(raw.float())
    with pytest.raises(TypeError, match="predict takes uint8 images"):
        predict(vit, normalize(raw))  # would be normalised twice
    with pytest.raises(TypeError, match="training takes uint8 images"):
        train_classifier(vit, normalize(raw), labels, ClassifierRecipe(epochs=1, batch_size=2))


def test_mean_pooling_reads_the_average_of_the_patch_tokens_only():
    torch.manual_seed(0)
    vit = tiny_vit(pool="mean").eval()
    x = torch.randn(3, 3, 16, 16)
    last = vit.hidden_states(x)[-1]  # (B, 1 + N, d)
    assert torch.allclose(vit(x), vit.head(vit.norm(last[:, 1:].mean(1))), atol=1e-6)
    assert not torch.allclose(vit(x), vit.head(vit.norm(last[:, 0])), atol=1e-3)
    with pytest.raises(ValueError, match="pool must be 'cls' or 'mean', got 'max'"):
        ViTConfig(pool="max")


def test_weight_decay_groups_follow_timm_and_adamw_decays_only_the_first_group():
    torch.manual_seed(0)
    vit = tiny_vit()
    groups = weight_decay_groups(vit, 0.1)
    names = {id(p): n for n, p in vit.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    exempt = {names[id(p)] for p in groups[1]["params"]}
    assert decayed.isdisjoint(exempt) and decayed | exempt == set(names.values())
    assert {"cls_token", "pos_embed", "norm.weight", "norm.bias", "head.bias"} <= exempt
    assert "head.weight" in decayed and "patch_embed.proj.weight" in decayed
    assert all(vit.get_parameter(n).ndim >= 2 for n in decayed)
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    everything = weight_decay_groups(vit, 0.1, decay_all=True)
    assert len(everything[0]["params"]) == len(names) and not everything[1]["params"]
    # behaviour, not bookkeeping: with zero gradients one AdamW step shrinks exactly
    # the decayed parameters, by the factor 1 - lr * weight_decay
    before = {n: p.detach().clone() for n, p in vit.named_parameters()}
    opt = torch.optim.AdamW(groups, lr=0.5)
    for p in vit.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in vit.named_parameters():
        factor = 1 - 0.5 * 0.1 if n in decayed else 1.0
        assert torch.allclose(p.detach(), before[n] * factor, atol=1e-7), n


def test_vit_shapes_and_attention_rows():
    torch.manual_seed(0)
    vit = tiny_vit()
    x = torch.randn(4, 3, 16, 16)
    assert vit(x).shape == (4, 5)
    att = vit.attention_maps(x)
    assert att.shape == (2, 4, 3, 17, 17)  # (layers, batch, heads, 1 + 16 patches, ...)
    assert torch.allclose(att.sum(-1), torch.ones(2, 4, 3, 17), atol=1e-5)
    states = vit.hidden_states(x)
    assert len(states) == 3 and all(s.shape == (4, 17, 24) for s in states)
    assert vit.training  # attention_maps restores the mode


def test_vit_uses_positions():
    """Without position embeddings the class token's output is permutation invariant; with them not."""
    torch.manual_seed(0)
    vit = tiny_vit().eval()
    x = torch.randn(1, 3, 16, 16)
    swapped = x.clone()
    swapped[..., :4, :4], swapped[..., 4:8, :4] = x[..., 4:8, :4], x[..., :4, :4]  # swap two patches
    with torch.no_grad():
        vit.pos_embed.normal_()
        assert not torch.allclose(vit(x), vit(swapped), atol=1e-4)
        vit.pos_embed.zero_()
        assert torch.allclose(vit(x), vit(swapped), atol=1e-5)


@pytest.mark.parametrize("shape, match", [((2, 3, 15, 16), "15x16 image cannot be cut into 4x4"),
                                          ((2, 1, 16, 16), "expected 3 input channels, got 1"),
                                          ((2, 3, 8, 8), "expected 16x16 images"),
                                          ((3, 16, 16), "must be \\(batch, channels, height, width\\)")])
def test_vit_bad_images(shape, match):
    with pytest.raises(ValueError, match=match):
        tiny_vit()(torch.zeros(shape))


def test_patch_embedding_refuses_indivisible_image_size():
    with pytest.raises(ValueError, match="image_size 30 is not divisible by patch_size 4"):
        PatchEmbedding(30, 4, 3, 8)


def test_cnn_shapes_and_channel_check():
    cnn = SmallResNet(ResNetConfig(widths=(4, 8, 16)))
    x = torch.randn(2, 3, 32, 32)
    assert cnn(x).shape == (2, 10)
    shapes = [tuple(h.shape[1:]) for h in cnn.hidden_states(x)]
    assert shapes == [(4, 32, 32), (4, 32, 32), (8, 16, 16), (16, 8, 8)]
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        cnn(torch.zeros(2, 1, 32, 32))


# ---------------------------------------------------------------- training
def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0, abs=1e-12)


def test_tiny_vit_overfits_tiny_batch():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8)
    labels = torch.arange(20) % 5
    vit = tiny_vit()
    cfg = ClassifierRecipe(epochs=60, batch_size=20, lr=3e-3, weight_decay=0.0, warmup_frac=0.1,
                           label_smoothing=0.0, crop_pad=0, flip=False, seed=0)
    history = train_classifier(vit, images, labels, cfg, device=torch.device("cpu"))
    assert len(history["step_loss"]) == 60 and items_per_second(history) > 0
    assert history["step_loss"][0] > 1.4  # about ln 5 at the start
    assert history["step_loss"][-1] < 0.1
    assert (predict(vit, images).argmax(1) == labels).all()


def test_train_rejects_empty_or_mismatched_data():
    with pytest.raises(ValueError, match="0 images, 0 labels"):
        train_classifier(tiny_vit(), torch.zeros(0, 3, 16, 16, dtype=torch.uint8),
                         torch.zeros(0, dtype=torch.long), ClassifierRecipe())
    with pytest.raises(ValueError, match="4 images, 3 labels"):
        train_classifier(tiny_vit(), torch.zeros(4, 3, 16, 16, dtype=torch.uint8),
                         torch.zeros(3, dtype=torch.long), ClassifierRecipe())


def test_train_classifier_loads_a_finished_run_and_refuses_other_settings(tmp_path):
    """(Was train_or_load, which retrained silently: the one policy refuses, naming the field.)"""
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    labels = torch.arange(10) % 5
    cfg = ClassifierRecipe(epochs=2, batch_size=5)
    path, model_cfg = tmp_path / "t.smoke.pt", {"model": {"d_model": 24}}
    torch.manual_seed(0)
    a = tiny_vit()
    first = train_classifier(a, images, labels, cfg, checkpoint=path, settings=model_cfg)
    assert first["loaded_from"] is None and path.exists()
    b = tiny_vit()
    second = train_classifier(b, images, labels, cfg, checkpoint=path, settings=model_cfg)
    assert second["loaded_from"] and items_per_second(second) == items_per_second(first)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    other = ClassifierRecipe(epochs=1, batch_size=5)
    with pytest.raises(CheckpointError, match=r"recipe.epochs: saved 2, wanted 1"):
        train_classifier(tiny_vit(), images, labels, other, checkpoint=path, settings=model_cfg)


def _resumable_vit_run(path, stop_after=None, verbose=False):
    """Three epochs of a tiny ViT with dropout and augmentation, from scratch in a 'new process'."""
    torch.manual_seed(0)
    pixels = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (30, 3, 16, 16), dtype=torch.uint8, generator=pixels)
    labels = torch.arange(30) % 5
    cfg = ClassifierRecipe(epochs=3, batch_size=10, lr=3e-3, crop_pad=2, flip=True, seed=4)
    vit = tiny_vit(dropout=0.2)
    history = train_classifier(vit, images, labels, cfg, checkpoint=path, verbose=verbose,
                               settings={"model": {"dropout": 0.2}}, stop_after=stop_after)
    return vit, history


def test_interrupted_vit_training_resumes_to_the_same_weights(tmp_path, capsys):
    one_go, full = _resumable_vit_run(tmp_path / "one_go.pt")
    _, first = _resumable_vit_run(tmp_path / "r.pt", stop_after=1)
    assert not first["finished"] and len(first["step_loss"]) == 3  # one epoch of 3 steps
    resumed, second = _resumable_vit_run(tmp_path / "r.pt", verbose=True)
    assert "resuming r.pt after epoch 1" in capsys.readouterr().out
    assert second["finished"] and second["step_loss"] == full["step_loss"]
    assert all(torch.equal(p, q) for p, q in zip(one_go.state_dict().values(), resumed.state_dict().values()))
    again, third = _resumable_vit_run(tmp_path / "r.pt")  # finished: loaded, not trained
    assert third["loaded_from"] and all(torch.equal(p, q) for p, q in
                                        zip(one_go.state_dict().values(), again.state_dict().values()))


def test_train_classifier_refuses_bad_stop_after():
    images, labels = torch.zeros(30, 3, 16, 16, dtype=torch.uint8), torch.arange(30) % 5
    cfg = ClassifierRecipe(epochs=3, batch_size=10, lr=3e-3, crop_pad=2, flip=True, seed=4)
    with pytest.raises(ValueError, match=r"stop_after must be a positive whole number or None, got 0"):
        train_classifier(tiny_vit(), images, labels, cfg, stop_after=0)


def test_a_corrupt_vit_checkpoint_is_refused_by_name(tmp_path):
    """(Was: replaced with a reason. The one policy refuses it; nothing is overwritten.)"""
    (tmp_path / "r.smoke.pt").write_bytes(b"cut off mid-write")
    with pytest.raises(CheckpointError, match=r"r.smoke.pt is not a readable checkpoint"):
        _resumable_vit_run(tmp_path / "r.smoke.pt")
    assert (tmp_path / "r.smoke.pt").read_bytes() == b"cut off mid-write"


# ---------------------------------------------------------------- metrics
def brute_force_auc(scores, positive):
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    return wins.mean().item()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_auc_matches_pairwise_definition(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (30,), generator=g)
    probs = (torch.randint(0, 5, (30, 3), generator=g).double() + 1).softmax(1)  # many ties
    aucs = one_vs_rest_auc(probs, labels)
    for c in range(3):
        positive = labels == c
        if 0 < positive.sum() < 30:
            assert aucs[c].item() == pytest.approx(brute_force_auc(probs[:, c], positive), abs=1e-9)


def test_average_ranks_with_ties():
    assert average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_classification_metrics_by_hand():
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    labels = torch.tensor([0, 1, 1, 2])
    m = classification_metrics(probs, labels)
    assert m["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["per_class_accuracy"] == pytest.approx([1.0, 0.5, 1.0])
    assert m["macro_precision"] == pytest.approx((0.5 + 1 + 1) / 3)
    f1 = [2 * 0.5 / 1.5, 2 * 0.5 / 1.5, 1.0]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["top5"] == 1.0
    perfect = classification_metrics(torch.eye(3), torch.arange(3))
    assert perfect["accuracy"] == perfect["macro_f1"] == perfect["macro_auc"] == 1.0
    with pytest.raises(ValueError, match=r"got \(4, 3\) and \(3,\)"):
        classification_metrics(probs, labels[:3])


def test_normalize_takes_uint8_pixels_only_so_nothing_is_normalised_twice():
    raw = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    once = normalize(raw)
    for twice in (once, raw.float() / 255, raw.float()):
        with pytest.raises(TypeError, match=r"normalize takes uint8 pixels \(0..255\), got torch.float32"):
            normalize(twice)
    with pytest.raises(ValueError, match=r"normalize takes images \(B, 3, H, W\), got shape \(2, 8, 8, 3\)"):
        normalize(raw.permute(0, 2, 3, 1))  # channels last
    with pytest.raises(ValueError, match="got shape"):
        predict(tiny_vit(), raw.permute(0, 2, 3, 1))  # predict normalises: the same message


def test_training_labels_are_checked_against_the_model():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    recipe = ClassifierRecipe(epochs=1, batch_size=2)
    with pytest.raises(TypeError, match=r"labels must be int64 class ids \(N,\), got torch.float32"):
        train_classifier(tiny_vit(), images, torch.zeros(4), recipe)
    with pytest.raises(ValueError, match=r"labels run from 0 to 7, but the model has 5 classes \(0 .. 4\)"):
        train_classifier(tiny_vit(), images, torch.tensor([0, 1, 7, 2]), recipe)
    with pytest.raises(ValueError, match="labels run from -1"):
        train_classifier(tiny_vit(), images, torch.tensor([0, -1, 1, 2]), recipe)
