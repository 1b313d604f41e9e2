"""The one object ``evaluate`` returns: the table plus scores, APS grids, timings and notes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd


class EvaluationResult(pd.DataFrame):
    """The result table (a ``DataFrame``: one row per method and OOD set or group mean) that
    also carries what produced it.

    Attributes:
        scores: ``{method: {"id": ID test scores, <csid set>: ..., <OOD set>: ...}}`` (numpy).
        grids: ``{method: DataFrame}``: every APS grid point with its ``auroc``, ``fpr95``,
            ``criterion`` value and the ``best`` flag.
        timings: seconds per stage and per method (``features_s``, ``<method>_s``, ``total_s``).
        notes: what a reader should know (fitting on test data, capped sets, the mode).
        mode: ``"ood"`` or ``"fsood"`` (full-spectrum: csid sets counted as ID).

    ``df.attrs`` holds the same metadata in JSON-friendly form (for reports). Operations on the
    result return plain DataFrames; ``table`` is the table alone.
    """

    _metadata: ClassVar[list[str]] = ["scores", "grids", "timings", "notes", "mode"]

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    @property
    def table(self) -> pd.DataFrame:
        """The result table as a plain DataFrame (attrs included)."""
        frame = pd.DataFrame(self).copy()
        frame.attrs = dict(self.attrs)
        return frame


def make_result(table: pd.DataFrame, **metadata: Any) -> EvaluationResult:
    """Wrap ``table`` with ``scores``, ``grids``, ``timings``, ``notes`` and ``mode``."""
    result = EvaluationResult(table)
    result.attrs = dict(table.attrs)
    for key in EvaluationResult._metadata:
        object.__setattr__(result, key, metadata[key])
    return result


def save_score_file(path: str | os.PathLike, scores: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``{method: {set: scores}}`` as one ``.npz`` with keys ``"<method>/<set>"``."""
    from shapeood._fileio import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{m}/{s}": np.asarray(a) for m, sets in scores.items() for s, a in sets.items()}
    atomic_write(path, lambda handle: np.savez(handle, **flat))
    return path


def load_score_file(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Read a score file written by ``save_score_file`` back to ``{method: {set: scores}}``."""
    result: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as stored:
        for key in stored.files:
            method, _, set_name = key.partition("/")
            result.setdefault(method, {})[set_name] = stored[key]
    return result
