"""Chapter 6's full profile on one GPU in one command: train the full ViT (and, asked,
the CNN), score them on the CIFAR-10 test set, write results/06_vit.full.json.

What travels. The device machine receives the working tree, at most 64 MiB: the
repository is about 20 MiB (weights/ 19 MB of it), and CIFAR-10's two zips (63 MB) or
its decoded pixels (184 MB) do not fit beside it. Every one of the 60,000 JPEGs in the
zips shares one 623-byte header; what differs is the entropy-coded scan, about 300 bytes
an image. `--prepare` (run here) stores the headers once and the scans back to back in
`.data/cifar10.pack.pt` (about 19 MB, ignored by git), after checking that the JPEGs
rebuilt from it decode to exactly the loader's tensors. On the device machine the pack
is read back the same way and checked against the decoded tensors' SHA-256.

    python tools/device_full_vit.py --prepare                  # here, once
    run(command="python3 tools/device_full_vit.py --device cuda --out $OUT",
        carry=[".data"], timeout_s=600)                        # on the device machine

Sized for a call. The run stops before `--budget` seconds (default 540, inside a
10-minute call), after a whole epoch, with exit status 3; the next call with the same
command resumes from the last whole epoch (checkpoints/ stays on a warm machine).
The results JSON and the 8-bit weights (weights/06_vit.full.int8.pt) are copied to
`--out`. `--schedule tiny` runs the same path on a tiny model and schedule (the tests
run it on CPU); `--device cuda` without a GPU is refused with one error.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import shutil
import sys
import time
import warnings
import zipfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from annotated.plumbing import (  # noqa: E402
    ChecksumError,
    DataUnavailableError,
    checkpoint_dir,
    data_dir,
    save_results,
    seed_everything,
    sha256_file,
)
from annotated.training import items_per_second, save_shipped, weights_settings  # noqa: E402
from annotated.vit import (  # noqa: E402
    CIFAR10_CLASSES,
    CIFAR10_ZIP_SHA256,
    SmallResNet,
    VisionTransformer,
    ViTConfig,
    classification_metrics,
    cnn_recipe,
    load_cifar10,
    predict,
    stratified_subset,
    train_classifier,
    vit_recipe,
)

PACK_FORMAT = "cifar10-jpeg-scans-1"
DEFAULT_PACK = ROOT / ".data" / "cifar10.pack.pt"
RESUMABLE = 3  # exit status: stopped after a whole epoch for the time budget


# ---------------------------------------------------------------- the data pack
def _split_jpeg(data: bytes) -> tuple[bytes, bytes]:
    """A JPEG's header (through the start-of-scan segment) and its scan."""
    sos = data.find(b"\xff\xda")
    if sos < 0:
        raise ValueError("not a baseline JPEG: no start-of-scan marker")
    end = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    return data[:end], data[end:]


def _digest(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()


def _decode(jpegs: list[bytes]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in jpegs]
        return torch.stack(decode_jpeg(data, mode=ImageReadMode.RGB))


def _pack_split(path: Path, split: str, headers: list[bytes]) -> dict:
    """One zip's JPEGs as header indices, scans back to back, offsets and labels."""
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist()
                       if n.lower().endswith(".jpg") and n.startswith(f"{split}/"))
        jpegs = [archive.read(n) for n in names]
    index, scans, offsets = [], [], [0]
    for data in jpegs:
        header, scan = _split_jpeg(data)
        if header not in headers:
            headers.append(header)
        index.append(headers.index(header))
        scans.append(scan)
        offsets.append(offsets[-1] + len(scan))
    labels = torch.tensor([CIFAR10_CLASSES.index(n.split("/")[1]) for n in names])
    return {"header": torch.tensor(index, dtype=torch.int16),
            "offsets": torch.tensor(offsets, dtype=torch.int64),
            "scans": torch.frombuffer(bytearray(b"".join(scans)), dtype=torch.uint8),
            "labels": labels}


def _unpack_split(pack: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    part, headers = pack["splits"][split], pack["headers"]
    scans, offsets = part["scans"].numpy().tobytes(), part["offsets"].tolist()
    jpegs = [headers[h] + scans[a:b]
             for h, a, b in zip(part["header"].tolist(), offsets[:-1], offsets[1:])]
    return _decode(jpegs), part["labels"]


def pack_cifar10(root: Path, out: Path, expected: dict | None = None) -> Path:
    """Write the compact pack of `root`'s train.zip and test.zip (verified) to `out`."""
    expected = CIFAR10_ZIP_SHA256 if expected is None else expected
    pack = {"format": PACK_FORMAT, "headers": [], "splits": {}, "decoded_sha256": {}}
    for split in ("train", "test"):
        path = root / f"{split}.zip"
        if not path.exists():
            raise DataUnavailableError(f"no {path}: --prepare packs CIFAR-10's "
                                       "train.zip and test.zip (see the data README)")
        digest = sha256_file(path)
        if expected.get(split) and digest != expected[split]:
            raise ChecksumError(f"{path} has SHA-256 {digest}, expected {expected[split]}")
        pack["splits"][split] = _pack_split(path, split, pack["headers"])
        images, labels = load_cifar10(split, root, zip_sha256=digest)
        rebuilt, rebuilt_labels = _unpack_split(pack, split)
        if not (torch.equal(rebuilt, images) and torch.equal(rebuilt_labels, labels)):
            raise ValueError(f"the pack of {path} does not decode to the loader's images")
        pack["decoded_sha256"][split] = _digest(images)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(pack, buffer)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(out)
    return out


def load_pack(path: Path) -> dict:
    """{split: (uint8 images (N, 3, 32, 32), labels (N,))} from a pack, verified."""
    try:
        pack = torch.load(path, weights_only=True)
        ok = pack.get("format") == PACK_FORMAT
    except Exception as err:  # noqa: BLE001 - unreadable: say so by name
        raise ChecksumError(f"{path} is not a readable CIFAR-10 pack ({err})") from None
    if not ok:
        raise ChecksumError(f"{path} is not a {PACK_FORMAT} pack")
    data = {}
    for split in ("train", "test"):
        images, labels = _unpack_split(pack, split)
        if _digest(images) != pack["decoded_sha256"][split]:
            raise ChecksumError(f"{path}: the {split} images decode differently here "
                                "(another JPEG decoder?); refusing to train on them")
        data[split] = images, labels
    return data


# ---------------------------------------------------------------- the run
def _schedule(name: str) -> dict:
    """The full profile's recipes, or a tiny schedule through the same code."""
    vit, cnn = vit_recipe("full"), cnn_recipe("full")
    if name == "full":
        return {"vit": vit, "cnn": cnn, "n_test": 10_000, "profile": "full"}
    tiny_train = replace(vit["train"], epochs=2, batch_size=10)
    tiny_vit = ViTConfig(d_model=16, depth=1, n_heads=2, d_ff=32)
    return {"vit": {"model": tiny_vit, "train": tiny_train, "n_train": 50},
            "cnn": {"model": cnn_recipe("smoke")["model"], "train": tiny_train,
                    "n_train": 50},
            "n_test": 20, "profile": "smoke"}


def train_within(make, rec: dict, data: dict, path: Path, device: torch.device,
                 deadline: float, compile_model: bool, max_epochs: int | None) -> tuple:
    """Train by whole epochs while they fit before `deadline`; (model, history, done)."""
    images, labels = data["train"]
    subset = stratified_subset(labels, rec["n_train"], seed=0)
    epoch_s, calls = None, 0
    while True:
        left = deadline - time.perf_counter()
        epochs = 1 if epoch_s is None else max(1, math.floor(left / (1.2 * epoch_s)))
        if max_epochs is not None:
            epochs = min(epochs, max_epochs - calls)
        seed_everything(0)
        model = make()
        run = train_classifier(model, images[subset], labels[subset], rec["train"],
                               device=device, checkpoint=path, stop_after=epochs,
                               compile_model=compile_model, verbose=True)
        calls += epochs
        if not run.get("interrupted"):
            return model, run, True
        epoch_s = run["seconds"][-1]
        if (time.perf_counter() + 1.2 * epoch_s > deadline
                or (max_epochs is not None and calls >= max_epochs)):
            return model, run, False


def _score(model, data: dict, n_test: int, device) -> dict:
    images, labels = data["test"]
    idx = stratified_subset(labels, n_test, seed=0)
    return classification_metrics(predict(model, images[idx], device=device), labels[idx])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prepare", action="store_true", help="write the data pack, then stop")
    p.add_argument("--pack", type=Path, default=DEFAULT_PACK)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--schedule", choices=("full", "tiny"), default="full")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for this call")
    p.add_argument("--cnn", action="store_true", help="also the CNN, if time is left")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--max-epochs", type=int, default=None, help="per call (for tests)")
    p.add_argument("--out", type=Path, default=None, help="copy results and weights here")
    return p.parse_args(argv)


def pick_device(asked: str) -> torch.device:
    """The device asked for; one clear error for cuda without a GPU."""
    if asked == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but PyTorch sees no GPU here "
                         f"(torch {torch.__version__}, torch.cuda.is_available() is "
                         "False); run on the device machine or pass --device cpu")
    if asked == "auto":
        asked = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(asked)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        out = pack_cifar10(data_dir() / "cifar10", args.pack)
        print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
        return 0
    device, start = pick_device(args.device), time.perf_counter()
    deadline = start + args.budget
    data = (load_pack(args.pack) if args.pack.exists() else
            {s: load_cifar10(s) for s in ("train", "test")})
    plan = _schedule(args.schedule)
    compile_model = device.type == "cuda" and not args.no_compile
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.schedule} schedule on {device} ({name}), budget {args.budget:.0f} s, "
          f"torch.compile {compile_model}")
    ckpt = checkpoint_dir()
    vit, run, done = train_within(lambda: VisionTransformer(plan["vit"]["model"]),
                                  plan["vit"], data,
                                  ckpt / f"vit_cifar10.{args.schedule}.pt", device,
                                  deadline, compile_model, args.max_epochs)
    if not done:
        print(f"stopped after epoch {len(run['epoch'])} of {plan['vit']['train'].epochs} "
              "for the time budget; run the same command again to resume")
        return RESUMABLE
    metrics = _score(vit, data, plan["n_test"], device)
    results = {"vit": metrics, "vit_train_seconds": sum(run["seconds"]),
               "vit_train_images_per_second": items_per_second(run),
               "vit_parameters": sum(p.numel() for p in vit.parameters()),
               "vit_loaded_from_checkpoint": run["loaded_from"] is not None}
    settings = {"vit": plan["vit"]["model"], "train": plan["vit"]["train"],
                "n_train": plan["vit"]["n_train"], "n_test": plan["n_test"],
                "script": "tools/device_full_vit.py", "compile": compile_model}
    if args.cnn and time.perf_counter() < deadline:
        make = lambda: SmallResNet(plan["cnn"]["model"]).to(  # noqa: E731
            memory_format=torch.channels_last)
        cnn, cnn_run, cnn_done = train_within(
            make, plan["cnn"], data, ckpt / f"cnn_cifar10.{args.schedule}.pt", device,
            deadline, compile_model, args.max_epochs)
        if cnn_done:
            results["cnn"] = _score(cnn, data, plan["n_test"], device)
            results["cnn_train_images_per_second"] = items_per_second(cnn_run)
            settings["cnn"] = plan["cnn"]["model"]
    print(f"ViT test accuracy {metrics['accuracy']:.2%} on {plan['n_test']:,} images, "
          f"{results['vit_train_seconds']:.0f} s of training")
    written = save_results("06_vit", results, settings, time.perf_counter() - start,
                           profile=plan["profile"], device=device)
    copies = [written]
    if args.schedule == "full":
        shipped = ROOT / "weights" / "06_vit.full.int8.pt"
        copies.append(save_shipped(shipped, vit.cpu(),
                                   weights_settings(asdict(plan["vit"]["model"]))))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for path in copies:
            shutil.copy2(path, args.out / path.name)
    print("wrote", ", ".join(p.name for p in copies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
