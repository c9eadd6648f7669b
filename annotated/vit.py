# GENERATED FILE, DO NOT EDIT. It is exported from book/06_vit.md
# by tools/export.py; change the chapter and run `make export` instead.
"""The Vision Transformer on CIFAR-10 (from book/06_vit.md)."""


# %% book/06_vit.md, code cell 3 (The Vision Transformer on CIFAR-10)
import functools
import math
import pickle
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from annotated.plumbing import (ChecksumError, DataUnavailableError, by_profile,
                                checkpoint_dir, data_dir, fetch, seed_everything,
                                sha256_file)
from annotated.training import TrainConfig, autocast, fit, model_device
from annotated.transformer import EncoderLayer


# %% book/06_vit.md, code cell 5 (CIFAR-10, from either of its two homes)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
# The JPEG re-encoding used offline (see the data README): train.zip / test.zip.
CIFAR10_ZIP_SHA256 = {
    "train": "958be545a1d3cdee6fd2d9915748397896737284e59334a1496e9573f3293d8d",
    "test": "69b2b650779a7c094fa150f3cbd9341c2a4dc9459ea5f3588c34154c2463c81c",
}
_SPLITS = ("train", "test")


# %% book/06_vit.md, code cell 6 (CIFAR-10, from either of its two homes)
def _decode_zip(path: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode all `<split>/<class>/*.jpg` in a zip to (uint8 (N,3,H,W), int64 (N,))."""
    # torchvision >= 0.29 points to torchcodec; its decoder still works
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ChecksumError(f"{path} is not a readable zip file ({err})") from None
    with archive:
        names = sorted(n for n in archive.namelist()
                       if n.lower().endswith(".jpg") and n.startswith(f"{split}/"))
        found = sorted({n.split("/")[1] for n in names})
        if found != sorted(CIFAR10_CLASSES):
            raise ValueError(f"{path} should hold {split}/<class>/*.jpg for the 10 "
                             f"CIFAR-10 classes; found {len(names)} images in classes "
                             f"{found}")
        data = [torch.frombuffer(bytearray(archive.read(n)), dtype=torch.uint8)
                for n in names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        images = torch.stack(decode_jpeg(data, mode=ImageReadMode.RGB))
    labels = torch.tensor([CIFAR10_CLASSES.index(n.split("/")[1]) for n in names])
    return images, labels


# %% book/06_vit.md, code cell 7 (CIFAR-10, from either of its two homes)
def _cache_file(folder: Path, name: str) -> Path:
    """A writable place for a decoded-tensor cache: `folder`, else the temp folder."""
    temp = Path(tempfile.gettempdir()) / "annotated-decoded"
    for place in (folder / ".decoded", temp):
        try:
            place.mkdir(parents=True, exist_ok=True)
            probe = place / ".write-test"
            probe.touch()
            probe.unlink()
            return place / name
        except OSError:
            continue
    raise OSError(f"no writable folder for the decoded-image cache ({folder}, "
                  f"{tempfile.gettempdir()})")


def read_cifar10_zip(path: Path, split: str,
                     sha256: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Verify a class-folder JPEG zip against `sha256`, decode it (cached by digest)."""
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256.lower():
        raise ChecksumError(f"{path} is corrupt or incomplete: SHA-256 {digest}, "
                            f"expected {sha256.lower()}; delete it and fetch it again")
    cache = _cache_file(path.parent, f"{split}-{digest[:16]}.pt")
    if cache.exists():
        images, labels = torch.load(cache, weights_only=True)
        return images, labels
    images, labels = _decode_zip(path, split)
    tmp = cache.with_name(cache.name + ".part")
    torch.save((images, labels), tmp)
    tmp.replace(cache)
    return images, labels


# %% book/06_vit.md, code cell 8 (CIFAR-10, from either of its two homes)
def read_cifar10_batches(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the official python batches (`cifar-10-batches-py/`) of one split."""
    train = [f"data_batch_{i}" for i in range(1, 6)]
    names = train if split == "train" else ["test_batch"]
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise DataUnavailableError(f"{folder} lacks the CIFAR-10 batch files {missing}")
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images.append(torch.from_numpy(np.asarray(batch["data"], dtype=np.uint8)))
        labels.append(torch.as_tensor(batch["labels"], dtype=torch.int64))
    images = torch.cat(images).reshape(-1, 3, 32, 32)  # (N, C, H, W), channel-major
    return images, torch.cat(labels)


# %% book/06_vit.md, code cell 9 (CIFAR-10, from either of its two homes)
def load_cifar10(split: str, root: str | Path | None = None,
                 zip_sha256: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 `split` ('train'/'test') as (uint8 (N,3,32,32), int64 labels (N,)).

    In the files' order: class by class from the JPEG zips, mixed from the python
    batches. Take a subset with stratified_subset (or a random permutation), never
    a slice such as images[:1000], which may hold one or two classes.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    root = Path(root) if root is not None else data_dir() / "cifar10"
    zipped = root / f"{split}.zip"
    if zipped.exists():
        sha256 = zip_sha256 or CIFAR10_ZIP_SHA256.get(split)
        return read_cifar10_zip(zipped, split, sha256)
    batches = root / "cifar-10-batches-py"
    if not batches.exists():
        if root == data_dir() / "cifar10":
            archive = fetch(CIFAR10_URL, CIFAR10_SHA256, "cifar10")
        else:
            archive = fetch_to(root)
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    return read_cifar10_batches(batches, split)


def fetch_to(root: Path) -> Path:
    """The official archive in a given `root` folder (verified), or a clear error."""
    target = root / "cifar-10-python.tar.gz"
    if not target.exists():
        raise DataUnavailableError(f"no CIFAR-10 in {root}: put train.zip/test.zip, "
                                   f"cifar-10-batches-py/ or {target.name} there")
    if sha256_file(target) != CIFAR10_SHA256:
        raise ChecksumError(f"{target} is corrupt: its SHA-256 is not {CIFAR10_SHA256}")
    return target


# %% book/06_vit.md, code cell 15 (Subsets, normalisation and augmentation)
def stratified_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of `n` examples, `n // classes` from each class, in shuffled order."""
    classes = torch.unique(labels)
    if n < len(classes) or n % len(classes):
        raise ValueError("a stratified subset needs a positive multiple of "
                         f"{len(classes)} (the number of classes) examples, got n={n}")
    per_class = n // len(classes)
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in classes:
        members = torch.nonzero(labels == c)[:, 0]
        if per_class > len(members):
            raise ValueError(f"class {int(c)} has {len(members)} examples, "
                             f"{per_class} were asked for")
        chosen.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    chosen = torch.cat(chosen)
    return chosen[torch.randperm(len(chosen), generator=g)]


# %% book/06_vit.md, code cell 16 (Subsets, normalisation and augmentation)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, standardised with the CIFAR-10 statistics."""
    if images.dtype != torch.uint8:  # normalising twice, or 0..1 floats: wrong pixels
        raise TypeError(f"normalize takes uint8 pixels (0..255), got {images.dtype}: "
                        "normalise the images as the loader gives them, once")
    if images.dim() != 4 or images.size(1) != 3:
        raise ValueError(f"normalize takes images (B, 3, H, W), got shape "
                         f"{tuple(images.shape)}")
    mean = torch.tensor(CIFAR10_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


# %% book/06_vit.md, code cell 17 (Subsets, normalisation and augmentation)
def random_crop_flip(images: torch.Tensor, pad: int = 4, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crops (reflect-padded by `pad`) and horizontal flips of (B, C, H, W)."""
    B, C, H, W = images.shape
    dev = images.device
    if pad > 0:
        padded = F.pad(images.float(), (pad, pad, pad, pad), mode="reflect")
        padded = padded.to(images.dtype)  # (B, C, H + 2 pad, W + 2 pad)
        top = torch.randint(0, 2 * pad + 1, (B, 1), generator=generator).to(dev)
        left = torch.randint(0, 2 * pad + 1, (B, 1), generator=generator).to(dev)
        rows = (top + torch.arange(H, device=dev)).view(B, 1, H, 1)
        rows = rows.expand(B, C, H, W + 2 * pad)
        images = padded.gather(2, rows)  # (B, C, H, W + 2 pad)
        cols = (left + torch.arange(W, device=dev)).view(B, 1, 1, W).expand(B, C, H, W)
        images = images.gather(3, cols)  # (B, C, H, W)
    if flip:
        mirror = (torch.rand(B, generator=generator) < 0.5).to(dev).view(B, 1, 1, 1)
        images = torch.where(mirror, images.flip(3), images)
    return images


# %% book/06_vit.md, code cell 18 (Subsets, normalisation and augmentation)
TRIVIAL_OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y",
               "rotate", "brightness", "color", "contrast", "sharpness", "posterize",
               "solarize", "autocontrast", "equalize")
_SIGNED = {"shear_x", "shear_y", "translate_x", "translate_y", "rotate",
           "brightness", "color", "contrast", "sharpness"}  # strength times +-1


def trivial_strengths(levels: int = 31) -> torch.Tensor:
    """(operations, levels): each operation's strength at each level (float64)."""
    def lin(a, b):  # float32, as torchvision's table
        return torch.linspace(a, b, levels)
    bits = (8 - (torch.arange(levels) / ((levels - 1) / 6))).round()  # 8 ... 2
    none = torch.zeros(levels)
    rows = {"identity": none, "shear_x": lin(0, 0.99), "shear_y": lin(0, 0.99),
            "translate_x": lin(0, 32), "translate_y": lin(0, 32),  # pixels
            "rotate": lin(0, 135), "brightness": lin(0, 0.99), "color": lin(0, 0.99),
            "contrast": lin(0, 0.99), "sharpness": lin(0, 0.99), "posterize": bits,
            "solarize": lin(1, 0), "autocontrast": none, "equalize": none}
    return torch.stack([rows[op] for op in TRIVIAL_OPS]).double()


def trivial_draws(n: int, generator: torch.Generator | None = None,
                  levels: int = 31) -> tuple[torch.Tensor, torch.Tensor]:
    """For n images: an operation index (n,) and a signed strength (n,) each."""
    op = torch.randint(len(TRIVIAL_OPS), (n,), generator=generator)
    level = torch.randint(levels, (n,), generator=generator)
    negative = torch.rand(n, generator=generator) <= 0.5
    signed = torch.tensor([name in _SIGNED for name in TRIVIAL_OPS])[op]
    strength = trivial_strengths(levels)[op, level]
    return op, torch.where(signed & negative, -strength, strength)


# %% book/06_vit.md, code cell 19 (Subsets, normalisation and augmentation)
def affine_theta(op: str, m: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Inverse affine maps (n, 2, 3) of a shear, shift or rotation of strength m."""
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    if op == "rotate":  # about the centre, counter-clockwise by m degrees
        rot = -(m % 360) * (math.pi / 180)
        cos, sin = torch.cos(rot), torch.sin(rot)
        rows = [cos, sin, zero, -sin, cos, zero]
    elif op == "translate_x":  # by a whole number of pixels
        rows = [one, zero, -m.trunc(), zero, one, zero]
    elif op == "translate_y":
        rows = [one, zero, zero, zero, one, -m.trunc()]
    else:  # a shear about the top-left corner, by the angle atan(m)
        tan = torch.tan(torch.atan(m) * (180 / math.pi) * (math.pi / 180))
        rows = ([one, tan, tan * (H * 0.5), zero, one, zero] if op == "shear_x"
                else [one, zero, zero, tan, one, tan * (W * 0.5)])
    return torch.stack(rows, 1).view(-1, 2, 3).float()


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Move uint8 images (n, C, H, W) by inverse affine maps (n, 2, 3), nearest."""
    n, _, H, W = images.shape
    dev = images.device
    base = torch.ones(1, H, W, 3, device=dev)  # (x, y, 1) of every output pixel
    base[..., 0] = torch.linspace((1 - W) / 2, (W - 1) / 2, W, device=dev)
    base[..., 1] = torch.linspace((1 - H) / 2, (H - 1) / 2, H, device=dev)[:, None]
    to_unit = torch.tensor([W / 2, H / 2], device=dev)  # pixels -> [-1, 1]
    scaled = theta.to(dev).transpose(1, 2) / to_unit  # (n, 3, 2)
    grid = base.view(1, H * W, 3).expand(n, -1, -1).bmm(scaled).view(n, H, W, 2)
    moved = F.grid_sample(images.float(), grid, mode="nearest",
                          padding_mode="zeros", align_corners=False)
    return moved.round().to(torch.uint8)


# %% book/06_vit.md, code cell 20 (Subsets, normalisation and augmentation)
def _grey(images: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) uint8 -> (n, 1, H, W) float luma, floored (ITU-R 601-2 weights)."""
    r, g, b = images.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114)[:, None].floor_()


def _fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c in float32 with a single rounding (the product is exact in float64)."""
    return (a.double() * b.double() + c.double()).float()


def blend(images: torch.Tensor, degenerate: torch.Tensor,
          r: torch.Tensor) -> torch.Tensor:
    """r x + (1 - r) x_deg per image (r: (n,)), clamped to uint8."""
    r = r.view(-1, 1, 1, 1).to(images.device)
    out = _fma(degenerate, (1 - r).float(), images.float() * r.float())
    return out.clamp_(0, 255).to(torch.uint8)


def sharpen(images: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Blend the inner pixels with a 3x3 blur (1s around a 5, over 13) per image."""
    C = images.shape[1]
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], device=images.device)
    out = images.float()
    blurred = F.conv2d(out, kernel.expand(C, 1, 3, 3), groups=C).round_()
    inner = out[..., 1:-1, 1:-1]  # the border keeps its pixels
    keep = (1 - r.view(-1, 1, 1, 1)).float().to(images.device)
    out[..., 1:-1, 1:-1] = _fma(blurred - inner, keep, inner)
    return out.clamp_(0, 255).to(torch.uint8)


# %% book/06_vit.md, code cell 21 (Subsets, normalisation and augmentation)
def trivial_op(op: str, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Operation `op` of strengths m (n,) on uint8 images x (n, C, H, W)."""
    from torchvision.transforms.v2 import functional as TF  # batched kernels
    dev = x.device
    if op in ("shear_x", "shear_y", "translate_x", "translate_y", "rotate"):
        return warp(x, affine_theta(op, m, *x.shape[-2:]))
    if op == "brightness":
        r = (1 + m).float().view(-1, 1, 1, 1).to(dev)
        return (x.float() * r).clamp_(0, 255).to(torch.uint8)
    if op == "color":
        return blend(x, _grey(x), 1 + m)
    if op == "contrast":
        return blend(x, _grey(x).mean((-3, -2, -1), keepdim=True), 1 + m)
    if op == "sharpness":
        return sharpen(x, 1 + m)
    if op == "posterize":  # keep the top m bits
        mask = (256 - 2 ** (8 - m)).to(torch.uint8).view(-1, 1, 1, 1).to(dev)
        return x & mask
    if op == "solarize":  # invert the pixels at or above 255 m
        threshold = (255 * m).float().view(-1, 1, 1, 1).to(dev)
        return torch.where(x >= threshold, 255 - x, x)
    if op == "autocontrast":  # stretch each channel to 0 ... 255
        return TF.autocontrast(x)
    if op == "equalize":  # flatten each channel's histogram
        return TF.equalize(x)
    return x  # identity


# %% book/06_vit.md, code cell 22 (Subsets, normalisation and augmentation)
def trivial_augment(images: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """TrivialAugment Wide, an operation and strength per image, on the whole batch."""
    op, m = trivial_draws(len(images), generator)  # (B,), (B,), on the CPU
    out = images.clone()
    counts = torch.bincount(op, minlength=len(TRIVIAL_OPS)).tolist()
    groups = op.argsort(stable=True).split(counts)  # image indices, by operation
    for name, idx in zip(TRIVIAL_OPS, groups):
        if len(idx) and name != "identity":
            at = idx.to(images.device)
            out[at] = trivial_op(name, images[at], m[idx])
    return out


def strong_augment(images: torch.Tensor, erase_p: float = 0.25,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """TrivialAugment, then random erasing of a square (uint8 (B, C, H, W))."""
    images = trivial_augment(images, generator)
    B, _, H, W = images.shape
    dev = images.device
    erase = (torch.rand(B, generator=generator) < erase_p).to(dev)
    # a square of side 20-50 % of the image
    size = (torch.rand(B, generator=generator) * 0.3 + 0.2) * H
    top = (torch.rand(B, generator=generator) * (H - size)).long().to(dev)
    left = (torch.rand(B, generator=generator) * (W - size)).long().to(dev)
    side = size.long().to(dev)
    ys = torch.arange(H, device=dev).view(1, H, 1)
    xs = torch.arange(W, device=dev).view(1, 1, W)
    inside = ((ys >= top.view(B, 1, 1)) & (ys < (top + side).view(B, 1, 1)) &
              (xs >= left.view(B, 1, 1)) & (xs < (left + side).view(B, 1, 1)))
    mask = (inside & erase.view(B, 1, 1)).unsqueeze(1)  # (B, 1, H, W)
    return images.masked_fill(mask, 127)


# %% book/06_vit.md, code cell 24 (Cutting an image into patches)
def check_images(images: torch.Tensor, patch_size: int,
                 in_channels: int | None = None) -> None:
    """Raise (naming shapes) unless images are (B, C, H, W), H and W divisible by P."""
    if images.dim() != 4:
        raise ValueError("images must be (batch, channels, height, width), "
                         f"got shape {tuple(images.shape)}")
    _, C, H, W = images.shape
    if in_channels is not None and C != in_channels:
        raise ValueError(f"expected {in_channels} input channels, got {C} "
                         f"(images {tuple(images.shape)})")
    if H % patch_size or W % patch_size:
        P = patch_size
        raise ValueError(f"a {H}x{W} image cannot be cut into {P}x{P} patches "
                         f"({H} % {P} = {H % P}, {W} % {P} = {W % P})")


RAW_PIXELS = 20.0  # normalize() maps 0..255 into [-1.99, 2.12]; raw values go to 255


def check_model_input(images: torch.Tensor) -> None:
    """Raise unless `images` look normalised: floats, not uint8, 0..255 or 0..1."""
    if not images.is_floating_point():
        raise TypeError(f"the model takes normalize()d float images, got "
                        f"{images.dtype}: pass normalize(images), or call "
                        "predict(model, images), which normalises uint8 images itself")
    if not images.numel():
        return
    low, high = images.detach().aminmax()
    if max(-low.item(), high.item()) > RAW_PIXELS:
        raise ValueError(f"these images look like raw pixel values (largest |value| "
                         f"{max(-low.item(), high.item()):.0f}); the model takes "
                         "normalize(uint8 images), whose values lie within ±2.2")
    if 0 <= low < high <= 1:  # a normalised image goes below 0 or above 1
        raise ValueError("these images look like pixels scaled to [0, 1] (as "
                         "torchvision's ToTensor gives); the model takes "
                         "normalize(uint8 images), whose values lie within ±2.2 "
                         "and go below 0 or above 1")


def check_uint8(images: torch.Tensor, who: str) -> None:
    """Raise unless `images` are uint8 pixels, as predict and training take them."""
    if images.dtype != torch.uint8:
        raise TypeError(f"{who} takes uint8 images (0..255) and normalises them "
                        f"itself; got {images.dtype} (pass the images before "
                        "normalize(), or call the model directly)")


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*P*P): patches row by row, flattened channel-major."""
    check_images(images, patch_size)
    # (B, C*P*P, N): one column per patch
    patches = F.unfold(images, kernel_size=patch_size, stride=patch_size)
    return patches.transpose(1, 2)  # (B, N, C*P*P)


# %% book/06_vit.md, code cell 27 (Patch embedding: a linear map, written two ways)
class PatchEmbedding(nn.Module):
    """Map each P x P patch linearly to d_model: a convolution with stride P."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int,
                 d_model: int):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by "
                             f"patch_size {patch_size}")
        self.image_size, self.patch_size = image_size, patch_size
        self.in_channels = in_channels
        self.grid_size = image_size // patch_size
        self.proj = nn.Conv2d(in_channels, d_model, kernel_size=patch_size,
                              stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.patch_size, self.in_channels)
        check_model_input(images)
        if images.shape[-2:] != (self.image_size, self.image_size):
            size = self.image_size
            raise ValueError(f"expected {size}x{size} images, "
                             f"got {tuple(images.shape)}")
        return self.proj(images).flatten(2).transpose(1, 2)  # (B, d, g, g) -> (B, N, d)


# %% book/06_vit.md, code cell 29 (The Vision Transformer)
@dataclass
class ViTConfig:
    """Sizes of the Vision Transformer."""

    image_size: int = 32  # H = W, pixels of a (square) input image
    patch_size: int = 4  # P; the image becomes N = (H / P)^2 patches
    in_channels: int = 3  # C, colour channels
    num_classes: int = 10
    d_model: int = 128  # d, width of every token
    depth: int = 6  # L, encoder blocks
    n_heads: int = 4  # h, attention heads per block; d_k = d / h
    d_ff: int = 256  # inner width of each block's MLP
    dropout: float = 0.0  # on the embeddings, attention weights and sub-layers
    pool: str = "cls"  # what the head reads: the class token, or "mean" of the patches

    def __post_init__(self):
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {self.pool!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by "
                             f"patch_size {self.patch_size}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by "
                             f"n_heads={self.n_heads}")


# %% book/06_vit.md, code cell 30 (The Vision Transformer)
class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, learned positions, pre-norm encoder, head."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.patch_embed = PatchEmbedding(cfg.image_size, cfg.patch_size,
                                          cfg.in_channels, d)
        n_tokens = self.patch_embed.grid_size ** 2 + 1  # patches + the class token
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, d) * 0.02)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(d, cfg.n_heads, cfg.d_ff, dropout=cfg.dropout,
                         norm_first=True, activation="gelu")
            for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.num_classes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """z_0: (B, C, H, W) -> (B, 1 + N, d) tokens with class token and positions."""
        patches = self.patch_embed(images)  # (B, N, d)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)  # (B, 1, d)
        z0 = torch.cat([cls, patches], dim=1) + self.pos_embed  # (B, 1+N, d)
        return self.dropout(z0)

    def hidden_states(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[z_0, z_1, ..., z_L], each (B, 1 + N, d)."""
        states = [self.embed(images)]
        for layer in self.layers:
            states.append(layer(states[-1]))
        return states

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> class logits (B, num_classes)."""
        z = self.embed(images)
        for layer in self.layers:
            z = layer(z)  # (B, 1+N, d)
        if self.cfg.pool == "mean":  # the average of the N patch tokens
            return self.head(self.norm(z[:, 1:].mean(1)))
        return self.head(self.norm(z[:, 0]))  # y = head(LN(z_L^0)), class token only

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW should not decay besides biases and norms (as in timm)."""
        return {"cls_token", "pos_embed"}

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer for `images`: (L, B, heads, 1+N, 1+N)."""
        was_training = self.training
        self.eval()
        try:
            self(images)
            return torch.stack([layer.self_attn.attn for layer in self.layers])
        finally:
            self.train(was_training)


# %% book/06_vit.md, code cell 32 (Training: AdamW, warm-up and cosine, label smoothing)
@dataclass
class ClassifierRecipe:
    """How an image classifier is trained: length, optimiser, schedule, augmentation."""

    epochs: int = 3  # passes over the training set
    batch_size: int = 128
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 0.05  # AdamW's decoupled decay
    warmup_frac: float = 0.1  # share of the steps spent warming up
    label_smoothing: float = 0.1
    crop_pad: int = 4  # random-crop padding in pixels (0: no crop)
    flip: bool = True  # random horizontal flips
    strong_augment: bool = False  # TrivialAugment + random erasing
    seed: int = 0  # of the generator that shuffles and augments
    decay_all: bool = False  # True: decay biases, norms, positions and class token too


def weight_decay_groups(model: nn.Module, weight_decay: float,
                        decay_all: bool = False) -> list[dict]:
    """AdamW's parameter groups: decay the weight matrices, not the rest (timm's rule).

    Biases and normalisation scales (every parameter of fewer than two dimensions)
    and the names in `model.no_weight_decay()` go to a group without decay.
    """
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or name in skip
        (no_decay if exempt and not decay_all else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then half a cosine down to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# %% book/06_vit.md, code cell 33 (Training: AdamW, warm-up and cosine, label smoothing)
def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch of index batches, the last partial batch dropped."""
    order = torch.randperm(n, generator=generator)
    if n < batch_size:
        return [order]
    return list(order[: n - n % batch_size].split(batch_size))


STRONG_CHUNK = 32  # batches strongly augmented together (fewer, larger calls)


class AugmentedBatches:
    """Epochs of shuffled, augmented, normalised (images, labels) batches; resumable."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 recipe: ClassifierRecipe):
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError(f"need as many labels as images (and at least one): "
                             f"{len(images)} images, {len(labels)} labels")
        check_uint8(images, "training")
        self.images, self.labels, self.recipe = images, labels, recipe
        self.generator = torch.Generator().manual_seed(recipe.seed)

    def __len__(self) -> int:
        n, b = len(self.images), self.recipe.batch_size
        return n // b if n >= b else 1

    def __iter__(self):
        r, g = self.recipe, self.generator
        order = _batches(len(self.images), r.batch_size, g)
        for start in range(0, len(order), STRONG_CHUNK):
            chunk = order[start:start + STRONG_CHUNK]
            xs = [random_crop_flip(self.images[idx], r.crop_pad, r.flip, g)
                  for idx in chunk]  # each (B, C, H, W), uint8
            if r.strong_augment:  # one call for the chunk's batches together
                xs = strong_augment(torch.cat(xs), generator=g).split(
                    [len(idx) for idx in chunk])
            for idx, x in zip(chunk, xs):
                yield normalize(x), self.labels[idx]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


# %% book/06_vit.md, code cell 34 (Training: AdamW, warm-up and cosine, label smoothing)
def classifier_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], *,
                    label_smoothing: float = 0.0) -> tuple[torch.Tensor, float, int]:
    """fit()'s step for a classifier: (smoothed cross-entropy, its sum, images)."""
    images, labels = batch  # (B, C, H, W) normalised, (B,)
    loss = F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)
    return loss, loss.item() * len(labels), len(labels)


# %% book/06_vit.md, code cell 35 (Training: AdamW, warm-up and cosine, label smoothing)
def check_labels(labels: torch.Tensor, num_classes: int | None) -> None:
    """Raise unless `labels` are int64 class ids (N,) below num_classes (if known)."""
    if labels.dtype != torch.long or labels.dim() != 1:
        raise TypeError(f"labels must be int64 class ids (N,), got {labels.dtype} of "
                        f"shape {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or (
            num_classes is not None and labels.max() >= num_classes)):
        raise ValueError(f"labels run from {int(labels.min())} to {int(labels.max())}, "
                         f"but the model has {num_classes} classes (0 .. "
                         f"{num_classes - 1 if num_classes else '?'})")


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     recipe: ClassifierRecipe, *, checkpoint: str | Path | None = None,
                     settings: dict | None = None, device: torch.device | None = None,
                     stop_after: int | None = None, verbose: bool = True,
                     compile_model: bool = False) -> dict:
    """Train `model` on uint8 images with `recipe` by training.fit; the history."""
    check_labels(labels, getattr(getattr(model, "cfg", None), "num_classes", None))
    device = device or model_device(model)
    batches = AugmentedBatches(images.to(device), labels.to(device), recipe)
    model.to(device)
    if compile_model:  # in place: the state_dict keeps its names
        model.compile()
    total = recipe.epochs * len(batches)
    warmup = max(1, round(recipe.warmup_frac * total))
    opt = torch.optim.AdamW(
        weight_decay_groups(model, recipe.weight_decay, recipe.decay_all), lr=recipe.lr,
        weight_decay=recipe.weight_decay, fused=True if device.type == "cuda" else None)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, total, warmup))
    config = TrainConfig(epochs=recipe.epochs, clip=None, patience=None,
                         scheduler_interval="step", stop_after=stop_after,
                         verbose=verbose)
    step = functools.partial(classifier_step, label_smoothing=recipe.label_smoothing)
    run_settings = {"recipe": asdict(recipe), "n_train": len(images)}
    if is_dataclass(getattr(model, "cfg", None)):  # the model's config, field by field
        run_settings["model"] = asdict(model.cfg)
    run_settings |= settings or {}
    return fit(model, step, batches, optimizer=opt, scheduler=sched, config=config,
               checkpoint=checkpoint, settings=run_settings)


# %% book/06_vit.md, code cell 36 (Training: AdamW, warm-up and cosine, label smoothing)
@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500,
            device: torch.device | None = None) -> torch.Tensor:
    """Class probabilities (N, classes) for uint8 images (N, C, H, W), on the CPU."""
    check_uint8(images, "predict")
    device = device or next(model.parameters()).device
    model.eval()
    probs = []
    for chunk in images.split(batch_size):
        with autocast(device):
            logits = model(normalize(chunk.to(device)))
        probs.append(logits.float().softmax(-1).cpu())
    return torch.cat(probs)


# %% book/06_vit.md, code cell 37 (Measuring a classifier properly)
def average_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N of a 1-d tensor, ties sharing their average rank."""
    sorted_scores, order = torch.sort(scores.double())
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True,
                                                  return_counts=True)
    ends = torch.cumsum(counts, 0).double()  # last rank of each tie group
    group_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(group_rank[inverse])
    ranks[order] = group_rank[inverse]
    return ranks


def one_vs_rest_auc(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AUC of each class's score separating that class from the rest: (classes,)."""
    aucs = []
    for c in range(probs.shape[1]):
        positive = labels == c
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos == 0 or n_neg == 0:
            aucs.append(float("nan"))
            continue
        r = average_ranks(probs[:, c])
        u = r[positive].sum() - n_pos * (n_pos + 1) / 2  # Mann-Whitney U
        aucs.append((u / (n_pos * n_neg)).item())
    return torch.tensor(aucs, dtype=torch.float64)


# %% book/06_vit.md, code cell 38 (Measuring a classifier properly)
def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, top-5, macro precision/recall/F1/AUC, per-class accuracy, confusion."""
    if probs.dim() != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"probs must be (N, classes) and labels (N,) with N > 0; "
                         f"got {tuple(probs.shape)} and {tuple(labels.shape)}")
    C = probs.shape[1]
    pred = probs.argmax(1)
    # rows: the true class, columns: the predicted one
    confusion = torch.bincount(labels * C + pred, minlength=C * C).view(C, C)
    tp = confusion.diag().double()
    precision = tp / confusion.sum(0).clamp(min=1)
    recall = tp / confusion.sum(1).clamp(min=1)
    f1 = torch.where(precision + recall > 0,
                     2 * precision * recall / (precision + recall), 0.0)
    top5 = (probs.topk(min(5, C), 1).indices == labels[:, None]).any(1)
    auc = one_vs_rest_auc(probs, labels)
    return {"accuracy": (pred == labels).double().mean().item(),
            "top5": top5.double().mean().item(),
            "macro_precision": precision.mean().item(),
            "macro_recall": recall.mean().item(),
            "macro_f1": f1.mean().item(), "macro_auc": auc.nanmean().item(),
            "per_class_accuracy": recall.tolist(), "auc": auc.tolist(),
            "confusion": confusion.tolist()}


# %% book/06_vit.md, code cell 40 (Recipes and checkpoints)
def vit_recipe(profile: str) -> dict:
    """Model settings, training recipe and training-set size of a profile's ViT."""
    model = by_profile(
        smoke=ViTConfig(d_model=32, depth=2, n_heads=2, d_ff=64, dropout=0.0),
        cpu=ViTConfig(d_model=128, depth=4, n_heads=4, d_ff=256, dropout=0.0),
        full=ViTConfig(d_model=384, depth=7, n_heads=12, d_ff=384, dropout=0.0),
        profile=profile)
    train = by_profile(
        smoke=ClassifierRecipe(epochs=1, batch_size=50, lr=1e-3),
        cpu=ClassifierRecipe(epochs=4, batch_size=128, lr=2e-3),
        full=ClassifierRecipe(epochs=200, batch_size=128, lr=1e-3, weight_decay=5e-5,
                              warmup_frac=0.025, strong_augment=True), profile=profile)
    n_train = by_profile(smoke=200, cpu=50_000, full=50_000, profile=profile)
    return {"model": model, "train": train, "n_train": n_train}


# %% book/06_vit.md, code cell 49
# (Inductive bias, measured: a small CNN with the same budget)
class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with a skip (a 1x1 conv when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))  # (B, c_out, H/s, W/s)
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


# %% book/06_vit.md, code cell 50
# (Inductive bias, measured: a small CNN with the same budget)
@dataclass
class ResNetConfig:
    """Sizes of the small ResNet."""

    in_channels: int = 3  # C, colour channels
    num_classes: int = 10
    widths: tuple = (32, 64, 128)  # channels of the stem and the three stages


class SmallResNet(nn.Module):
    """A ResNet for 32x32 images: stem, one residual block per stage, pooling, head."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg, self.in_channels = cfg, cfg.in_channels
        widths = tuple(cfg.widths)
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.blocks = nn.ModuleList(
            ResidualBlock(c_in, c_out, stride=1 if i == 0 else 2)
            for i, (c_in, c_out) in enumerate(zip(widths[:1] + widths[:-1], widths)))
        self.head = nn.Linear(widths[-1], cfg.num_classes)

    def hidden_states(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The stem's output and every block's output, each (B, c, h, w)."""
        check_images(images, 1, self.in_channels)
        check_model_input(images)
        states = [self.stem(images)]
        for block in self.blocks:
            states.append(block(states[-1]))
        return states

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.hidden_states(images)[-1]  # (B, c, h, w)
        return self.head(features.mean((2, 3)))  # global average pooling


# %% book/06_vit.md, code cell 51
# (Inductive bias, measured: a small CNN with the same budget)
def cnn_recipe(profile: str) -> dict:
    """The CNN baseline: its widths, and the ViT's training config and data size."""
    vit = vit_recipe(profile)
    widths = by_profile(smoke=(8, 16, 32), cpu=(16, 32, 64), full=(64, 128, 256),
                        profile=profile)
    return {"model": ResNetConfig(widths=widths),
            "train": vit["train"], "n_train": vit["n_train"]}


# %% book/06_vit.md, code cell 58 (Accuracy against training-set size)
def size_sweep(profile: str) -> dict:
    """The data-size comparison's training-set sizes and its fixed budget of images."""
    return {"sizes": by_profile(smoke=[100, 200], cpu=[1_000, 5_000, 20_000],
                                full=[1_000, 5_000, 20_000, 50_000], profile=profile),
            "images_seen": by_profile(smoke=200, cpu=20_000, full=500_000,
                                      profile=profile)}


def sweep_model(name: str, n: int, images: torch.Tensor, labels: torch.Tensor,
                profile: str, *, seed: int = 0, checkpoint: bool = True,
                device: torch.device | None = None, **changes) -> nn.Module:
    """A model of the data-size comparison, trained (or loaded from its checkpoint).

    `name` is "vit" or "cnn"; it trains from `seed` on the stratified `n`-image
    subset of `images` for the profile's budget. `changes` alter the ViT's config
    (e.g. pool="mean") or the recipe (decay_all=True); the checkpoint's name says
    the seed and the changes (vit_cifar10_n5000_pool-mean.cpu.pt).
    """
    if name not in ("vit", "cnn"):
        raise ValueError(f"name must be 'vit' or 'cnn', got {name!r}")
    budget = size_sweep(profile)["images_seen"]
    if budget % n:
        raise ValueError(f"{budget} images seen is not a whole number of epochs of {n}")
    recipe_changes = {k: changes.pop(k) for k in list(changes) if k == "decay_all"}
    train = replace(vit_recipe(profile)["train"], epochs=budget // n, seed=seed,
                    **recipe_changes)
    seed_everything(seed)
    if name == "vit":
        model = VisionTransformer(replace(vit_recipe(profile)["model"], **changes))
    elif changes:
        raise ValueError(f"the CNN has no settings {sorted(changes)}")
    else:
        model = SmallResNet(cnn_recipe(profile)["model"]).to(
            memory_format=torch.channels_last)
    tag = "".join(f"_{k}-{v}" for k, v in sorted((changes | recipe_changes).items()))
    tag += f"_seed{seed}" if seed else ""
    path = checkpoint_dir() / f"{name}_cifar10_n{n}{tag}.{profile}.pt"
    idx = stratified_subset(labels, n, seed=1)
    train_classifier(model, images[idx], labels[idx], train, device=device,
                     checkpoint=path if checkpoint else None, verbose=False)
    return model
