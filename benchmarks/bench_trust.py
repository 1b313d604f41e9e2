"""What trust costs: the weights digest, checksum verification and file fingerprints.

Ratios against plain baselines measured in the same run:

* weights digest of a ResNet-50 state dict vs extracting a batch of images with ResNet-50;
* CRC-32 verification of a cached 50,000 x 2,048 float32 feature array vs a memory-mapped
  (unverified) open and vs reading it into memory;
* fingerprint of an image folder: first time (reads every file) vs again (stat + lookup).

    python benchmarks/bench_trust.py [--images 64] [--files 2000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images for the extraction")
    parser.add_argument("--files", type=int, default=2000, help="files for the fingerprint")
    args = parser.parse_args()
    import torchvision

    from shapeood.data.content import file_digests
    from shapeood.features import extract
    from shapeood.features.keys import weights_hash
    from shapeood.features.store import load_arrays, save_arrays

    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}")
    net = torchvision.models.resnet50(num_classes=1000).eval()
    n_params = sum(p.numel() for p in net.parameters())
    digest_s = _best(lambda: weights_hash(net))
    images = torch.rand(args.images, 3, 224, 224)
    data = torch.utils.data.TensorDataset(images, torch.zeros(args.images, dtype=torch.long))
    t0 = time.perf_counter()
    extract(net, data, batch_size=32, cache=False, progress=False)
    extract_s = time.perf_counter() - t0
    per_image = extract_s / args.images
    print(f"weights digest, ResNet-50 ({n_params / 1e6:.1f} M params): {digest_s:.3f} s")
    print(f"extraction, {args.images} images at 224 px on this CPU: {extract_s:.2f} s "
          f"({per_image * 1e3:.0f} ms/image)")
    print(f"  digest / extraction of {args.images} images: {digest_s / extract_s:.2%}")
    for n in (1_000, 10_000, 50_000):
        print(f"  digest / extraction of {n} images (same CPU): {digest_s / (per_image * n):.3%}")

    with tempfile.TemporaryDirectory() as tmp:
        features = np.random.default_rng(0).standard_normal((50_000, 2048), dtype=np.float32)
        folder = Path(tmp) / "entry"
        save_arrays(folder, {"features": features}, {"kind": "bench"})
        del features
        import shapeood.features.store as store

        def verified():
            store._verified.clear()
            load_arrays(folder, mmap=True, verify=True)

        mmap_s = _best(lambda: load_arrays(folder, mmap=True, verify=False))
        verify_s = _best(verified)
        read_s = _best(lambda: np.load(folder / "features.npy"))
        print(f"cached 50,000 x 2,048 float32 (400 MB): mmap open {mmap_s * 1e3:.1f} ms, "
              f"open + verify {verify_s:.3f} s, np.load into memory {read_s:.3f} s")
        print(f"  verification / in-memory read: {verify_s / read_s:.0%}; "
              f"verification / 50,000-image extraction (this CPU): "
              f"{verify_s / (per_image * 50_000):.4%}")

        root = Path(tmp) / "imgs"
        root.mkdir()
        rng = np.random.default_rng(1)
        paths = []
        for i in range(args.files):
            p = root / f"{i:06d}.jpg"
            p.write_bytes(rng.integers(0, 256, 110_000 // 10, dtype=np.uint8).tobytes())
            paths.append(p)
        os.environ["SHAPEOOD_CACHE"] = str(Path(tmp) / "cache")
        import shapeood.data.content as content

        t0 = time.perf_counter()
        file_digests(paths)
        first_s = time.perf_counter() - t0
        content._memo.clear()  # a new process: only the on-disk memory is left
        t0 = time.perf_counter()
        file_digests(paths)
        again_s = time.perf_counter() - t0
        print(f"fingerprint of {args.files} files of 11 kB: first {first_s:.3f} s, "
              f"again (new process) {again_s:.3f} s = {again_s / args.files * 1e6:.1f} us/file "
              f"-> {again_s / args.files * 1.28e6:.0f} s for 1.28 M files")


if __name__ == "__main__":
    main()
