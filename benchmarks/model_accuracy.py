"""Top-1 accuracy of the offline kit's pretrained models on the kit's images.

CIFAR-10 models on ``cifar10_test.npz`` (10,000 JPEG-compressed test images, so about ten points
below the published clean accuracy), MobileNetV2 on ``imagenet_sample_224.npz`` (400 images).
Reference (kit README): ResNet-20 81.03%, ResNet-56 83.20%, DenseNet-BC-100 82.30%,
MobileNetV2 90.25%.

    python benchmarks/model_accuracy.py [--limit N] [--batch-size B] [--threads T]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from shapeood.models import adapt, load_model, transform_for
from shapeood.paths import kit_file

RUNS = [
    ("resnet20_cifar10", "cifar10_test.npz", 81.03),
    ("resnet32_cifar10", "cifar10_test.npz", None),
    ("resnet56_cifar10", "cifar10_test.npz", 83.20),
    ("densenet100_cifar10", "cifar10_test.npz", 82.30),
    ("mobilenet_v2_imagenet", "imagenet_sample_224.npz", 90.25),
]


def normalise(images: torch.Tensor, cfg: dict) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> ``(x / 255 - mean) / std``, as ``transform_for`` at full size."""
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def accuracy(name: str, file: str, limit: int | None, batch_size: int) -> tuple[float, int, float]:
    """(top-1 %, images, images per second) of kit model ``name`` on kit file ``file``."""
    with np.load(kit_file(file), allow_pickle=False) as z:
        images = torch.from_numpy(z["images"][:limit]).permute(0, 3, 1, 2).contiguous()
        labels = torch.from_numpy(z["labels"][:limit])
    model = load_model(name)
    size = images.shape[-1]
    transform = transform_for(model, resize=size, crop=size)
    check = torch.stack([transform(img) for img in images[:4]])
    torch.testing.assert_close(normalise(images[:4], model.pretrained_cfg), check)
    fm = adapt(model)
    correct = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            _, logits = fm.features_and_logits(
                normalise(images[i : i + batch_size], fm.pretrained_cfg)
            )
            correct += int((logits.argmax(1) == labels[i : i + batch_size]).sum())
    seconds = time.perf_counter() - start
    return 100.0 * correct / len(labels), len(labels), len(labels) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N images of each set")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{'model':<24}{'images':<26}{'N':>6}{'top-1 %':>9}{'reference':>11}{'img/s':>8}")
    for name, file, reference in RUNS:
        acc, n, speed = accuracy(name, file, args.limit, args.batch_size)
        ref = "-" if reference is None else f"{reference:.2f}"
        print(f"{name:<24}{file:<26}{n:>6}{acc:>9.2f}{ref:>11}{speed:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
