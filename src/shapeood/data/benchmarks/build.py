"""Checking and building: every absent file of a ``BenchmarkSpec`` first, then the datasets."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from shapeood import paths
from shapeood.data.benchmarks.spec import (
    OOD_GROUPS,
    Benchmark,
    BenchmarkSpec,
    MissingDataError,
    SourceSpec,
)
from shapeood.data.sources import (
    ArrayDataset,
    ImageFolderDataset,
    ImageListDataset,
    Transform,
    parse_imglist,
    torchvision_dataset,
)

OPENOOD_LIST_PREFIX = "benchmark_imglist/"


def resolve(root: Path, location: str) -> Path:
    """``location`` itself when absolute, else under ``root``."""
    path = Path(location).expanduser()
    return path if path.is_absolute() else root / path


def imglist_candidates(root: Path, location: str) -> list[Path]:
    """The list under the data root, then (for OpenOOD lists) the offline kit's copy."""
    candidates = [resolve(root, location)]
    if location.startswith(OPENOOD_LIST_PREFIX):
        kit_copy = paths.data_root() / "openood_imglists" / location[len(OPENOOD_LIST_PREFIX) :]
        if kit_copy not in candidates:
            candidates.append(kit_copy)
    return candidates


def find_imglist(root: Path, location: str) -> Path | None:
    """The first existing candidate of ``imglist_candidates``, or None."""
    return next((p for p in imglist_candidates(root, location) if p.is_file()), None)


def _missing_imglist(spec: SourceSpec, root: Path) -> list[str]:
    imglist = find_imglist(root, spec.location)
    image_root = resolve(root, spec.image_root or ".")
    if imglist is None:
        looked = " or ".join(str(p) for p in imglist_candidates(root, spec.location))
        return [f"{looked} (image list)"] + (
            [f"{image_root} (image folder)"] if not image_root.is_dir() else []
        )
    samples, _ = parse_imglist(imglist)
    folders = sorted({os.path.dirname(p) for p, _ in samples})
    tops = sorted({f.split("/")[0] for f in folders if f})
    missing_tops = [t for t in tops if not (image_root / t).is_dir()]
    missing = [f"{image_root / t} (images of {imglist.name})" for t in missing_tops]
    missing += [
        f"{image_root / f} (images of {imglist.name})"
        for f in folders
        if f and f.split("/")[0] not in missing_tops and not (image_root / f).is_dir()
    ]
    if not image_root.is_dir() and not missing:
        missing = [f"{image_root} (image folder of {imglist.name})"]
    return missing


def missing_for(spec: SourceSpec, root: Path) -> list[str]:
    """Every absent file/folder of one source (image folders of a list: per top folder)."""
    if spec.kind == "imglist":
        return _missing_imglist(spec, root)
    path = resolve(root, spec.location)
    if spec.kind == "npz":
        return [] if path.is_file() else [f"{path} (image archive)"]
    if spec.kind == "folder":
        return [] if path.is_dir() else [f"{path} (image folder)"]
    if not path.is_dir():
        return [f"{path} ({spec.dataset} folder for torchvision)"]
    return [f"{path / e} ({spec.dataset} file)" for e in spec.expect if not (path / e).exists()]


def _build_imglist(spec: SourceSpec, root: Path, name: str, transform: Transform | None) -> Any:
    imglist = find_imglist(root, spec.location)
    dataset = ImageListDataset(
        resolve(root, spec.image_root or "."),
        imglist,
        transform=transform,
        name=name,
        skip_bad=spec.skip_bad,
        label_override=spec.label_override,
    )
    listed = len(dataset) + dataset.num_skipped
    if spec.expected_lines is not None and listed != spec.expected_lines:
        warnings.warn(
            f"{imglist} lists {listed} images where the benchmark definition expects "
            f"{spec.expected_lines}: another version of the list? Results will not be "
            "comparable with published numbers",
            stacklevel=4,
        )
    return dataset


def build_source(spec: SourceSpec, root: Path, name: str, transform: Transform | None) -> Any:
    """The dataset of one source (files are assumed present: see ``missing_for``)."""
    if spec.kind == "imglist":
        return _build_imglist(spec, root, name, transform)
    path = resolve(root, spec.location)
    override = spec.label_override
    if spec.kind == "npz":
        return ArrayDataset(
            path, transform=transform, indices=spec.rows, name=name, label_override=override
        )
    if spec.kind == "folder":
        return ImageFolderDataset(
            path, transform=transform, name=name, label_override=override, skip_bad=spec.skip_bad
        )
    source = torchvision_dataset(
        spec.dataset or name, path, split=spec.split, transform=transform, label_override=override
    )
    source.name = name
    return source


def check_sources(spec: BenchmarkSpec, root: Path) -> list[str]:
    """``role/set`` of the absent optional sources; raises ``MissingDataError`` for required."""
    missing: list[str] = []
    skipped: list[str] = []
    for role, set_name, source in spec.roles():
        absent = missing_for(source, root)
        if absent and source.optional:
            skipped.append(f"{role}/{set_name}")
        else:
            missing += absent
    if missing:
        raise MissingDataError(spec.name, list(dict.fromkeys(missing)), str(root), spec.hint)
    return skipped


def build_benchmark(
    spec: BenchmarkSpec, data_root: str | os.PathLike | None = None, transform: Any = None
) -> Benchmark:
    """Check every source of ``spec`` under ``data_root``, then build the datasets.

    Missing required files raise ``MissingDataError`` listing all of them; missing optional
    sources (``id_train``, ``csid``) are left out and named in ``skipped_optional``.
    """
    root = Path(data_root).expanduser() if data_root is not None else paths.data_root()
    skipped = check_sources(spec, root)

    def make(role: str, set_name: str, source: SourceSpec | None) -> Any:
        if source is None or f"{role}/{set_name}" in skipped:
            return None
        return build_source(source, root, f"{spec.name}_{set_name}", transform)

    return Benchmark(
        spec=spec,
        id_test=make("id_test", "id_test", spec.id_test),
        id_val=make("id_val", "id_val", spec.id_val),
        ood_val=make("ood_val", "ood_val", spec.ood_val),
        id_train=make("id_train", "id_train", spec.id_train),
        ood={g: {n: make(g, n, s) for n, s in getattr(spec, g).items()} for g in OOD_GROUPS},
        csid={n: d for n, s in spec.csid.items() if (d := make("csid", n, s)) is not None},
        skipped_optional=skipped,
    )
