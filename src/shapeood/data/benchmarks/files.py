"""User benchmarks from YAML or TOML files: strict reading, checking and building.

The schema (every key, its type and default) is ``TOP_KEYS`` / ``SOURCE_KEYS`` below and
``docs/benchmarks.md``. In short: ``name``, ``description``, ``family`` (``cifar``, ``imagenet``
or ``custom``), ``protocol``, ``fpr_convention``, ``num_classes``, ``resize``, ``crop``,
``data_root``, ``id: {test, val, train}``, ``ood: {val, near: {NAME: SOURCE}, far: {...}}``
(or ``ood: {NAME: SOURCE}``, all far) and ``csid: {NAME: SOURCE}``. A source is one of
``{npz: FILE, rows: [...]}``, ``{imglist: FILE, root: DIR}``, ``{folder: DIR}`` or
``{torchvision: NAME, root: DIR, split: test}`` (a plain string is ``npz`` when it ends in
``.npz``, else ``folder``); OOD sources get label -1.

Every key is checked: an unknown key at any level is an error with a did-you-mean, every value's
type is checked, and errors name the YAML key (``ood.far.mnist.rows``), never a Python parameter.
Relative paths resolve against ``data_root`` in the file (itself relative to the file's folder),
else the ``data_root`` argument (``--data-root``), else the file's folder; ``kit:FILE`` means a
file of the offline kit (``$SHAPEOOD_DATA``) wherever a path is expected.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shapeood import paths
from shapeood._types import CONVENTIONS, FAMILIES
from shapeood.data.benchmarks.build import (
    build_benchmark,
    build_source,
    find_imglist,
    missing_for,
    resolve,
)
from shapeood.data.benchmarks.spec import (
    PROTOCOLS,
    SOURCE_KINDS,
    Benchmark,
    BenchmarkSpec,
    MissingDataError,
    SourceSpec,
)
from shapeood.errors import ShapeoodError

KIT_PREFIX = "kit:"

# key -> (type text, default text, description); the order is the documented order.
TOP_KEYS: dict[str, tuple[str, str, str]] = {
    "name": ("string", "the file name without suffix", "the benchmark's name in reports"),
    "description": ("string", '""', "one line shown by 'shapeood benchmark check'"),
    "family": (
        "cifar | imagenet | custom",
        "custom",
        "which method presets apply (e.g. ASH-S@95 for cifar, @90 for imagenet)",
    ),
    "protocol": ("openood | classic", "openood", "how results are laid out and named"),
    "fpr_convention": (
        "openood | classic | nearest",
        "openood",
        "the FPR@95 convention of the main column",
    ),
    "num_classes": ("integer >= 1", "1 + the largest id.test label", "classes of the ID task"),
    "resize": ("integer >= 1", "32", "shorter image side before the centre crop"),
    "crop": ("integer >= 1, <= resize", "resize", "centre-crop size fed to the model"),
    "data_root": (
        "path",
        "--data-root, else the file's folder",
        "folder relative paths start from (relative to the file's folder)",
    ),
    "id": ("mapping: test, val, train", "required (test)", "the in-distribution sets"),
    "ood": (
        "mapping: val, near, far (or NAME: SOURCE)",
        "required (one set)",
        "the OOD sets, in OpenOOD's near/far groups",
    ),
    "csid": ("mapping NAME: SOURCE", "none", "covariate-shifted ID sets (scored as ID)"),
}
ID_KEYS = {
    "test": "ID test set (required)",
    "val": "ID validation set: APS (--aps) and ReAct/LHAct fitting",
    "train": "ID training subset: DICE/HIMPLoS fitting",
}
OOD_KEYS = {
    "val": "OOD validation set for APS",
    "near": "near-OOD sets, NAME: SOURCE",
    "far": "far-OOD sets, NAME: SOURCE",
}
SOURCE_KEYS: dict[str, tuple[str, str, str]] = {
    "npz": ("path", "", "an archive with uint8 'images' (N, H, W[, 3]) and 'labels' (N,)"),
    "imglist": ("path", "", "an OpenOOD image list: one 'relative/path.jpg LABEL' per line"),
    "folder": ("path", "", "an image folder root/CLASS/IMAGE (classes sorted by name)"),
    "torchvision": ("string", "", "a torchvision dataset name (cifar10, svhn, ...), no download"),
    "root": (
        "path",
        "required for imglist; '.' for torchvision",
        "imglist: folder the listed paths start from; torchvision: its root folder",
    ),
    "rows": ("list of integers >= 0", "every row", "npz only: the rows to use (alias: indices)"),
    "indices": ("list of integers >= 0", "every row", "alias of rows"),
    "split": ("string", "test", "torchvision only: the split"),
    "label_override": (
        "integer",
        "-1 for OOD sets, none for ID",
        "a label given to every image",
    ),
    "skip_bad": ("boolean", "false", "skip unreadable images instead of stopping"),
}
KIND_ONLY = {"rows": ("npz",), "indices": ("npz",), "split": ("torchvision",)}


class BenchmarkFileError(ShapeoodError):
    """A benchmark file breaks the schema; the message names the file and the YAML key."""


# ----------------------------------------------------------------------------- checking helpers


def _fail(where: str, key: str, message: str) -> BenchmarkFileError:
    at = f"{key}: " if key else ""
    return BenchmarkFileError(f"{where}: {at}{message}")


def _did_you_mean(word: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(word), allowed, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_keys(where: str, path: str, given: Mapping[str, Any], allowed: list[str]) -> None:
    for key in given:
        if key not in allowed:
            hint = _did_you_mean(key, allowed)
            label = f"{path}.{key}" if path else str(key)
            raise _fail(
                where, label, f"unknown key{hint or ''} (allowed here: {', '.join(allowed)})"
            )


def _int(where: str, key: str, value: Any, minimum: int | None = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, key, f"expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(where, key, f"expected a number >= {minimum}, got {value}")
    return int(value)


def _str(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, key, f"expected a non-empty string, got {value!r}")
    return value


def _choice(where: str, key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        hint = _did_you_mean(str(value), list(allowed))
        raise _fail(where, key, f"must be one of {', '.join(allowed)}, got {value!r}{hint}")
    return str(value)


def _mapping(where: str, key: str, value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, key, f"expected {what}, got {type(value).__name__} {value!r}")
    return value


# ----------------------------------------------------------------------------- paths


def kit_path(value: str) -> str:
    """``kit:FILE`` -> the file in the offline kit; anything else unchanged."""
    if value.startswith(KIT_PREFIX):
        return str((paths.data_root() / value[len(KIT_PREFIX) :]).resolve())
    return value


# ----------------------------------------------------------------------------- sources


def _source(where: str, key: str, entry: Any, ood: bool) -> SourceSpec:
    """One source (see ``SOURCE_KEYS``); ``key`` is its YAML path for messages."""
    if isinstance(entry, str):
        entry = {"npz": entry} if entry.endswith(".npz") else {"folder": entry}
    entry = _mapping(where, key, entry, "a source such as {npz: file.npz}")
    kinds = [k for k in SOURCE_KINDS if k in entry]
    if not kinds:
        unknown = [k for k in entry if k not in SOURCE_KEYS]
        hint = _did_you_mean(unknown[0], list(SOURCE_KINDS)) if unknown else ""
        groups = _did_you_mean(key.rsplit(".", 1)[-1], ["near", "far", "val"]) if ood else ""
        extra = f" (is {key.rsplit('.', 1)[-1]!r} a group? {groups[2:]})" if groups else ""
        raise _fail(
            where, key,
            f"not a source: give one of {', '.join(SOURCE_KINDS)} (got keys "
            f"{', '.join(map(str, entry)) or 'none'}){hint}{extra}",
        )  # fmt: skip
    if len(kinds) > 1:
        raise _fail(where, key, f"give one of {', '.join(kinds)}, not several")
    kind = kinds[0]
    _check_keys(where, key, entry, list(SOURCE_KEYS))
    for option, only in KIND_ONLY.items():
        if option in entry and kind not in only:
            raise _fail(where, f"{key}.{option}", f"applies only to {' and '.join(only)} sources")
    if "rows" in entry and "indices" in entry:
        raise _fail(where, f"{key}.indices", "give rows or indices, not both")
    location = _str(where, f"{key}.{kind}", entry[kind])
    rows = None
    row_key = "rows" if "rows" in entry else "indices"
    if row_key in entry:
        value = entry[row_key]
        if not isinstance(value, list) or not value:
            raise _fail(where, f"{key}.{row_key}", f"expected a list of row numbers, got {value!r}")
        rows = tuple(_int(where, f"{key}.{row_key}", r, minimum=0) for r in value)
    override = entry.get("label_override", -1 if ood else None)
    if "label_override" in entry:
        override = _int(where, f"{key}.label_override", entry["label_override"], minimum=None)
    skip_bad = entry.get("skip_bad", False)
    if not isinstance(skip_bad, bool):
        raise _fail(where, f"{key}.skip_bad", f"expected true or false, got {skip_bad!r}")
    root = entry.get("root")
    if root is not None:
        root = kit_path(_str(where, f"{key}.root", root))
    if kind == "torchvision":
        split = _str(where, f"{key}.split", entry.get("split", "test"))
        return SourceSpec(
            "torchvision", root or ".", dataset=location, split=split, label_override=override
        )
    if kind == "imglist" and root is None:
        raise _fail(where, f"{key}.root", "an imglist source needs root: the folder its paths "
                    "start from")  # fmt: skip
    if kind != "imglist" and root is not None:
        raise _fail(where, f"{key}.root", f"applies to imglist and torchvision sources, not {kind}")
    source_kind: Any = kind
    return SourceSpec(
        source_kind,
        kit_path(location),
        image_root=root,
        rows=rows,
        label_override=override,
        skip_bad=skip_bad,
    )


def _named_sources(where: str, key: str, part: Any, ood: bool) -> dict[str, SourceSpec]:
    part = _mapping(where, key, part, "a mapping NAME: SOURCE")
    out = {}
    for name, entry in part.items():
        out[str(name)] = _source(where, f"{key}.{name}", entry, ood)
    return out


# ----------------------------------------------------------------------------- the file


def spec_from_mapping(
    data: Mapping[str, Any], name: str = "custom", where: str | None = None
) -> BenchmarkSpec:
    """A ``BenchmarkSpec`` from a parsed YAML/TOML mapping, checked key by key."""
    where = where or f"benchmark {data.get('name', name)!r}"
    data = _mapping(where, "", data, "a mapping of benchmark keys")
    _check_keys(where, "", data, list(TOP_KEYS))
    bench_name = _str(where, "name", data.get("name", name))
    resize = _int(where, "resize", data.get("resize", 32))
    crop = _int(where, "crop", data.get("crop", resize))
    if crop > resize:
        raise _fail(where, "crop", f"{crop} is larger than resize ({resize}): crop <= resize")
    num_classes = data.get("num_classes")
    if num_classes is not None:
        num_classes = _int(where, "num_classes", num_classes)
    if "data_root" in data:
        _str(where, "data_root", data["data_root"])
    if "description" in data and not isinstance(data["description"], str):
        raise _fail(where, "description", f"expected a string, got {data['description']!r}")

    if "id" not in data:
        raise _fail(where, "id", "missing: the in-distribution sets, at least id: {test: SOURCE}")
    id_part = _mapping(where, "id", data["id"], "a mapping with test (and val, train)")
    _check_keys(where, "id", id_part, list(ID_KEYS))
    if "test" not in id_part:
        raise _fail(where, "id.test", "missing: the ID test set")
    if "ood" not in data:
        raise _fail(where, "ood", "missing: at least one OOD set, e.g. ood: {far: {NAME: SOURCE}}")
    ood_part = _mapping(where, "ood", data["ood"], "a mapping with near/far groups (and val)")
    grouped = any(k in ood_part for k in ("near", "far"))
    if grouped:
        _check_keys(where, "ood", ood_part, list(OOD_KEYS))
        near = _named_sources(where, "ood.near", ood_part.get("near") or {}, True)
        far = _named_sources(where, "ood.far", ood_part.get("far") or {}, True)
    else:
        near = {}
        far = {
            str(k): _source(where, f"ood.{k}", v, True) for k, v in ood_part.items() if k != "val"
        }
    if not near and not far:
        raise _fail(where, "ood", "names no OOD test set: add ood.near or ood.far NAME: SOURCE")
    ood_val = _source(where, "ood.val", ood_part["val"], True) if "val" in ood_part else None

    def role(key: str) -> SourceSpec | None:
        return _source(where, f"id.{key}", id_part[key], False) if key in id_part else None

    family: Any = _choice(where, "family", data.get("family", "custom"), FAMILIES)
    protocol: Any = _choice(where, "protocol", data.get("protocol", "openood"), PROTOCOLS)
    convention: Any = _choice(
        where, "fpr_convention", data.get("fpr_convention", "openood"), CONVENTIONS
    )
    return BenchmarkSpec(
        name=bench_name,
        family=family,
        protocol=protocol,
        fpr_convention=convention,
        resize=resize,
        crop=crop,
        num_classes=num_classes or 0,
        id_test=_source(where, "id.test", id_part["test"], False),
        id_val=role("val"),
        id_train=role("train"),
        ood_val=ood_val,
        near=near,
        far=far,
        csid=_named_sources(where, "csid", data["csid"], False) if data.get("csid") else {},
        description=str(data.get("description", "")),
    )


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
        raise BenchmarkFileError(
            f"{path}: a benchmark file holds a mapping of keys (name, id, ood, ...), got "
            f"{type(data).__name__}"
        )
    return data


def file_root(path: Path, data: Mapping[str, Any], data_root: Any = None) -> Path:
    """Where relative paths of the file start: its ``data_root``, else ``data_root``, else the
    file's folder (a relative ``data_root`` in the file is relative to the file's folder)."""
    if data.get("data_root"):
        root = Path(kit_path(str(data["data_root"]))).expanduser()
        return root if root.is_absolute() else path.parent / root
    if data_root is not None:
        return Path(data_root).expanduser()
    return path.parent


def read_benchmark_file(
    path: str | os.PathLike, data_root: Any = None
) -> tuple[BenchmarkSpec, Path]:
    """The checked ``BenchmarkSpec`` of a file and the folder its relative paths start from."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    data = _read_mapping(path)
    spec = spec_from_mapping(data, name=path.stem, where=str(path))
    return spec, file_root(path, data, data_root)


def with_skip_bad(spec: BenchmarkSpec) -> BenchmarkSpec:
    """``spec`` with ``skip_bad`` on every image-file source (``--skip-bad``)."""

    def fix(source: SourceSpec | None) -> SourceSpec | None:
        return None if source is None else replace(source, skip_bad=True)

    return replace(
        spec,
        id_test=fix(spec.id_test),
        id_val=fix(spec.id_val),
        ood_val=fix(spec.ood_val),
        id_train=fix(spec.id_train),
        near={k: fix(v) for k, v in spec.near.items()},
        far={k: fix(v) for k, v in spec.far.items()},
        csid={k: fix(v) for k, v in spec.csid.items()},
    )


def load_benchmark_file(
    path: str | os.PathLike, transform: Any = None, data_root: Any = None, skip_bad: bool = False
) -> Benchmark:
    """Build the benchmark a YAML or TOML file describes (see the module docstring);
    ``skip_bad`` leaves unreadable images of every set out instead of stopping."""
    spec, root = read_benchmark_file(path, data_root)
    if skip_bad:
        spec = with_skip_bad(spec)
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


# ----------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class SetReport:
    """One set of a benchmark file as ``shapeood benchmark check`` shows it."""

    key: str  # YAML path: id.test, ood.far.mnist, csid.x
    role: str  # id_test, id_val, ood_val, id_train, near, far, csid
    kind: str
    location: str
    size: int | None  # images (None: unknown without loading)
    missing: tuple[str, ...]
    problem: str = ""


def _yaml_key(role: str, set_name: str) -> str:
    if role in ("near", "far"):
        return f"ood.{role}.{set_name}"
    if role == "csid":
        return f"csid.{set_name}"
    return {"id_test": "id.test", "id_val": "id.val", "id_train": "id.train"}.get(role, "ood.val")


def _size(source: SourceSpec, root: Path) -> tuple[int | None, str]:
    """Number of images without decoding any, and a problem found on the way."""
    import numpy as np

    path = resolve(root, source.location)
    if source.kind == "npz":
        with np.load(path, allow_pickle=False) as archive:
            if "labels" not in archive.files or "images" not in archive.files:
                return None, f"{path.name} lacks 'images' or 'labels' (has {archive.files})"
            total = int(archive["labels"].shape[0])
        if source.rows is not None:
            bad = [r for r in source.rows if r >= total]
            if bad:
                return len(source.rows), f"rows {bad[:5]} out of range: the archive has {total}"
            return len(source.rows), ""
        return total, ""
    if source.kind == "imglist":
        imglist = find_imglist(root, source.location)
        if imglist is None:
            return None, ""
        with open(imglist, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip()), ""
    if source.kind == "folder":
        from shapeood.data.sources import IMG_EXTENSIONS

        n = sum(
            1
            for p in path.rglob("*")
            if p.suffix.lower() in IMG_EXTENSIONS and p.parent != path and p.is_file()
        )
        return n, "" if n else f"no images in class sub-folders of {path}"
    return None, ""


def inspect_benchmark_file(
    path: str | os.PathLike, data_root: Any = None
) -> tuple[BenchmarkSpec, Path, list[SetReport]]:
    """Check a file without running a network: the spec, its root and one report per set."""
    spec, root = read_benchmark_file(path, data_root)
    reports = []
    for role, set_name, source in spec.roles():
        missing = tuple(missing_for(source, root))
        size, problem = (None, "") if missing else _size(source, root)
        location = source.location if source.kind == "torchvision" else str(
            resolve(root, source.location)
        )  # fmt: skip
        reports.append(
            SetReport(_yaml_key(role, set_name), role, source.kind, location, size, missing,
                      problem)
        )  # fmt: skip
    return spec, root, reports


TEMPLATE = """\
# A shapeood benchmark file (reference: docs/benchmarks.md).
# Check it with:   shapeood benchmark check THIS_FILE
# Evaluate with:   shapeood eval --benchmark THIS_FILE --model resnet20_cifar10
name: my_benchmark
description: my classifier's data against two OOD sets
family: cifar            # cifar | imagenet | custom: which method presets apply
fpr_convention: openood  # openood | classic | nearest
# num_classes: 10        # default: 1 + the largest id.test label
resize: 32               # shorter side before the centre crop
crop: 32                 # centre crop fed to the model (<= resize)
# data_root: data        # where relative paths start (default: --data-root, else this folder)

id:
  test: {npz: kit:cifar10_test.npz, rows: [0, 1, 2, 3, 4, 5, 6, 7]}  # kit: = offline kit
  # val:   {npz: id_val.npz}                    # for --aps and ReAct/LHAct fitting
  # train: {folder: train_images}               # for DICE/HIMPLoS fitting (class folders)

ood:
  # val: {imglist: ood_val.txt, root: images}   # for --aps (with id.val)
  near:
    tin: {npz: kit:tinyimagenet_val_32.npz}
  far:
    mnist: {npz: kit:mnist_test.npz}
    # textures: {folder: dtd/images}            # image folder: root/CLASS/IMAGE
    # svhn: {torchvision: svhn, root: torchvision_data, split: test}

# csid:                                          # covariate-shifted ID sets (scored as ID)
#   cifar10c: {imglist: cifar10c.txt, root: images}
"""
