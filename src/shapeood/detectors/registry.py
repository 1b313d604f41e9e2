"""Detector registry: ``register_detector`` (decorator), ``create_detector``, ``list_detectors``."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from shapeood.detectors.base import Detector

_REGISTRY: dict[str, type[Detector]] = {}

# Names other toolkits use for the same method (OpenOOD: "mls", "ebo", and "ash" = ASH-B).
ALIASES = {"maxlogit": "max_logit", "mls": "max_logit", "ebo": "energy", "ash": "ash_b"}

# Listing order of the built-in methods: logit scores first, then the shaping families.
BUILTIN_ORDER = (
    "msp", "max_logit", "energy", "odin", "dice", "react",
    "ash_p", "ash_b", "ash_s", "scale", "lhact", "himplos",
)  # fmt: skip


@dataclass(frozen=True)
class DetectorInfo:
    """What ``list_detectors`` tells about one method."""

    name: str
    cls: type[Detector]
    params: dict[str, Any]
    default_sweep: dict[str, list]
    description: str
    requires_fit: bool
    requires_labels: bool
    requires_model: bool
    changes_logits: bool
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    fit_split: str | None = None


def register_detector(cls: type[Detector] | None = None, *, overwrite: bool = False) -> Any:
    """Class decorator adding a ``Detector`` subclass under its ``name``.

    Use ``@register_detector`` or ``@register_detector(overwrite=True)`` to replace a method.
    """

    def add(detector_cls: type[Detector]) -> type[Detector]:
        if not (isinstance(detector_cls, type) and issubclass(detector_cls, Detector)):
            raise TypeError(f"register_detector expects a Detector subclass, got {detector_cls!r}")
        name = detector_cls.name
        if not name or not name.isidentifier():
            raise ValueError(f"{detector_cls.__name__}.name must be a lower-case identifier")
        if name in _REGISTRY and _REGISTRY[name] is not detector_cls and not overwrite:
            raise ValueError(
                f"a detector named {name!r} is already registered ({_REGISTRY[name].__name__}); "
                "pass overwrite=True to replace it"
            )
        detector_cls._param_names()  # explicit keyword parameters only
        _REGISTRY[name] = detector_cls
        return detector_cls

    return add if cls is None else add(cls)


def _resolve(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"detector name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY) + list(ALIASES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown detector {name!r}; available: {sorted(_REGISTRY)}.{hint}")
    return key


def detector_class(name: str) -> type[Detector]:
    """The registered class of ``name`` (aliases such as "ebo" or "ash" accepted)."""
    return _REGISTRY[_resolve(name)]


def create_detector(name: str, preset: str | None = None, **params: Any) -> Detector:
    """Build a detector by name, e.g. ``create_detector("ash_s", percentile=95)``.

    ``preset`` picks a named parameter set from the upstream configs (see ``list_detectors()``,
    e.g. ``create_detector("himplos", preset="cifar")``); explicit ``params`` override it.

    >>> import torch
    >>> from shapeood import LinearHead
    >>> head = LinearHead(torch.eye(2), torch.zeros(2))
    >>> det = create_detector("scale", percentile=50).fit(head)
    >>> det.score(torch.tensor([[2.0, 0.0], [1.0, 1.0]])).shape
    torch.Size([2])
    """
    cls = detector_class(name)
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in cls.presets:
            raise ValueError(
                f"{cls.name} has no preset {preset!r}; available: {sorted(cls.presets) or 'none'}"
            )
        values.update(cls.presets[preset])
    valid = cls._param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"{cls.name} has no parameter(s) {unknown}; valid parameters: {valid}")
    values.update(params)
    return cls(**values)


def list_detectors() -> dict[str, DetectorInfo]:
    """Every registered method with its defaults, APS sweep, presets and description."""
    return {
        name: DetectorInfo(
            name=name,
            cls=cls,
            params=cls.default_params(),
            default_sweep={k: list(v) for k, v in cls.default_sweep.items()},
            description=cls.description,
            requires_fit=cls.requires_fit,
            requires_labels=cls.requires_labels,
            requires_model=cls.requires_model,
            changes_logits=cls.changes_logits,
            presets={k: dict(v) for k, v in cls.presets.items()},
            fit_split=cls.fit_split,
        )
        for name, cls in sorted(_REGISTRY.items(), key=_listing_key)
    }


def _listing_key(item: tuple[str, type[Detector]]) -> tuple[int, int]:
    names = list(_REGISTRY)
    name = item[0]
    if name in BUILTIN_ORDER:
        return (0, BUILTIN_ORDER.index(name))
    return (1, names.index(name))
