"""The full recipe's augmentation, old and new: images per second on this machine, and
the full run's size in FLOPs.

Old: chapter 6 before issue 17, torchvision's TrivialAugmentWide called once per group
of 8 images (one operation per group), then random erasing, batch by batch. New: the
chapter's `AugmentedBatches`, one operation per image, each operation run once per 32
batches (`strong_augment`). Both shuffle, crop and flip every batch and normalise it, for
the full recipe's batch size; they run interleaved and repeated, the median counts (this
machine is shared), on one thread unless `--threads` says otherwise. Also counts the
training FLOPs per image of the full ViT and CNN (torch.utils.flop_counter, forward and
backward) and the recipe's total, from which the device script's run time is estimated.
Writes results/06_vit_augment.cpu.json.

    python benchmarks/vit_augment.py [--batches 10] [--repeats 5]
"""

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from annotated.plumbing import save_results, timer
from annotated.vit import (
    AugmentedBatches,
    SmallResNet,
    VisionTransformer,
    _batches,
    cnn_recipe,
    normalize,
    random_crop_flip,
    vit_recipe,
)

H200_BF16_MATMUL = 788e12  # FLOP/s, 8192^3 bf16 products measured there (device KINDS.md)


def old_strong_augment(images, erase_p=0.25, generator=None):
    """The chapter's strong augmentation before issue 17 (TrivialAugment per 8 images)."""
    from torchvision.transforms import v2

    trivial = v2.TrivialAugmentWide()
    images = torch.cat([trivial(chunk) for chunk in images.split(8)])
    B, _, H, W = images.shape
    erase = torch.rand(B, generator=generator) < erase_p
    size = (torch.rand(B, generator=generator) * 0.3 + 0.2) * H
    top = (torch.rand(B, generator=generator) * (H - size)).long()
    left = (torch.rand(B, generator=generator) * (W - size)).long()
    ys, xs = torch.arange(H).view(1, H, 1), torch.arange(W).view(1, 1, W)
    inside = ((ys >= top.view(B, 1, 1)) & (ys < (top + size.long()).view(B, 1, 1))
              & (xs >= left.view(B, 1, 1)) & (xs < (left + size.long()).view(B, 1, 1)))
    mask = (inside & erase.view(B, 1, 1)).unsqueeze(1).to(images.device)
    return images.masked_fill(mask, 127)


def old_epoch(images: torch.Tensor, labels: torch.Tensor, recipe):
    """The old AugmentedBatches.__iter__: every batch augmented on its own."""
    g = torch.Generator().manual_seed(recipe.seed)
    for idx in _batches(len(images), recipe.batch_size, g):
        x = random_crop_flip(images[idx], recipe.crop_pad, recipe.flip, g)
        yield normalize(old_strong_augment(x, generator=g)), labels[idx]


def epoch_rate(epoch) -> float:
    """Images per second of going through one epoch of augmented batches."""
    start, n = time.perf_counter(), 0
    for x, _ in epoch:
        n += len(x)
    return n / (time.perf_counter() - start)


def train_flops(model: torch.nn.Module) -> float:
    """FLOPs of one training image: forward and backward (counted on 8 images)."""
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(8, 3, 32, 32)).sum().backward()
    return counter.get_total_flops() / 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    full = vit_recipe("full")
    recipe, batch = full["train"], full["train"].batch_size
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch * args.batches, 3, 32, 32), dtype=torch.uint8,
                           generator=g)
    labels = torch.randint(0, 10, (len(images),), generator=g)
    pipelines = {"old": lambda: old_epoch(images, labels, recipe),
                 "new": lambda: AugmentedBatches(images, labels, recipe)}
    rates = {"old": [], "new": []}
    with timer() as t:
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            for name, epoch in pipelines.items():
                rates[name].append(epoch_rate(epoch()))
    old, new = (statistics.median(rates[k]) for k in ("old", "new"))
    vit_flops = train_flops(VisionTransformer(full["model"]))
    cnn_flops = train_flops(SmallResNet(cnn_recipe("full")["model"]))
    images_seen = full["train"].epochs * full["n_train"]
    total = vit_flops * images_seen
    estimate = {f"{int(share * 100)}%": total / (share * H200_BF16_MATMUL)
                for share in (0.1, 0.2, 0.3)}
    print(f"augmentation pipeline, batches of {batch}, {torch.get_num_threads()} threads: "
          f"old {old:.0f} images/s, new {new:.0f} images/s, new/old {new / old:.2f}")
    print(f"full ViT: {vit_flops / 1e9:.2f} GFLOP per training image, "
          f"{total / 1e15:.1f} PFLOP for {images_seen:,} images; on an H200 at 10/20/30 % "
          f"of {H200_BF16_MATMUL / 1e12:.0f} TFLOP/s: "
          + ", ".join(f"{s / 60:.1f}" for s in estimate.values()) + " min")
    metrics = {"old_images_per_second": old, "new_images_per_second": new,
               "new_over_old": new / old, "old_runs": rates["old"], "new_runs": rates["new"],
               "vit_full_train_gflop_per_image": vit_flops / 1e9,
               "cnn_full_train_gflop_per_image": cnn_flops / 1e9,
               "vit_full_total_pflop": total / 1e15,
               "vit_full_h200_minutes_at_share_of_peak": {k: v / 60 for k, v in estimate.items()}}
    path = save_results("06_vit_augment", metrics,
                        {"batch_size": batch, "batches": args.batches, "repeats": args.repeats,
                         "threads": torch.get_num_threads(), "h200_bf16_matmul": H200_BF16_MATMUL,
                         "recipe": full["train"], "n_train": full["n_train"]},
                        t["seconds"], profile="cpu")
    print("wrote", path)


if __name__ == "__main__":
    main()
