"""``shapeood predict``: class, score and OOD flag for images, from a ``.sood`` detector file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shapeood.cli._options import add_options

DESCRIPTION = """\
Run a detector file written by 'shapeood fit-detector' (or OODClassifier.save) on images and
write one row per image: path, label, class_name, score (higher = more in-distribution), is_ood.

IMAGES are image files, folders (searched recursively), OpenOOD image lists (.txt, paths
relative to --data-root, default the list's folder) or .npz archives (rows named FILE[i]).
"""

EPILOG = """\
examples:
  shapeood predict detector.sood photo.jpg more_photos/
  shapeood predict detector.sood mnist_test.npz --format jsonl --out mnist.jsonl
"""

COLUMNS = ("path", "label", "class_name", "score", "is_ood")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="class, OOD score and OOD flag of images, from a .sood detector file",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("detector", metavar="DETECTOR", help="a .sood file (fit-detector)")
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="files, folders, lists, npz")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv",
                        help="csv (default) or JSON lines")  # fmt: skip
    parser.add_argument("--out", metavar="FILE", help="write the rows here (default stdout)")
    add_options(parser, "device", "batch_size", "workers", "data_root", "quiet", "debug")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import csv
    import json

    from torch.utils.data import DataLoader

    from shapeood import progress
    from shapeood.data import BadImageError
    from shapeood.deploy import OODClassifier
    from shapeood.deploy.inputs import collect_images

    clf = OODClassifier.load(args.detector, device=args.device)
    inputs = collect_images(args.images, args.data_root, transform=clf.transform)
    from shapeood.features.extraction import default_num_workers

    workers = args.workers
    if workers is None:
        workers = default_num_workers(inputs, batch_size=args.batch_size)
    loader = DataLoader(inputs, batch_size=args.batch_size, num_workers=workers)
    handle = open(args.out, "w", newline="") if args.out else sys.stdout
    n_ood = 0
    try:
        writer = csv.writer(handle) if args.format == "csv" else None
        if writer is not None:
            writer.writerow(COLUMNS)
        with progress.bar(len(inputs), "predict") as bar:
            for images, rows in _batches(loader, BadImageError):
                out = clf.predict(images)
                n_ood += int(out.is_ood.sum())
                for row, record in zip(rows.tolist(), out.to_records(), strict=True):
                    values = {"path": inputs.names[row], **record}
                    if writer is not None:
                        writer.writerow([values["path"], values["label"],
                                         values["class_name"] or "", f"{values['score']:.6g}",
                                         int(values["is_ood"])])  # fmt: skip
                    else:
                        handle.write(json.dumps(values) + "\n")
                bar.update(len(rows))
    finally:
        if args.out:
            handle.close()
    progress.stage(f"{n_ood} of {len(inputs)} images flagged OOD (threshold {clf.threshold_:.6g})")
    return 0


def _batches(loader: Any, bad_image: type[Exception]) -> Any:
    """The loader's batches; an unreadable image becomes a one-line ``ValueError``."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except bad_image as err:
            raise ValueError(str(err)) from err
        yield batch
