"""Training throughput (images per second) of the chapter-6 ViT and CNN, for a profile's recipe.

Times `annotated.vit.train_classifier` (augmentation, forward, backward, AdamW step:
the chapter's real loop) on random uint8 CIFAR-sized images, after a warm-up, on the
default device (a GPU when there is one). The recipe is the active profile's
(`ANNOTATED_PROFILE`, default cpu), so the number predicts that profile's training
time. Writes results/06_vit_benchmark.<profile>.json.

    python benchmarks/vit_throughput.py [--steps 30]
"""

import argparse
from dataclasses import replace

import torch

from annotated.plumbing import get_device, get_profile, save_results, seed_everything, timer
from annotated.training import items_per_second
from annotated.vit import (
    SmallResNet,
    VisionTransformer,
    cnn_recipe,
    train_classifier,
    vit_recipe,
)


def throughput(model: torch.nn.Module, recipe, steps: int, device: torch.device) -> float:
    """Images per second of `steps` training steps, after 3 warm-up steps."""
    images = torch.randint(0, 256, (recipe.batch_size * steps, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (len(images),))
    warm = replace(recipe, epochs=1)
    train_classifier(model, images[: 3 * recipe.batch_size], labels[: 3 * recipe.batch_size],
                     warm, device=device)
    timed = train_classifier(model, images, labels, replace(recipe, epochs=1), device=device)
    return items_per_second(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    profile, device = get_profile(), get_device()
    seed_everything(0)
    vit_rec, cnn_rec = vit_recipe(profile), cnn_recipe(profile)
    with timer() as t:
        vit_ips = throughput(VisionTransformer(vit_rec["model"]), vit_rec["train"], args.steps, device)
        cnn_ips = throughput(SmallResNet(cnn_rec["model"]).to(memory_format=torch.channels_last),
                             cnn_rec["train"], args.steps, device)
    print(f"profile {profile} on {device}: ViT {vit_ips:.0f} images/s, CNN {cnn_ips:.0f} images/s")
    path = save_results("06_vit_benchmark", {"vit_train_images_per_second": vit_ips,
                                          "cnn_train_images_per_second": cnn_ips},
                        {"vit": vit_rec["model"], "cnn": cnn_rec["model"], "train": vit_rec["train"],
                         "steps": args.steps, "threads": torch.get_num_threads()}, t["seconds"],
                        profile=profile)
    print("wrote", path)


if __name__ == "__main__":
    main()
