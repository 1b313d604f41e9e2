"""Read weights: kit ``.npz`` archives, ``.safetensors`` and ``.pth`` / ``.pt`` / ``.th`` / ``.tar``
checkpoints (a state dict, directly or under a wrapper key), and whole pickled models on request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shapeood.errors import BadFileError, ShapeoodError, reading
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


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".th", ".tar", ".bin", ".ckpt", ".safetensors", ".npz")


class PickledModelError(ShapeoodError):
    """The file holds pickled Python objects (e.g. a whole model), not a plain state dict."""


def _unwrap(obj: Any) -> tuple[Any, dict[str, Any]]:
    """``obj[key]`` for the first wrapper key holding a mapping or a module, plus the rest."""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, (Mapping, nn.Module)):
                meta = {k: v for k, v in obj.items() if k != key and not torch.is_tensor(v)}
                return inner, meta
    return obj, {}


def _state_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(
            f"{path} holds no state dict of tensors (found {type(obj).__name__}): save "
            "model.state_dict(), directly or under 'state_dict', 'model', 'net' or "
            "'model_state_dict'"
        )
    return dict(obj)


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        from safetensors import safe_open
    except ImportError as err:
        raise ShapeoodError(
            f"{path} is a .safetensors file: install the safetensors package "
            "(pip install safetensors)"
        ) from err
    with safe_open(str(path), framework="pt", device="cpu") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata() or {})
    return state, meta


def read_checkpoint_object(
    path: str | Path, trust_pickle: bool = False
) -> tuple[dict[str, torch.Tensor] | nn.Module, dict[str, Any]]:
    """A state dict (prefixes stripped, unwrapped) or, with ``trust_pickle``, a whole model.

    ``.npz`` is read with ``allow_pickle=False``, ``.safetensors`` with safetensors, anything
    else with ``torch.load(weights_only=True)`` on the CPU, which refuses pickled objects:
    those raise ``PickledModelError`` unless ``trust_pickle=True`` (unpickling runs code
    stored in the file, so only for files you trust).
    """
    import pickle

    path = resolve_weights_path(path)
    fix = "re-save it (torch.save(model.state_dict(), path)) or fetch it again"
    if path.suffix in (".npz", ".safetensors"):
        reader = read_npz if path.suffix == ".npz" else read_safetensors
        with reading(path, "weights file", fix):
            state, meta = reader(path)
        return strip_prefixes(_state_of(state, path)), meta
    try:
        with reading(path, "weights file", fix):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except BadFileError as err:
        cause = err.__cause__
        # a pickled object torch's safe loader refused (a whole model), not a damaged file
        if not isinstance(cause, pickle.UnpicklingError) or "Unsupported global" not in str(cause):
            raise
        if not trust_pickle:
            raise PickledModelError(
                f"{path} holds pickled Python objects (a whole model saved with "
                "torch.save(model)?), not a plain state dict. Unpickling runs code stored in "
                "the file, so shapeood loads it only when told to: --trust-pickle "
                "(trust_pickle=True in Python), for files you trust. Safer: save "
                "model.state_dict() and load it with --arch NAME"
            ) from err
        with reading(path, "pickled model", fix):
            obj = torch.load(path, map_location="cpu", weights_only=False)
    inner, meta = _unwrap(obj)
    if isinstance(inner, nn.Module):
        if not trust_pickle:  # a module can only come out of a full unpickle
            raise PickledModelError(f"{path} holds a pickled model: pass --trust-pickle")
        return inner, meta
    return strip_prefixes(_state_of(inner, path)), meta


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict (prefixes stripped, unwrapped from ``{'state_dict': ...}``) and metadata.

    ``.npz`` is read with ``allow_pickle=False``, ``.safetensors`` with safetensors, anything
    else with ``torch.load(weights_only=True)`` on the CPU.
    """
    state, meta = read_checkpoint_object(path)
    assert not isinstance(state, nn.Module)
    return state, meta


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
