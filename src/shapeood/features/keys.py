"""Content keys of the feature cache: what makes two extractions the same.

A cache key is a digest of (weights, split layer, input transform, dataset identity, precision).
Change any of them and the key changes, so stale features are never reused.
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from typing import Any

import torch
from torch import nn

from shapeood.head import LinearHead

FORMAT_VERSION = 1

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_weights_memo: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    """Raw bytes of a tensor (any dtype, any device) without a dtype conversion."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def _state_signature(state: dict[str, torch.Tensor]) -> tuple:
    """Cheap identity of a state dict: storage address and in-place version of every tensor."""
    return tuple(
        (name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype), str(t.device))
        for name, t in state.items()
    )


def hash_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """blake2b digest over the names, dtypes, shapes and bytes of ``tensors`` (in key order)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            continue
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            digest.update(_tensor_bytes(t))
    return digest.hexdigest()


def weights_hash(module: nn.Module, head: LinearHead | None = None) -> str:
    """Digest of every tensor of ``module.state_dict()`` (and of ``head``'s weight and bias).

    The digest of a module is remembered while none of its tensors is replaced or modified in
    place, so repeated extractions with the same model hash it once.
    """
    state = module.state_dict()
    signature = _state_signature(state)
    memo = _weights_memo.get(module)
    if memo is not None and memo[0] == signature:
        body = memo[1]
    else:
        body = hash_tensors(state)
        _weights_memo[module] = (signature, body)
    if head is None:
        return body
    return hashlib.blake2b(
        (body + hash_tensors({"head.weight": head.weight, "head.bias": head.bias})).encode(),
        digest_size=16,
    ).hexdigest()


def transform_repr(transform: Any) -> str:
    """``repr`` of an input transform (``"None"`` when there is none)."""
    return "None" if transform is None else repr(transform)


def has_unstable_repr(text: str) -> bool:
    """Whether a repr holds a memory address (``<function f at 0x...>``), new in every process."""
    return bool(_ADDRESS.search(text))


def dataset_fingerprint(dataset: Any) -> str | None:
    """``dataset.fingerprint()``; for a ``torch.utils.data.Subset``, the base's plus the indices.

    ``None`` when the dataset does not say what it is.
    """
    if isinstance(dataset, torch.utils.data.Subset):
        base = dataset_fingerprint(dataset.dataset)
        if base is None:
            return None
        indices = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
        return f"{base}[{hash_tensors({'indices': indices})}]"
    fingerprint = getattr(dataset, "fingerprint", None)
    if callable(fingerprint):
        return str(fingerprint())
    return None


def dataset_transform(dataset: Any) -> Any:
    """The ``transform`` attribute of a dataset (looking through ``Subset``)."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    return getattr(dataset, "transform", None)


def dataset_name(dataset: Any) -> str:
    """``dataset.name`` when given, else its class name (looking through ``Subset``)."""
    base = dataset
    while isinstance(base, torch.utils.data.Subset):
        base = base.dataset
    name = getattr(base, "name", None)
    return str(name) if name else type(base).__name__


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of ``text`` (letters, digits, ``._-``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return (cleaned or "x")[:limit]


def cache_key(components: dict[str, Any], model_name: str, data_name: str) -> str:
    """``<model>__<dataset>__<digest>``: readable prefix, content digest of ``components``."""
    payload = json.dumps({"format": FORMAT_VERSION, **components}, sort_keys=True, default=str)
    digest = hashlib.blake2b(payload.encode(), digest_size=10).hexdigest()
    return f"{slug(model_name)}__{slug(data_name)}__{digest}"
