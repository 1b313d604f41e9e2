"""User benchmarks from YAML or TOML files: ``load_benchmark_file`` and ``spec_from_mapping``.

A file holds ``name``, ``family`` (``cifar``, ``imagenet`` or ``custom``, the default: which
method presets apply), ``num_classes``, ``resize`` (default 32), ``crop`` (default = resize),
``fpr_convention`` (default ``openood``), ``protocol``, ``description``, ``data_root``,
``id: {test, val, train}``, ``ood: {val, near: {name: source}, far: {name: source}}`` (or
``ood: {name: source}``, all far) and ``csid: {name: source}``. A source is one of
``{npz: file, rows: [...]}``, ``{imglist: file, root: folder}``, ``{folder: dir}``,
``{torchvision: cifar10, root: dir, split: test}``; OOD sources get label -1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from shapeood.data.benchmarks.build import build_benchmark, build_source, missing_for
from shapeood.data.benchmarks.spec import (
    SOURCE_KINDS,
    Benchmark,
    BenchmarkSpec,
    MissingDataError,
    SourceSpec,
)

SOURCE_KEYS = {*SOURCE_KINDS, "root", "rows", "indices", "split", "label_override", "skip_bad"}


def _read_mapping(path: Path) -> dict[str, Any]:
    from shapeood.errors import BadFileError

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise BadFileError(f"{path}: not a UTF-8 text file ({err.reason})", path) from err
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError as err:  # Python 3.10
            raise ValueError("TOML benchmark files need Python 3.11+ (tomllib)") from err
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise BadFileError(f"{path}: TOML syntax error: {err}", path) from err
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BadFileError(f"{path}{where}: YAML syntax error: {problem}", path) from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a benchmark file must hold a mapping, got {type(data).__name__}")
    return data


def _source_from_mapping(entry: Any, where: str, ood: bool) -> SourceSpec:
    if isinstance(entry, str):
        entry = {"npz": entry} if entry.endswith(".npz") else {"folder": entry}
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: a source is a mapping such as {{npz: file.npz}}, got {entry!r}")
    kinds = [k for k in SOURCE_KINDS if k in entry]
    if len(kinds) != 1:
        raise ValueError(
            f"{where}: give exactly one of {', '.join(SOURCE_KINDS)} (got keys {sorted(entry)})"
        )
    kind = kinds[0]
    unknown = sorted(set(entry) - SOURCE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(SOURCE_KEYS)}")
    rows = entry.get("rows", entry.get("indices"))
    override = entry.get("label_override", -1 if ood else None)
    if kind == "torchvision":
        return SourceSpec(
            "torchvision",
            entry.get("root", "."),
            dataset=str(entry["torchvision"]),
            split=str(entry.get("split", "test")),
            label_override=override,
        )
    if kind == "imglist" and "root" not in entry:
        raise ValueError(f"{where}: an imglist source needs 'root' (the folder its paths start in)")
    return SourceSpec(
        kind,
        str(entry[kind]),
        image_root=str(entry["root"]) if kind == "imglist" else None,
        rows=None if rows is None else tuple(int(r) for r in rows),
        label_override=override,
        skip_bad=bool(entry.get("skip_bad", False)),
    )


def _ood_groups(ood_part: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if "near" in ood_part or "far" in ood_part:
        return {g: dict(ood_part.get(g) or {}) for g in ("near", "far")}
    return {"near": {}, "far": {k: v for k, v in ood_part.items() if k != "val"}}


def spec_from_mapping(data: Mapping[str, Any], name: str = "custom") -> BenchmarkSpec:
    """A ``BenchmarkSpec`` from a parsed YAML/TOML mapping (keys: see the module docstring)."""
    where = f"benchmark {data.get('name', name)!r}"
    id_part = data.get("id")
    if not isinstance(id_part, dict) or "test" not in id_part:
        raise ValueError(f"{where}: needs an 'id' section with at least 'test'")
    ood_part = data.get("ood")
    if not isinstance(ood_part, dict) or not ood_part:
        raise ValueError(f"{where}: needs an 'ood' section naming at least one OOD dataset")
    groups = _ood_groups(ood_part)

    def src(entry: Any, label: str, ood: bool) -> SourceSpec:
        return _source_from_mapping(entry, f"{where} {label}", ood)

    def role(part: Mapping[str, Any], key: str, label: str, ood: bool) -> SourceSpec | None:
        return src(part[key], label, ood) if key in part else None

    resize = int(data.get("resize", 32))
    return BenchmarkSpec(
        name=str(data.get("name", name)),
        family=str(data.get("family", "custom")),  # type: ignore[arg-type]
        protocol=str(data.get("protocol", "openood")),  # type: ignore[arg-type]
        fpr_convention=str(data.get("fpr_convention", "openood")),  # type: ignore[arg-type]
        resize=resize,
        crop=int(data.get("crop", resize)),
        num_classes=int(data.get("num_classes", 0)),
        id_test=src(id_part["test"], "id.test", False),
        id_val=role(id_part, "val", "id.val", False),
        id_train=role(id_part, "train", "id.train", False),
        ood_val=role(ood_part, "val", "ood.val", True),
        near={k: src(v, f"ood.near.{k}", True) for k, v in groups["near"].items()},
        far={k: src(v, f"ood.far.{k}", True) for k, v in groups["far"].items()},
        csid={k: src(v, f"csid.{k}", False) for k, v in (data.get("csid") or {}).items()},
        description=str(data.get("description", "")),
    )


def load_benchmark_file(path: str | os.PathLike, transform: Any = None) -> Benchmark:
    """Build a benchmark described by a YAML or TOML file (see ``spec_from_mapping``).

    Relative paths are resolved against the file's ``data_root`` key, itself relative to the
    file's folder (default: the file's folder).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    data = _read_mapping(path)
    spec = spec_from_mapping(data, name=path.stem)
    root = path.parent / str(data.get("data_root", "."))
    if spec.num_classes <= 0:
        spec = replace(spec, num_classes=_infer_num_classes(spec, root))
    return build_benchmark(spec, root, transform)


def _infer_num_classes(spec: BenchmarkSpec, root: Path) -> int:
    """``num_classes`` when the file does not say: 1 + the largest ID test label."""
    missing = missing_for(spec.id_test, root)
    if missing:
        raise MissingDataError(spec.name, missing, str(root))
    labels = build_source(spec.id_test, root, "id_test", None).labels
    return int(labels.max()) + 1
