"""Read weights: kit ``.npz`` archives and original ``.pth`` / ``.th`` / ``.tar`` checkpoints."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shapeood.errors import reading
from shapeood.paths import data_root

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
PREFIXES = ("module.", "_orig_mod.")


def resolve_weights_path(weights: str | Path) -> Path:
    """An existing path as given, else a file of that name in the offline kit."""
    path = Path(weights).expanduser()
    if path.exists():
        return path
    kit_path = data_root() / str(weights)
    if path.name == str(weights) and kit_path.exists():
        return kit_path
    raise FileNotFoundError(
        f"weights file {str(weights)!r} not found (also looked in the offline kit at "
        f"{data_root()}); pass an existing .npz/.pth path or set SHAPEOOD_DATA"
    )


def read_npz(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Numeric arrays as tensors, plus decoded ``*_json`` string entries (no pickle)."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            value = archive[key]
            if value.dtype.kind in "fiub":
                tensors[key] = torch.from_numpy(np.array(value))
            elif key.endswith("_json"):
                meta[key[: -len("_json")]] = json.loads(str(value))
    return tensors, meta


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for key, value in state.items():
        for prefix in PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict (prefixes stripped, unwrapped from ``{'state_dict': ...}``) and metadata.

    ``.npz`` is read with ``allow_pickle=False``; anything else with
    ``torch.load(weights_only=True)`` on the CPU.
    """
    path = resolve_weights_path(path)
    fix = "re-save it (torch.save(model.state_dict(), path)) or fetch it again"
    if path.suffix == ".npz":
        with reading(path, "weights file", fix):
            state, meta = read_npz(path)
    else:
        with reading(path, "weights file", fix):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        meta = {}
        if isinstance(obj, Mapping):
            for key in WRAPPER_KEYS:
                if isinstance(obj.get(key), Mapping):
                    meta = {k: v for k, v in obj.items() if k != key and not torch.is_tensor(v)}
                    obj = obj[key]
                    break
        if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
            raise ValueError(
                f"{path} holds no state dict of tensors: save model.state_dict() "
                "(optionally as {'state_dict': ...})"
            )
        state = dict(obj)
    return strip_prefixes(state), meta


def load_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights"
) -> None:
    """Copy ``state`` into ``model`` strictly, except that missing BatchNorm
    ``num_batches_tracked`` counters are allowed; raises ``ValueError`` listing any mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)):
            if keys:
                parts.append(f"{label} ({len(keys)}): {', '.join(keys[:6])}")
        raise ValueError(
            f"{source} do not fit {type(model).__name__}: "
            + "; ".join(parts)
            + ". Check the architecture name and num_classes."
        )
    with torch.no_grad():
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)
