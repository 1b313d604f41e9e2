"""``shapeood extract``: features and logits of one model on one dataset, into the cache."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from shapeood.cli._options import add_model_options, add_options, cache_arg, model_from_args
from shapeood.paths import data_root

DESCRIPTION = """\
Run a model once over a dataset and cache its pooled penultimate features and logits.
Later evaluations of every method reuse the cache. Interrupted runs resume where they stopped.

--data is one of:
  a kit archive name or path   cifar10_test, mnist_test.npz, /path/to/images.npz
  an OpenOOD image list        test_cifar10.txt, its paths relative to --data-root
  an image folder              root/<class>/<image> (classes sorted by name)
"""

EPILOG = """\
examples:
  shapeood extract --model resnet20_cifar10 --data cifar10_test
  shapeood extract --model torchvision:resnet50 --weights DEFAULT \\
      --data imglists/test_imagenet.txt --data-root images_largescale --device cuda --amp
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="extract features and logits of a model on a dataset (cached)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser)
    parser.add_argument("--data", required=True, help="kit archive, image list or folder")
    parser.add_argument("--resize", type=int, help="shorter side before the crop (model default)")
    parser.add_argument("--crop", type=int, help="center crop size (model default)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bf16 CPU, fp16 CUDA)")
    add_options(
        parser, "device", "batch_size", "workers", "cache_dir", "data_root", "skip_bad",
        aliases={"data_root": ("--root",)},
    )  # fmt: skip
    parser.add_argument("--no-cache", action="store_true", help="compute without the cache")
    parser.add_argument("--refresh", action="store_true", help="recompute even if cached")
    parser.add_argument("--save", help="also write the feature set to this folder")
    add_options(parser, "quiet", "debug")
    parser.set_defaults(func=run)


def resolve_dataset(
    spec: str, transform: Any, root: str | None = None, skip_bad: bool = False
) -> Any:
    """A dataset from a kit archive name/path, an image list (+ root) or an image folder.

    ``root`` (``--data-root``) is where an image list's paths and kit names start from; it
    defaults to the offline kit folder.
    """
    from shapeood import data

    path = Path(spec).expanduser()
    if spec.endswith(".txt"):
        if root is None:
            raise ValueError(
                f"--data {spec} is an image list: give --data-root, the folder its paths start from"
            )
        return data.ImageListDataset(root, path, transform=transform, skip_bad=skip_bad)
    if path.is_dir():
        return data.ImageFolderDataset(path, transform=transform, skip_bad=skip_bad)
    if path.suffix == ".npz" and path.exists():
        return data.ArrayDataset(path, transform=transform)
    folder = Path(root).expanduser() if root else data_root()
    kit = folder / (spec if spec.endswith(".npz") else f"{spec}.npz")
    if kit.exists():
        return data.ArrayDataset(kit, transform=transform)
    raise ValueError(
        f"cannot resolve --data {spec!r}: not a .npz file, an image list (.txt), a folder, or "
        f"an archive in {folder} (give --data-root or set SHAPEOOD_DATA to the kit folder)"
    )


def run(args: argparse.Namespace) -> int:
    from shapeood.features import extract, save_featureset
    from shapeood.models import adapt, transform_for

    model = adapt(model_from_args(args))
    transform = transform_for(model, resize=args.resize, crop=args.crop)
    dataset = resolve_dataset(args.data, transform, args.data_root, args.skip_bad)
    cache: Any = cache_arg(args)
    fs = extract(
        model,
        dataset,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        num_workers=args.workers,
        cache=cache,
        progress=not args.quiet,
        refresh=args.refresh,
    )
    print(f"model    {fs.meta.get('model')} (split at {fs.meta.get('layer') or '?'})")
    print(f"dataset  {fs.meta.get('dataset')}")
    print(f"N        {len(fs)}")
    print(f"D        {fs.features.shape[1]}")
    print(f"classes  {fs.logits.shape[1]}")
    if bool((fs.labels >= 0).any()):
        print(f"accuracy {100 * fs.accuracy():.2f}%")
    print(f"key      {fs.meta.get('key') or '(not cached)'}")
    print(f"cache    {fs.meta.get('path') or '(not cached)'}")
    if args.save:
        print(f"saved    {save_featureset(fs, args.save)}")
    return 0
