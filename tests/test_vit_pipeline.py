"""The ViT's GPU-ready pipeline: batched TrivialAugment against a plain per-image reference
(torchvision's own functional operations, image by image), and its use in training."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms.v2 import TrivialAugmentWide
from torchvision.transforms.v2 import functional as TF

import annotated.vit as vit
from annotated.vit import (
    TRIVIAL_OPS,
    ClassifierRecipe,
    VisionTransformer,
    ViTConfig,
    strong_augment,
    train_classifier,
    trivial_augment,
    trivial_draws,
    trivial_op,
    trivial_strengths,
)


def textured_images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    """uint8 images with smooth structure and noise (flat images would hide geometry)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    noise = torch.rand(n, 3, size, size, generator=g) * 0.3
    scale = torch.rand(n, 1, 1, 1, generator=g) * 0.7 + 0.3  # some images dark, some not
    return ((smooth * 0.7 + noise) * scale * 255).clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------- the plain reference
def reference_op(image: torch.Tensor, name: str, m: float) -> torch.Tensor:
    """One operation on ONE image, as torchvision's TrivialAugmentWide applies it."""
    if name == "identity":
        return image
    if name in ("shear_x", "shear_y"):
        angle = math.degrees(math.atan(m))
        shear = [angle, 0.0] if name == "shear_x" else [0.0, angle]
        return TF.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                         center=[0, 0])
    if name in ("translate_x", "translate_y"):
        shift = [int(m), 0] if name == "translate_x" else [0, int(m)]
        return TF.affine(image, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0])
    if name == "rotate":
        return TF.rotate(image, angle=m)
    if name == "brightness":
        return TF.adjust_brightness(image, 1.0 + m)
    if name == "color":
        return TF.adjust_saturation(image, 1.0 + m)
    if name == "contrast":
        return TF.adjust_contrast(image, 1.0 + m)
    if name == "sharpness":
        return TF.adjust_sharpness(image, 1.0 + m)
    if name == "posterize":
        return TF.posterize(image, int(m))
    if name == "solarize":
        return TF.solarize(image, 255.0 * m)
    if name == "autocontrast":
        return TF.autocontrast(image)
    if name == "equalize":
        return TF.equalize(image)
    raise ValueError(name)


def reference_trivial_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """TrivialAugment Wide image by image, a Python loop: the plain reference."""
    op, m = trivial_draws(len(images), generator)
    return torch.stack([reference_op(image, TRIVIAL_OPS[k], s)
                        for image, k, s in zip(images, op.tolist(), m.tolist())])


# ---------------------------------------------------------------- batched == reference
def test_strength_table_is_torchvisions():
    space = TrivialAugmentWide._AUGMENTATION_SPACE
    names = [n for n in space if n != "Invert"]
    ours = trivial_strengths()
    assert len(names) == len(TRIVIAL_OPS) == ours.shape[0]
    signed = {name for name, (_, s) in space.items() if s}
    for k, name in enumerate(names):
        table = space[name][0](31, 32, 32)
        expected = torch.zeros(31) if table is None else table.double()
        assert torch.equal(ours[k], expected.double()), name
        assert (TRIVIAL_OPS[k] in vit._SIGNED) == (name in signed), name


def test_batched_trivial_augment_equals_the_per_image_reference():
    images = textured_images(700, seed=1)
    batched = trivial_augment(images, torch.Generator().manual_seed(0))
    reference = reference_trivial_augment(images, torch.Generator().manual_seed(0))
    op, _ = trivial_draws(len(images), torch.Generator().manual_seed(0))
    assert torch.bincount(op, minlength=len(TRIVIAL_OPS)).min() >= 25  # every op, often
    assert torch.equal(batched, reference)
    changed = (batched != images).flatten(1).any(1)
    assert changed.float().mean() > 0.8  # the augmentation does something


@pytest.mark.parametrize("name", [n for n in TRIVIAL_OPS if n != "identity"])
def test_every_strength_of_every_operation_equals_the_reference(name):
    """Exhaustive over the table: 31 levels x both signs, 3 images each, in one batch."""
    k = TRIVIAL_OPS.index(name)
    strengths = trivial_strengths()[k]
    strengths = torch.cat([strengths, -strengths]) if name in vit._SIGNED else strengths
    images = textured_images(3, seed=k)
    x = images.repeat(len(strengths), 1, 1, 1)  # (levels * 3, C, H, W)
    m = strengths.repeat_interleave(3)
    batched = trivial_op(name, x, m)
    reference = torch.stack([reference_op(img, name, s) for img, s in zip(x, m.tolist())])
    assert batched.dtype == torch.uint8 and torch.equal(batched, reference)


def test_trivial_augment_runs_each_operation_once_per_batch(monkeypatch):
    """No Python loop over images or small groups: at most one call per operation."""
    calls = []
    original = vit.trivial_op
    monkeypatch.setattr(vit, "trivial_op", lambda name, x, m: calls.append(len(x)) or
                        original(name, x, m))
    out = trivial_augment(textured_images(512), torch.Generator().manual_seed(3))
    assert out.shape == (512, 3, 32, 32)
    assert len(calls) <= len(TRIVIAL_OPS) - 1 and sum(calls) > 400  # identity skipped


def test_trivial_augment_draws_from_its_generator_only():
    images = textured_images(64)
    torch.manual_seed(0)
    a = strong_augment(images, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(1)  # the global generator plays no part
    b = strong_augment(images, generator=torch.Generator().manual_seed(5))
    c = strong_augment(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_strong_augment_erases_squares_of_grey():
    images = torch.zeros(400, 3, 32, 32, dtype=torch.uint8)  # black stays black under most ops
    out = strong_augment(images, erase_p=1.0, generator=torch.Generator().manual_seed(0))
    grey = (out == 127).all(1)  # (B, H, W)
    sides = grey.sum((1, 2)).float().sqrt()
    assert grey.any((1, 2)).all()
    assert sides.min() >= 0.2 * 32 - 1 and sides.max() <= 0.5 * 32 + 1


# ---------------------------------------------------------------- training with it
def test_full_recipe_trains_and_resumes_with_trivial_augment(tmp_path):
    """The full recipe's augmentation in the training loop; resume per epoch is exact."""
    def run(path, stop_after=None):
        torch.manual_seed(0)
        model = VisionTransformer(ViTConfig(image_size=16, d_model=16, depth=1, n_heads=2,
                                            d_ff=32, num_classes=5))
        recipe = ClassifierRecipe(epochs=2, batch_size=8, strong_augment=True, seed=3)
        history = train_classifier(model, textured_images(24, size=16), torch.arange(24) % 5,
                                   recipe, checkpoint=path, stop_after=stop_after)
        return model, history

    one_go, full = run(tmp_path / "a.pt")
    run(tmp_path / "b.pt", stop_after=1)
    resumed, second = run(tmp_path / "b.pt")
    assert second["step_loss"] == full["step_loss"] and len(full["step_loss"]) == 6
    assert all(torch.equal(p, q) for p, q in zip(one_go.state_dict().values(),
                                                  resumed.state_dict().values()))


# ---------------------------------------------------------------- the device script
def _fixture_zips(folder, per_class=(6, 2)) -> dict:
    """train.zip and test.zip in the offline format (textured JPEGs); their digests."""
    import warnings
    import zipfile

    from annotated.plumbing import sha256_file
    from annotated.vit import CIFAR10_CLASSES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import encode_jpeg
    digests = {}
    for split, n in zip(("train", "test"), per_class):
        images = textured_images(n * 10, seed=len(split))
        path = folder / f"{split}.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
            for k, img in enumerate(images):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    data = encode_jpeg(img, quality=90).numpy().tobytes()
                z.writestr(f"{split}/{CIFAR10_CLASSES[k // n]}/{k % n:04d}.jpg", data)
        digests[split] = sha256_file(path)
    return digests


@pytest.fixture(scope="module")
def device_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tools" / "device_full_vit.py"
    spec = importlib.util.spec_from_file_location("device_full_vit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_rebuilds_the_loaders_images_and_refuses_a_bad_one(tmp_path, device_script):
    from annotated.plumbing import ChecksumError
    from annotated.vit import load_cifar10

    digests = _fixture_zips(tmp_path)
    pack = device_script.pack_cifar10(tmp_path, tmp_path / "p.pt", expected=digests)
    data = device_script.load_pack(pack)
    for split in ("train", "test"):
        images, labels = load_cifar10(split, tmp_path, zip_sha256=digests[split])
        assert torch.equal(data[split][0], images) and torch.equal(data[split][1], labels)
    wrong = {"train": "0" * 64, "test": digests["test"]}
    with pytest.raises(ChecksumError, match="train.zip has SHA-256"):
        device_script.pack_cifar10(tmp_path, tmp_path / "q.pt", expected=wrong)
    (tmp_path / "bad.pt").write_bytes(b"not a pack")
    with pytest.raises(ChecksumError, match="bad.pt is not a readable CIFAR-10 pack"):
        device_script.load_pack(tmp_path / "bad.pt")


def test_device_script_tiny_schedule_resumes_and_writes_results(tmp_path, monkeypatch,
                                                                device_script, capsys):
    """The same script as on the GPU, on CPU: cut after one epoch, resumed, scored."""
    import json

    digests = _fixture_zips(tmp_path)
    pack = device_script.pack_cifar10(tmp_path, tmp_path / "cifar10.pack.pt", expected=digests)
    monkeypatch.setenv("ANNOTATED_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("ANNOTATED_RESULTS", str(tmp_path / "results"))
    args = ["--schedule", "tiny", "--device", "cpu", "--pack", str(pack), "--cnn",
            "--out", str(tmp_path / "out")]
    assert device_script.main(args + ["--max-epochs", "1"]) == device_script.RESUMABLE
    assert "run the same command again to resume" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()  # nothing written before the end
    assert device_script.main(args) == 0
    out = capsys.readouterr().out
    assert "resuming vit_cifar10.tiny.pt after epoch 1" in out
    record = json.loads((tmp_path / "out" / "06_vit.smoke.json").read_text())
    assert record["settings"]["script"] == "tools/device_full_vit.py"
    metrics = record["metrics"]
    assert 0 <= metrics["vit"]["accuracy"] <= 1 and "cnn" in metrics
    assert metrics["vit_parameters"] > 0 and metrics["vit_train_seconds"] > 0
    assert record["settings"]["vit"]["d_model"] == 16  # the config, field by field


def test_device_script_refuses_cuda_without_a_gpu(device_script):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="--device cuda was asked for, but PyTorch sees no GPU"):
        device_script.main(["--device", "cuda", "--schedule", "tiny"])
