"""Benchmarks: which datasets play which role, how images are preprocessed, which FPR is reported.

Built-ins:

* OpenOOD v1.5 ``"cifar10"``, ``"cifar100"``, ``"imagenet200"``, ``"imagenet"``: read from OpenOOD's
  layout under the data root - lists in ``benchmark_imglist/<benchmark>/`` (falling back to the
  offline kit's ``openood_imglists/<benchmark>/``), images in ``images_classic/`` or
  ``images_largescale/``. FPR convention ``openood``; near/far groups as OpenOOD.
* Classic suites ``"imagenet_classic"`` (iNaturalist, SUN, Places, Textures) and
  ``"cifar_classic"`` / ``"cifar100_classic"`` (SVHN, LSUN-C, LSUN-R, iSUN, Textures, Places365),
  from folders laid out as in the ReAct / DICE / ASH repositories. FPR convention ``classic``.
* ``"cifar10_offline"``: the offline kit (CIFAR-10 JPEG copy vs TinyImageNet, MNIST, Textures).

User benchmarks come from YAML or TOML files (``load_benchmark_file``). Building a benchmark
checks every file and folder first and raises ``MissingDataError`` listing all that are absent.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from shapeood import paths
from shapeood.data.sources import (
    ArrayDataset,
    ImageFolderDataset,
    ImageListDataset,
    Transform,
    parse_imglist,
    torchvision_dataset,
)

PROTOCOLS = ("openood", "classic")
FPR_CONVENTIONS = ("openood", "classic", "nearest")
SOURCE_KINDS = ("imglist", "npz", "folder", "torchvision")


class MissingDataError(FileNotFoundError):
    """Files or folders a benchmark needs are absent; ``.missing`` lists every one."""

    def __init__(self, benchmark: str, missing: list[str], looked_in: str, hint: str = "") -> None:
        self.benchmark = benchmark
        self.missing = list(missing)
        shown = "\n  ".join(self.missing[:60])
        more = f"\n  ... and {len(self.missing) - 60} more" if len(self.missing) > 60 else ""
        super().__init__(
            f"benchmark {benchmark!r}: {len(self.missing)} file(s)/folder(s) missing "
            f"(looked under {looked_in}):\n  {shown}{more}\n"
            + (hint or "Download the data, or pass data_root= (or set SHAPEOOD_DATA).")
        )


# ----------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class SourceSpec:
    """Where one dataset comes from.

    ``kind``: ``"imglist"`` (``location`` = list file, ``image_root`` = folder its paths are
    relative to), ``"npz"`` (``location`` = archive, ``rows`` = optional subset), ``"folder"``
    (``location`` = ImageFolder root) or ``"torchvision"`` (``location`` = torchvision root,
    ``dataset`` and ``split``; ``expect`` = files that must exist there). Relative paths are
    resolved under the data root. ``expected_lines`` records the published size of a list.
    """

    kind: str
    location: str
    image_root: str | None = None
    label_override: int | None = None
    expected_lines: int | None = None
    rows: tuple[int, ...] | None = None
    dataset: str | None = None
    split: str = "test"
    expect: tuple[str, ...] = ()
    skip_bad: bool = False
    optional: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind must be one of {', '.join(SOURCE_KINDS)}: {self.kind!r}")


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark's declaration: roles -> ``SourceSpec``; built by ``build_benchmark``."""

    name: str
    protocol: str
    fpr_convention: str
    resize: int
    crop: int
    num_classes: int
    id_test: SourceSpec
    id_val: SourceSpec | None = None
    ood_val: SourceSpec | None = None
    near: Mapping[str, SourceSpec] = field(default_factory=dict)
    far: Mapping[str, SourceSpec] = field(default_factory=dict)
    id_train: SourceSpec | None = None
    csid: Mapping[str, SourceSpec] = field(default_factory=dict)
    description: str = ""
    hint: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.fpr_convention not in FPR_CONVENTIONS:
            raise ValueError(
                f"fpr_convention must be one of {FPR_CONVENTIONS}, got {self.fpr_convention!r}"
            )
        if not self.near and not self.far:
            raise ValueError(f"benchmark {self.name!r} has no OOD dataset")

    def roles(self) -> Iterator[tuple[str, str, SourceSpec]]:
        """``(role, dataset name, spec)`` for every declared source."""
        yield "id_test", "id_test", self.id_test
        for role in ("id_val", "ood_val", "id_train"):
            spec = getattr(self, role)
            if spec is not None:
                yield role, role, spec
        for group in ("near", "far", "csid"):
            for set_name, spec in getattr(self, group).items():
                yield group, set_name, spec


# ----------------------------------------------------------------------------- the result


@dataclass
class Benchmark:
    """Datasets by role, preprocessing and the FPR convention to report.

    ``ood`` = ``{"near": {name: dataset}, "far": {...}}``. ``id_val`` / ``ood_val`` feed the
    hyperparameter search; ``id_train`` (optional) feeds methods that fit on ID features;
    ``csid`` (optional) are covariate-shifted ID sets. ``resize`` / ``crop``: Resize(shorter side)
    then CenterCrop, as the benchmark's evaluation transform.
    """

    name: str
    protocol: str
    fpr_convention: str
    resize: int
    crop: int
    num_classes: int
    id_test: Any
    ood: dict[str, dict[str, Any]]
    id_val: Any = None
    ood_val: Any = None
    id_train: Any = None
    csid: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    skipped_optional: list[str] = field(default_factory=list)

    def ood_datasets(self) -> dict[str, Any]:
        """Every OOD test set by name (near first, then far)."""
        return {n: d for group in ("near", "far") for n, d in self.ood.get(group, {}).items()}

    def group_of(self, set_name: str) -> str:
        """``"near"`` or ``"far"`` for an OOD test set."""
        for group, sets in self.ood.items():
            if set_name in sets:
                return group
        raise KeyError(f"{set_name!r} is no OOD set of {self.name!r}: {list(self.ood_datasets())}")

    def datasets(self) -> Iterator[tuple[str, str, Any]]:
        """``(role, key, dataset)`` for every dataset present.

        ``key`` is the set's name within its group (``"tin"``, ``"mnist"``) for OOD and csid
        sets, and the role itself (``"id_test"``, ``"id_val"``, ...) for the single roles.
        """
        yield "id_test", "id_test", self.id_test
        for role in ("id_val", "ood_val", "id_train"):
            dataset = getattr(self, role)
            if dataset is not None:
                yield role, role, dataset
        for group, sets in self.ood.items():
            for set_name, dataset in sets.items():
                yield group, set_name, dataset
        for set_name, dataset in self.csid.items():
            yield "csid", set_name, dataset

    def set_transform(self, transform: Transform | None) -> Benchmark:
        """Give every dataset the same ``transform``; returns ``self``."""
        for _, _, dataset in self.datasets():
            dataset.transform = transform
        return self

    def __repr__(self) -> str:
        groups = ", ".join(f"{g}={list(s)}" for g, s in self.ood.items())
        return (
            f"Benchmark({self.name!r}, protocol={self.protocol!r}, "
            f"fpr={self.fpr_convention!r}, id_test={len(self.id_test)}, {groups})"
        )


# ----------------------------------------------------------------------------- building


def _resolve(root: Path, location: str) -> Path:
    path = Path(location).expanduser()
    return path if path.is_absolute() else root / path


def _imglist_candidates(root: Path, location: str) -> list[Path]:
    """The list under the data root, then (for OpenOOD lists) the offline kit's copy."""
    candidates = [_resolve(root, location)]
    prefix = "benchmark_imglist/"
    if location.startswith(prefix):
        kit_copy = paths.data_root() / "openood_imglists" / location[len(prefix) :]
        if kit_copy not in candidates:
            candidates.append(kit_copy)
    return candidates


def _find_imglist(root: Path, location: str) -> Path | None:
    return next((p for p in _imglist_candidates(root, location) if p.is_file()), None)


def _missing_for(spec: SourceSpec, root: Path) -> list[str]:
    """Every absent file/folder of one source (image folders of a list: per top folder)."""
    if spec.kind == "imglist":
        imglist = _find_imglist(root, spec.location)
        image_root = _resolve(root, spec.image_root or ".")
        if imglist is None:
            looked = " or ".join(str(p) for p in _imglist_candidates(root, spec.location))
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
    path = _resolve(root, spec.location)
    if spec.kind == "npz":
        return [] if path.is_file() else [f"{path} (image archive)"]
    if spec.kind == "folder":
        return [] if path.is_dir() else [f"{path} (image folder)"]
    if not path.is_dir():
        return [f"{path} ({spec.dataset} folder for torchvision)"]
    return [f"{path / e} ({spec.dataset} file)" for e in spec.expect if not (path / e).exists()]


def _build_source(spec: SourceSpec, root: Path, name: str, transform: Transform | None) -> Any:
    if spec.kind == "imglist":
        imglist = _find_imglist(root, spec.location)
        dataset = ImageListDataset(
            _resolve(root, spec.image_root or "."),
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
                stacklevel=3,
            )
        return dataset
    path = _resolve(root, spec.location)
    if spec.kind == "npz":
        return ArrayDataset(
            path,
            transform=transform,
            indices=spec.rows,
            name=name,
            label_override=spec.label_override,
        )
    if spec.kind == "folder":
        return ImageFolderDataset(
            path,
            transform=transform,
            name=name,
            label_override=spec.label_override,
            skip_bad=spec.skip_bad,
        )
    source = torchvision_dataset(
        spec.dataset or name,
        path,
        split=spec.split,
        transform=transform,
        label_override=spec.label_override,
    )
    source.name = name
    return source


def build_benchmark(
    spec: BenchmarkSpec, data_root: str | os.PathLike | None = None, transform: Any = None
) -> Benchmark:
    """Check every source of ``spec`` under ``data_root``, then build the datasets.

    Missing required files raise ``MissingDataError`` listing all of them; missing optional
    sources (``id_train``, ``csid``) are left out and named in ``skipped_optional``.
    """
    root = Path(data_root).expanduser() if data_root is not None else paths.data_root()
    missing: list[str] = []
    skipped: list[str] = []
    for role, set_name, source in spec.roles():
        absent = _missing_for(source, root)
        if absent and source.optional:
            skipped.append(f"{role}/{set_name}")
        else:
            missing += absent
    if missing:
        unique = list(dict.fromkeys(missing))
        raise MissingDataError(spec.name, unique, str(root), spec.hint)

    def make(role: str, set_name: str, source: SourceSpec | None) -> Any:
        if source is None or f"{role}/{set_name}" in skipped:
            return None
        return _build_source(source, root, f"{spec.name}_{set_name}", transform)

    return Benchmark(
        name=spec.name,
        protocol=spec.protocol,
        fpr_convention=spec.fpr_convention,
        resize=spec.resize,
        crop=spec.crop,
        num_classes=spec.num_classes,
        id_test=make("id_test", "id_test", spec.id_test),
        id_val=make("id_val", "id_val", spec.id_val),
        ood_val=make("ood_val", "ood_val", spec.ood_val),
        id_train=make("id_train", "id_train", spec.id_train),
        ood={
            group: {n: make(group, n, s) for n, s in getattr(spec, group).items()}
            for group in ("near", "far")
        },
        csid={n: d for n, s in spec.csid.items() if (d := make("csid", n, s)) is not None},
        description=spec.description,
        skipped_optional=skipped,
    )


# ----------------------------------------------------------------------------- OpenOOD v1.5

CLASSIC_IMAGES = "images_classic/"
LARGESCALE_IMAGES = "images_largescale/"
OPENOOD_HINT = (
    "Get the OpenOOD v1.5 data (OpenOOD's scripts/download/download.py) and pass its folder "
    "(the one holding benchmark_imglist/, images_classic/, images_largescale/) as data_root= "
    "or SHAPEOOD_DATA."
)


def _openood(
    bench: str,
    file: str,
    lines: int,
    images: str = CLASSIC_IMAGES,
    ood: bool = False,
    optional: bool = False,
) -> SourceSpec:
    return SourceSpec(
        kind="imglist",
        location=f"benchmark_imglist/{bench}/{file}",
        image_root=images,
        label_override=-1 if ood else None,
        expected_lines=lines,
        optional=optional,
    )


def _openood_cifar(bench: str, other: str, n_classes: int, counts: dict[str, int]) -> BenchmarkSpec:
    def ood(file: str) -> SourceSpec:
        return _openood(bench, file, counts[file], ood=True)

    csid = (
        {
            "cifar10c": _openood(
                bench, "test_cifar10c.txt", counts["test_cifar10c.txt"], optional=True
            )
        }
        if "test_cifar10c.txt" in counts
        else {}
    )
    return BenchmarkSpec(
        name=bench,
        protocol="openood",
        fpr_convention="openood",
        resize=32,
        crop=32,
        num_classes=n_classes,
        id_train=_openood(bench, f"train_{bench}.txt", 50000, optional=True),
        id_val=_openood(bench, f"val_{bench}.txt", 1000),
        id_test=_openood(bench, f"test_{bench}.txt", 9000),
        ood_val=ood("val_tin.txt"),
        near={other: ood(f"test_{other}.txt"), "tin": ood("test_tin.txt")},
        far={
            "mnist": ood("test_mnist.txt"),
            "svhn": ood("test_svhn.txt"),
            "texture": ood("test_texture.txt"),
            "places365": ood("test_places365.txt"),
        },
        csid=csid,
        description=(
            f"OpenOOD v1.5 {bench.upper()}: near {other}/TIN, far MNIST/SVHN/Textures/Places365"
        ),
        hint=OPENOOD_HINT,
    )


def _openood_imagenet(bench: str, n_classes: int, id_counts: dict[str, int]) -> BenchmarkSpec:
    def large(file: str, ood: bool = False, optional: bool = False) -> SourceSpec:
        counts = {**id_counts, **IMAGENET_OOD_LINES}
        return _openood(bench, file, counts[file], LARGESCALE_IMAGES, ood, optional)

    suffix = "" if bench == "imagenet" else "200"
    return BenchmarkSpec(
        name=bench,
        protocol="openood",
        fpr_convention="openood",
        resize=256,
        crop=224,
        num_classes=n_classes,
        id_val=large(f"val_{bench}.txt"),
        id_test=large(f"test_{bench}.txt"),
        ood_val=large("val_openimage_o.txt", ood=True),
        near={
            "ssb_hard": large("test_ssb_hard.txt", ood=True),
            "ninco": large("test_ninco.txt", ood=True),
        },
        far={
            "inaturalist": large("test_inaturalist.txt", ood=True),
            "textures": _openood(
                bench, "test_textures.txt", IMAGENET_OOD_LINES["test_textures.txt"], ood=True
            ),
            "openimage_o": large("test_openimage_o.txt", ood=True),
        },
        csid={
            "imagenet_v2": large(f"test_imagenet{suffix}_v2.txt", optional=True),
            "imagenet_c": large(f"test_imagenet{suffix}_c.txt", optional=True),
            "imagenet_r": large(f"test_imagenet{suffix}_r.txt", optional=True),
        },
        description=(
            f"OpenOOD v1.5 ImageNet-{n_classes if n_classes == 200 else '1K'}: near "
            "SSB-hard/NINCO, far iNaturalist/Textures/OpenImage-O (ImageNet-C csid images are "
            "already 224x224)"
        ),
        hint=OPENOOD_HINT,
    )


IMAGENET_OOD_LINES = {
    "val_openimage_o.txt": 1763,
    "test_ssb_hard.txt": 49000,
    "test_ninco.txt": 5879,
    "test_inaturalist.txt": 10000,
    "test_textures.txt": 5160,
    "test_openimage_o.txt": 15869,
}

OPENOOD_SPECS: dict[str, BenchmarkSpec] = {
    "cifar10": _openood_cifar(
        "cifar10",
        "cifar100",
        10,
        {
            "val_tin.txt": 1000,
            "test_cifar100.txt": 9000,
            "test_tin.txt": 7793,
            "test_mnist.txt": 70000,
            "test_svhn.txt": 26032,
            "test_texture.txt": 5640,
            "test_places365.txt": 35195,
            "test_cifar10c.txt": 10000,
        },
    ),
    "cifar100": _openood_cifar(
        "cifar100",
        "cifar10",
        100,
        {
            "val_tin.txt": 972,
            "test_cifar10.txt": 10000,
            "test_tin.txt": 6526,
            "test_mnist.txt": 70000,
            "test_svhn.txt": 26032,
            "test_texture.txt": 5640,
            "test_places365.txt": 33773,
        },
    ),
    "imagenet200": _openood_imagenet(
        "imagenet200",
        200,
        {
            "val_imagenet200.txt": 1000,
            "test_imagenet200.txt": 9000,
            "test_imagenet200_v2.txt": 2000,
            "test_imagenet200_c.txt": 2000,
            "test_imagenet200_r.txt": 30000,
        },
    ),
    "imagenet": _openood_imagenet(
        "imagenet",
        1000,
        {
            "val_imagenet.txt": 5000,
            "test_imagenet.txt": 45000,
            "test_imagenet_v2.txt": 10000,
            "test_imagenet_c.txt": 10000,
            "test_imagenet_r.txt": 30000,
        },
    ),
}


# ----------------------------------------------------------------------------- classic suites

CLASSIC_HINT = (
    "Lay the data out as the ReAct/DICE repositories do under data_root (see the benchmark's "
    "description) and pass data_root= or set SHAPEOOD_DATA."
)


def _folder(location: str) -> SourceSpec:
    return SourceSpec(kind="folder", location=location, label_override=-1)


def _cifar_classic(name: str, dataset: str, n_classes: int) -> BenchmarkSpec:
    batches = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[dataset]
    test_file = {"cifar10": "test_batch", "cifar100": "test"}[dataset]
    train_file = {"cifar10": "data_batch_1", "cifar100": "train"}[dataset]
    return BenchmarkSpec(
        name=name,
        protocol="classic",
        fpr_convention="classic",
        resize=32,
        crop=32,
        num_classes=n_classes,
        id_test=SourceSpec(
            "torchvision",
            dataset,
            dataset=dataset,
            split="test",
            expect=(f"{batches}/{test_file}",),
        ),
        id_train=SourceSpec(
            "torchvision",
            dataset,
            dataset=dataset,
            split="train",
            expect=(f"{batches}/{train_file}",),
            optional=True,
        ),
        far={
            "svhn": SourceSpec(
                "torchvision",
                "ood_datasets/svhn",
                dataset="svhn",
                split="test",
                label_override=-1,
                expect=("test_32x32.mat",),
            ),
            "lsun_c": _folder("ood_datasets/LSUN"),
            "lsun_r": _folder("ood_datasets/LSUN_resize"),
            "isun": _folder("ood_datasets/iSUN"),
            "textures": _folder("ood_datasets/dtd/images"),
            "places365": _folder("ood_datasets/places365"),
        },
        description=(
            f"classic {dataset.upper()} suite (ReAct/DICE/ASH): torchvision {dataset} in "
            f"<root>/{dataset}; OOD under <root>/ood_datasets/: svhn (test_32x32.mat), LSUN, "
            "LSUN_resize, iSUN, dtd/images, places365 (image folders)"
        ),
        hint=CLASSIC_HINT,
    )


CLASSIC_SPECS: dict[str, BenchmarkSpec] = {
    "imagenet_classic": BenchmarkSpec(
        name="imagenet_classic",
        protocol="classic",
        fpr_convention="classic",
        resize=256,
        crop=224,
        num_classes=1000,
        id_test=SourceSpec("folder", "imagenet/val"),
        id_train=SourceSpec("folder", "imagenet/train", optional=True),
        far={
            "inaturalist": _folder("ood_data/iNaturalist"),
            "sun": _folder("ood_data/SUN"),
            "places": _folder("ood_data/Places"),
            "textures": _folder("ood_data/dtd/images"),
        },
        description=(
            "classic ImageNet-1K suite (MOS/ReAct/ASH): ID <root>/imagenet/val (wnid class "
            "folders); OOD <root>/ood_data/{iNaturalist,SUN,Places,dtd/images}"
        ),
        hint=CLASSIC_HINT,
    ),
    "cifar_classic": _cifar_classic("cifar_classic", "cifar10", 10),
    "cifar100_classic": _cifar_classic("cifar100_classic", "cifar100", 100),
}


# ----------------------------------------------------------------------------- offline kit

OFFLINE_VAL_EVERY = 10  # ID val = every 10th image of each class (positions 0, 10, ..., 990)
TIN_ROW = re.compile(r"^tin/val/images/val_(\d+)\.JPEG$")


def holdout_rows(
    labels: np.ndarray, every: int = OFFLINE_VAL_EVERY
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (val, test): val = every ``every``-th row of each class, in row order.

    For ``cifar10_test.npz`` (1000 images per class) this holds out 100 per class (1000 rows)
    and leaves 9000 for the test, the sizes OpenOOD uses.
    """
    labels = np.asarray(labels)
    position = np.zeros(labels.shape[0], dtype=np.int64)
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        position[rows] = np.arange(rows.size)
    is_val = position % every == 0
    return np.flatnonzero(is_val), np.flatnonzero(~is_val)


def tin_rows(imglist: str | os.PathLike) -> tuple[int, ...]:
    """Rows of ``tinyimagenet_val_32.npz`` named by an OpenOOD TIN list (val_<i>.JPEG -> i)."""
    samples, _ = parse_imglist(imglist)
    rows = []
    for relative, _ in samples:
        match = TIN_ROW.match(relative)
        if match is None:
            raise ValueError(f"{imglist}: {relative!r} is not a tin/val/images/val_<i>.JPEG path")
        rows.append(int(match.group(1)))
    return tuple(rows)


OFFLINE_FILES = {
    "id": "cifar10_test.npz",
    "train": "cifar10_train_subset.npz",
    "tin": "tinyimagenet_val_32.npz",
    "mnist": "mnist_test.npz",
    "texture": "dtd_subset_32.npz",
    "test_tin": "openood_imglists/cifar10/test_tin.txt",
    "val_tin": "openood_imglists/cifar10/val_tin.txt",
}


def _offline_spec(root: Path) -> BenchmarkSpec:
    """``cifar10_offline`` with its row subsets read from the kit (labels and lists only)."""
    missing = [f"{root / f}" for f in OFFLINE_FILES.values() if not (root / f).is_file()]
    if missing:
        raise MissingDataError(
            "cifar10_offline",
            missing,
            str(root),
            "Set SHAPEOOD_DATA (or data_root=) to the offline kit folder.",
        )
    with np.load(root / OFFLINE_FILES["id"], allow_pickle=False) as archive:
        val_rows, test_rows = holdout_rows(archive["labels"])

    def npz(key: str, rows: Any = None, ood: bool = False) -> SourceSpec:
        return SourceSpec(
            "npz",
            OFFLINE_FILES[key],
            rows=None if rows is None else tuple(int(r) for r in rows),
            label_override=-1 if ood else None,
        )

    return BenchmarkSpec(
        name="cifar10_offline",
        protocol="openood",
        fpr_convention="openood",
        resize=32,
        crop=32,
        num_classes=10,
        id_test=npz("id", test_rows),
        id_val=npz("id", val_rows),
        id_train=npz("train"),
        ood_val=npz("tin", tin_rows(root / OFFLINE_FILES["val_tin"]), ood=True),
        near={"tin": npz("tin", tin_rows(root / OFFLINE_FILES["test_tin"]), ood=True)},
        far={"mnist": npz("mnist", ood=True), "texture": npz("texture", ood=True)},
        description=(
            "offline kit: ID CIFAR-10 (JPEG copy; 9000 test, 1000 held-out val = every 10th "
            "image per class), near TIN (OpenOOD test_tin rows), far MNIST + Textures subset"
        ),
    )


# ----------------------------------------------------------------------------- registry

_BUILTIN: dict[str, Callable[[Path], BenchmarkSpec]] = {
    **{name: (lambda root, s=spec: s) for name, spec in OPENOOD_SPECS.items()},
    **{name: (lambda root, s=spec: s) for name, spec in CLASSIC_SPECS.items()},
    "cifar10_offline": _offline_spec,
}
_DESCRIPTIONS = {
    **{n: s.description for n, s in {**OPENOOD_SPECS, **CLASSIC_SPECS}.items()},
    "cifar10_offline": (
        "offline kit: ID CIFAR-10 JPEG copy (9000 test / 1000 val), near TIN, far MNIST + Textures"
    ),
}


def list_benchmarks() -> dict[str, str]:
    """Built-in benchmark names with a one-line description each."""
    return dict(_DESCRIPTIONS)


def benchmark_spec(name: str, data_root: str | os.PathLike | None = None) -> BenchmarkSpec:
    """The declaration of a built-in benchmark (no file is opened except for cifar10_offline)."""
    if name not in _BUILTIN:
        raise ValueError(
            f"unknown benchmark {name!r}: use one of {', '.join(_BUILTIN)}, or "
            "load_benchmark_file() for your own"
        )
    root = Path(data_root).expanduser() if data_root is not None else paths.data_root()
    return _BUILTIN[name](root)


def get_benchmark(
    name: str, data_root: str | os.PathLike | None = None, transform: Any = None
) -> Benchmark:
    """Build a built-in benchmark under ``data_root`` (default ``shapeood.paths.data_root()``).

    A path to a ``.yaml``/``.yml``/``.toml`` file is loaded with ``load_benchmark_file``.
    """
    if str(name).lower().endswith((".yaml", ".yml", ".toml")):
        return load_benchmark_file(name, transform=transform)
    return build_benchmark(benchmark_spec(name, data_root), data_root, transform)


# ----------------------------------------------------------------------------- user files


def _read_mapping(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError as err:  # Python 3.10
            raise ValueError("TOML benchmark files need Python 3.11+ (tomllib)") from err
        return tomllib.loads(text)
    import yaml

    data = yaml.safe_load(text)
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
    known = {*SOURCE_KINDS, "root", "rows", "indices", "split", "label_override", "skip_bad"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
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


def spec_from_mapping(data: Mapping[str, Any], name: str = "custom") -> BenchmarkSpec:
    """A ``BenchmarkSpec`` from a parsed YAML/TOML mapping.

    Keys: ``name``, ``num_classes``, ``resize`` (default 32), ``crop`` (default = resize),
    ``fpr_convention`` (default ``openood``), ``protocol``, ``description``,
    ``id: {test, val, train}``, ``ood: {val, near: {name: source}, far: {name: source}}`` (or
    ``ood: {name: source}``, all far), ``csid: {name: source}``. A source is one of
    ``{npz: file, rows: [...]}``, ``{imglist: file, root: folder}``, ``{folder: dir}``,
    ``{torchvision: cifar10, root: dir, split: test}``; OOD sources get label -1.
    """
    where = f"benchmark {data.get('name', name)!r}"
    id_part = data.get("id")
    if not isinstance(id_part, dict) or "test" not in id_part:
        raise ValueError(f"{where}: needs an 'id' section with at least 'test'")
    ood_part = data.get("ood")
    if not isinstance(ood_part, dict) or not ood_part:
        raise ValueError(f"{where}: needs an 'ood' section naming at least one OOD dataset")
    if "near" in ood_part or "far" in ood_part:
        groups = {g: dict(ood_part.get(g) or {}) for g in ("near", "far")}
    else:
        groups = {"near": {}, "far": {k: v for k, v in ood_part.items() if k != "val"}}

    def src(entry: Any, label: str, ood: bool) -> SourceSpec:
        return _source_from_mapping(entry, f"{where} {label}", ood)

    resize = int(data.get("resize", 32))
    return BenchmarkSpec(
        name=str(data.get("name", name)),
        protocol=str(data.get("protocol", "openood")),
        fpr_convention=str(data.get("fpr_convention", "openood")),
        resize=resize,
        crop=int(data.get("crop", resize)),
        num_classes=int(data.get("num_classes", 0)),
        id_test=src(id_part["test"], "id.test", False),
        id_val=src(id_part["val"], "id.val", False) if "val" in id_part else None,
        id_train=src(id_part["train"], "id.train", False) if "train" in id_part else None,
        ood_val=src(ood_part["val"], "ood.val", True) if "val" in ood_part else None,
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
    missing = _missing_for(spec.id_test, root)
    if missing:
        raise MissingDataError(spec.name, missing, str(root))
    labels = _build_source(spec.id_test, root, "id_test", None).labels
    return int(labels.max()) + 1
