"""What a benchmark is: ``SourceSpec`` (one dataset), ``BenchmarkSpec`` (the declaration) and
``Benchmark`` (a declaration with its datasets built under a data root).

Everything a benchmark *is* (its family, FPR convention, preprocessing, sets) is declared once,
on the ``BenchmarkSpec``; a built ``Benchmark`` holds that spec plus the datasets and reads every
declared field through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from shapeood._types import CONVENTIONS, FAMILIES, BenchmarkFamily, FprConvention
from shapeood.data.sources import Transform

Protocol = Literal["openood", "classic"]
SourceKind = Literal["imglist", "npz", "folder", "torchvision"]

PROTOCOLS: tuple[str, ...] = get_args(Protocol)
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)
SINGLE_ROLES = ("id_val", "ood_val", "id_train")
OOD_GROUPS = ("near", "far")


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


@dataclass(frozen=True)
class SourceSpec:
    """Where one dataset comes from.

    ``kind``: ``"imglist"`` (``location`` = list file, ``image_root`` = folder its paths are
    relative to), ``"npz"`` (``location`` = archive, ``rows`` = optional subset), ``"folder"``
    (``location`` = ImageFolder root) or ``"torchvision"`` (``location`` = torchvision root,
    ``dataset`` and ``split``; ``expect`` = files that must exist there). Relative paths are
    resolved under the data root. ``expected_lines`` records the published size of a list.
    """

    kind: SourceKind
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
    """A benchmark's declaration: its family, conventions and roles -> ``SourceSpec``.

    ``family`` (``"cifar"``, ``"imagenet"`` or ``"custom"``) selects the methods' presets;
    ``protocol`` and ``fpr_convention`` say how results are reported; ``resize``/``crop`` are the
    evaluation transform (Resize shorter side, then CenterCrop). Built by ``build_benchmark``.
    """

    name: str
    family: BenchmarkFamily
    protocol: Protocol
    fpr_convention: FprConvention
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
        for key, value, allowed in (
            ("family", self.family, FAMILIES),
            ("protocol", self.protocol, PROTOCOLS),
            ("fpr_convention", self.fpr_convention, CONVENTIONS),
        ):
            if value not in allowed:
                raise ValueError(
                    f"benchmark {self.name!r}: {key} must be one of {', '.join(allowed)}, "
                    f"got {value!r}"
                )
        if not self.near and not self.far:
            raise ValueError(f"benchmark {self.name!r} has no OOD dataset")

    def roles(self) -> Iterator[tuple[str, str, SourceSpec]]:
        """``(role, dataset name, spec)`` for every declared source."""
        yield "id_test", "id_test", self.id_test
        for role in SINGLE_ROLES:
            spec = getattr(self, role)
            if spec is not None:
                yield role, role, spec
        for group in (*OOD_GROUPS, "csid"):
            for set_name, spec in getattr(self, group).items():
                yield group, set_name, spec


@dataclass
class Benchmark:
    """A ``BenchmarkSpec`` with its datasets built: datasets by role plus the declaration.

    ``ood`` = ``{"near": {name: dataset}, "far": {...}}``. ``id_val`` / ``ood_val`` feed the
    hyperparameter search; ``id_train`` (optional) feeds methods fitted on ID training features;
    ``csid`` (optional) are covariate-shifted ID sets. Declared fields (``name``, ``family``,
    ``protocol``, ``fpr_convention``, ``resize``, ``crop``, ``num_classes``, ``description``)
    are read from ``spec``.
    """

    spec: BenchmarkSpec
    id_test: Any
    ood: dict[str, dict[str, Any]]
    id_val: Any = None
    ood_val: Any = None
    id_train: Any = None
    csid: dict[str, Any] = field(default_factory=dict)
    skipped_optional: list[str] = field(default_factory=list)

    name = property(lambda self: self.spec.name)
    family = property(lambda self: self.spec.family)
    protocol = property(lambda self: self.spec.protocol)
    fpr_convention = property(lambda self: self.spec.fpr_convention)
    resize = property(lambda self: self.spec.resize)
    crop = property(lambda self: self.spec.crop)
    num_classes = property(lambda self: self.spec.num_classes)
    description = property(lambda self: self.spec.description)

    def ood_datasets(self) -> dict[str, Any]:
        """Every OOD test set by name (near first, then far)."""
        return {n: d for group in OOD_GROUPS for n, d in self.ood.get(group, {}).items()}

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
        for role in SINGLE_ROLES:
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
            f"Benchmark({self.name!r}, family={self.family!r}, protocol={self.protocol!r}, "
            f"fpr={self.fpr_convention!r}, id_test={len(self.id_test)}, {groups})"
        )
