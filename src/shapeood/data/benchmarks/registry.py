"""The benchmark registry: ``@register_benchmark`` on a function that declares a benchmark.

As timm's model registry: a built-in benchmark is a function named after it, decorated where it
is defined, returning its ``BenchmarkSpec``. The function takes the data root (only benchmarks
whose sets depend on files, such as the offline kit's row subsets, read it); the first line of
its docstring is the one-line description ``shapeood list benchmarks`` prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from shapeood import paths
from shapeood.data.benchmarks.spec import BenchmarkSpec

SpecFactory = Callable[[Path], BenchmarkSpec]
F = TypeVar("F", bound=SpecFactory)

_REGISTRY: dict[str, SpecFactory] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_benchmark(fn: F) -> F:
    """Register ``fn(root) -> BenchmarkSpec`` under its function name; returns ``fn``."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"benchmark {name!r} is registered twice")
    _REGISTRY[name] = fn
    _DESCRIPTIONS[name] = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
    return fn


def list_benchmarks() -> dict[str, str]:
    """Registered benchmark names with a one-line description each."""
    return dict(_DESCRIPTIONS)


def benchmark_spec(name: str, data_root: str | os.PathLike | None = None) -> BenchmarkSpec:
    """The declaration of a registered benchmark (only file-dependent ones open files)."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown benchmark {name!r}: use one of {', '.join(_REGISTRY)}, or "
            "load_benchmark_file() for your own"
        )
    root = Path(data_root).expanduser() if data_root is not None else paths.data_root()
    return _REGISTRY[name](root)
