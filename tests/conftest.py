"""Shared fixtures: the offline kit and the oracle arrays, read where they lie.

Tests that need them fail loudly (never skip) when the folders are missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from shapeood.paths import data_root

torch.set_num_threads(
    max(1, (os.cpu_count() or 2) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
)


def oracle_root() -> Path:
    """``$SHAPEOOD_ORACLE`` or the ``oracle`` folder beside the kit (``../shared/oracle``)."""
    return Path(os.environ.get("SHAPEOOD_ORACLE", data_root().parent / "oracle")).expanduser()


def load_oracle(name: str) -> dict[str, np.ndarray]:
    """All arrays of ``oracle/<name>.npz``; fails the test when the file is missing."""
    path = oracle_root() / f"{name}.npz"
    if not path.exists():
        pytest.fail(
            f"oracle file {path} is missing: set SHAPEOOD_ORACLE (or SHAPEOOD_DATA) so that "
            "the shared oracle folder is found",
            pytrace=False,
        )
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def oracle_keys(name: str) -> list[str]:
    """Key names of one oracle file, for ``pytest.mark.parametrize`` at collection time."""
    path = oracle_root() / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"oracle file {path} is missing: set SHAPEOOD_ORACLE or SHAPEOOD_DATA"
        )
    with np.load(path, allow_pickle=False) as z:
        return list(z.files)


@pytest.fixture(scope="session")
def kit() -> Path:
    """The offline kit folder; fails the test when it is missing."""
    root = data_root()
    if not (root / "cifar10_test.npz").exists():
        pytest.fail(
            f"offline kit not found at {root}: set SHAPEOOD_DATA to the kit folder", pytrace=False
        )
    return root
