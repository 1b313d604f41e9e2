"""Benchmarks: which datasets play which role, how images are preprocessed, which FPR is reported.

* ``spec``: ``SourceSpec``, ``BenchmarkSpec`` (the declaration: family, conventions, sets) and
  ``Benchmark`` (a spec with its datasets built).
* ``registry``: ``@register_benchmark``, ``list_benchmarks``, ``benchmark_spec``.
* built-ins, registered where they are defined: ``openood`` (OpenOOD v1.5 ``cifar10``,
  ``cifar100``, ``imagenet200``, ``imagenet``), ``classic`` (``imagenet_classic``,
  ``cifar_classic``, ``cifar100_classic``), ``offline`` (``cifar10_offline``, the offline kit).
* ``build``: checks every file first (``MissingDataError`` lists all absent), then builds.
* ``files``: user benchmarks from YAML/TOML files.

Adding a built-in benchmark is one decorated function returning a ``BenchmarkSpec`` in one of
these modules (or a new module imported below).
"""

from __future__ import annotations

import os
from typing import Any

from shapeood.data.benchmarks import classic, offline, openood  # noqa: F401  (registers)
from shapeood.data.benchmarks.build import build_benchmark
from shapeood.data.benchmarks.classic import CLASSIC_SPECS
from shapeood.data.benchmarks.files import (
    BenchmarkFileError,
    inspect_benchmark_file,
    load_benchmark_file,
    read_benchmark_file,
    spec_from_mapping,
    with_skip_bad,
)
from shapeood.data.benchmarks.offline import holdout_rows, tin_rows
from shapeood.data.benchmarks.openood import OPENOOD_SPECS
from shapeood.data.benchmarks.registry import benchmark_spec, list_benchmarks, register_benchmark
from shapeood.data.benchmarks.spec import (
    FAMILIES,
    PROTOCOLS,
    SOURCE_KINDS,
    Benchmark,
    BenchmarkSpec,
    MissingDataError,
    SourceSpec,
)

BENCHMARK_FILE_SUFFIXES = (".yaml", ".yml", ".toml")

__all__ = [
    "CLASSIC_SPECS",
    "FAMILIES",
    "OPENOOD_SPECS",
    "PROTOCOLS",
    "SOURCE_KINDS",
    "Benchmark",
    "BenchmarkFileError",
    "BenchmarkSpec",
    "MissingDataError",
    "SourceSpec",
    "benchmark_spec",
    "build_benchmark",
    "get_benchmark",
    "holdout_rows",
    "inspect_benchmark_file",
    "list_benchmarks",
    "load_benchmark_file",
    "read_benchmark_file",
    "register_benchmark",
    "spec_from_mapping",
    "tin_rows",
]


def get_benchmark(
    name: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    transform: Any = None,
    skip_bad: bool = False,
) -> Benchmark:
    """Build a registered benchmark under ``data_root`` (default ``shapeood.paths.data_root()``).

    A path to a ``.yaml``/``.yml``/``.toml`` file is loaded with ``load_benchmark_file``; its
    relative paths start from its own ``data_root`` key, else ``data_root``, else its folder.
    ``skip_bad`` leaves unreadable images out instead of stopping (``--skip-bad``).
    """
    if str(name).lower().endswith(BENCHMARK_FILE_SUFFIXES):
        return load_benchmark_file(
            name, transform=transform, data_root=data_root, skip_bad=skip_bad
        )
    spec = benchmark_spec(str(name), data_root)
    return build_benchmark(with_skip_bad(spec) if skip_bad else spec, data_root, transform)
