"""The ``.sood`` file: one fitted OOD-aware classifier, readable without pickle.

Layout: a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) with

* ``header``: a unicode array holding one JSON object (format name and version, shapeood
  version, method, detector parameters and fitted state, threshold, ``target_tpr``, the model's
  ``pretrained_cfg`` and transform, class names, model spec, weights digest);
* ``detector/<name>``: the tensors of the detector (fitted masks, heads, prototypes, ...);
* ``weights/<name>``: the model's ``state_dict`` (absent with ``include_model=False``).

JSON values that stand for arrays are ``{"$array": key}`` (``"dtype"`` added for bfloat16,
stored as float32, which holds it exactly) or ``{"$head": [weight key, bias key]}`` for a
``LinearHead``. Reading uses ``np.load(..., allow_pickle=False)`` and ``json.loads`` only.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shapeood._fileio import atomic_write
from shapeood.head import LinearHead

FORMAT = "shapeood-detector"
FORMAT_VERSION = 1


class DetectorFileError(ValueError):
    """A file that is not a readable shapeood detector file."""


class _Arrays:
    """Collects arrays under unique keys while values are encoded."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def put(self, key: str, tensor: Any) -> dict[str, Any]:
        t = tensor.detach().cpu() if isinstance(tensor, torch.Tensor) else torch.as_tensor(tensor)
        ref: dict[str, Any] = {"$array": key}
        if t.dtype == torch.bfloat16:
            ref["dtype"] = "bfloat16"
            t = t.float()
        self.arrays[key] = t.contiguous().numpy()
        return ref


def encode(value: Any, key: str, store: _Arrays) -> Any:
    """JSON form of a parameter or fitted value; tensors go to ``store`` under ``key``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, LinearHead):
        return {"$head": [store.put(f"{key}.weight", value.weight)["$array"],
                          store.put(f"{key}.bias", value.bias)["$array"]]}  # fmt: skip
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return store.put(key, value)
    if isinstance(value, (list, tuple)):
        return [encode(v, f"{key}.{i}", store) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): encode(v, f"{key}.{k}", store) for k, v in value.items()}
    raise ValueError(
        f"cannot store {key!r} of type {type(value).__name__} in a detector file (numbers, "
        "strings, lists, dicts, tensors and LinearHead only)"
    )


def decode(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Inverse of ``encode``."""
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    if isinstance(value, dict):
        if "$array" in value:
            t = torch.from_numpy(np.array(_array(arrays, value["$array"])))
            return t.to(torch.bfloat16) if value.get("dtype") == "bfloat16" else t
        if "$head" in value:
            w, b = value["$head"]
            return LinearHead(torch.from_numpy(np.array(_array(arrays, w))),
                              torch.from_numpy(np.array(_array(arrays, b))))  # fmt: skip
        return {k: decode(v, arrays) for k, v in value.items()}
    return value


def _array(arrays: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key not in arrays:
        raise DetectorFileError(f"the detector file lacks the array {key!r}: it is damaged")
    return arrays[key]


def write(path: str | os.PathLike, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``header`` (JSON-able) and ``arrays`` to ``path`` (exactly that name)."""
    text = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **header})
    return atomic_write(
        Path(path).expanduser(), lambda handle: np.savez(handle, header=np.array(text), **arrays)
    )


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(header, arrays)`` of a detector file; ``DetectorFileError`` for anything else."""
    src = Path(path).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"detector file not found: {src}")
    hint = "write one with OODClassifier.save or 'shapeood fit-detector'"
    try:
        with np.load(src, allow_pickle=False) as archive:
            if "header" not in archive.files:
                raise DetectorFileError(f"{src} is not a shapeood detector file ({hint})")
            arrays = {name: archive[name] for name in archive.files}
    except DetectorFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DetectorFileError(f"{src} is not a shapeood detector file ({hint})") from err
    try:
        header = json.loads(str(arrays.pop("header")))
    except (ValueError, TypeError) as err:
        raise DetectorFileError(f"{src}: the detector file's header is not valid JSON") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DetectorFileError(f"{src} is not a shapeood detector file ({hint})")
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise DetectorFileError(
            f"{src} has detector file format {header.get('format_version')}, newer than this "
            f"shapeood reads ({FORMAT_VERSION}): upgrade shapeood"
        )
    return header, arrays


def json_safe(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``mapping`` that survive a JSON round trip (tuples become lists)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[str(key)] = value
    return out
