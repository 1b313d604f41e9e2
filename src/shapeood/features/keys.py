"""Content keys of the feature cache: what makes two extractions the same.

A cache key is a digest of (weights, split layer, input transform, dataset content, precision).
Change any of them and the key changes, so stale features are never reused; the dataset's
*name* is not part of it (it is kept as metadata), so the same images reach the same entry
whatever they are called.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn

from shapeood.head import LinearHead

FORMAT_VERSION = 2

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    """Raw bytes of a tensor (any dtype, any device) without a dtype conversion."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def _bytes_digest(t: torch.Tensor) -> bytes:
    return hashlib.sha256(_tensor_bytes(t)).digest() if t.numel() else b""


def hash_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and byte digests of ``tensors`` (in key order).

    Each tensor's bytes are hashed in a thread pool (``hashlib`` releases the GIL), then the
    per-tensor digests are folded in key order.
    """
    items = [(n, t) for n, t in tensors.items() if isinstance(t, torch.Tensor)]
    big = sum(t.numel() * t.element_size() for _, t in items) > (8 << 20)
    if big and len(items) > 1:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            parts = list(pool.map(_bytes_digest, [t for _, t in items]))
    else:
        parts = [_bytes_digest(t) for _, t in items]
    digest = hashlib.sha256()
    for (name, t), part in zip(items, parts, strict=True):
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(part)
    return digest.hexdigest()[:32]


_one_state: ContextVar[dict[int, str] | None] = ContextVar("one_state", default=None)


@contextlib.contextmanager
def one_weights_state() -> Iterator[None]:
    """Inside the block, :func:`weights_hash` hashes the state dict of the same module object
    once (the head is hashed at every call): for the datasets of one ``evaluate`` call,
    extracted one after another with no user code in between. Outside it, every call hashes
    every tensor again."""
    token = _one_state.set({})
    try:
        yield
    finally:
        _one_state.reset(token)


def weights_hash(module: nn.Module, head: LinearHead | None = None) -> str:
    """Digest of every tensor of ``module.state_dict()`` (and of ``head``'s weight and bias).

    Computed from the tensors' bytes at every call - never remembered per module object,
    except within one :func:`one_weights_state` block - so weights edited in place
    (``layer.weight.data.mul_(1.5)``, pruning, ``load_state_dict`` on the same module) always
    change the key. SHA-256 over the raw bytes. Measured (``benchmarks/bench_trust.py``, 2 CPU
    cores at load average 18): a ResNet-50 state dict (25.6 M parameters, 102 MB) hashes in
    0.45 s, against 2.9 s per image for extracting with it on those cores, i.e. 0.24 % of
    extracting just 64 images (0.015 % of 1,000); on a GPU at 2,000 images/s, 0.45 s is about
    2 % of a 50,000-image extraction (25 s).
    """
    memo = _one_state.get()
    body = None if memo is None else memo.get(id(module))
    if body is None:
        body = hash_tensors(module.state_dict())
        if memo is not None:
            memo[id(module)] = body
    if head is None:
        return body
    both = body + hash_tensors({"head.weight": head.weight, "head.bias": head.bias})
    return hashlib.sha256(both.encode()).hexdigest()[:32]


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


def cache_key(components: dict[str, Any], model_name: str, data_name: str | None = None) -> str:
    """``<model>__<digest>``: readable model prefix, content digest of ``components``.

    ``data_name`` is accepted for compatibility and ignored: names are metadata, not identity.
    """
    payload = json.dumps({"format": FORMAT_VERSION, **components}, sort_keys=True, default=str)
    digest = hashlib.blake2b(payload.encode(), digest_size=10).hexdigest()
    return f"{slug(model_name)}__{digest}"


def row_selection(dataset: Any) -> tuple[Any, list[int]] | None:
    """``(full dataset, rows)`` when ``dataset`` is rows of another one, else None.

    Recognises ``Subset(base, rows)`` (nested subsets compose) and a transform wrapper with a
    ``.dataset`` and a ``.transform`` around one (``TransformedDataset``), whose full version is
    the same wrapper around the base. Used to serve a subset from a cached full set.
    """
    if isinstance(dataset, torch.utils.data.Subset):
        rows = [int(i) for i in dataset.indices]
        inner = row_selection(dataset.dataset)
        if inner is None:
            return dataset.dataset, rows
        base, inner_rows = inner
        return base, [inner_rows[i] for i in rows]
    inner_ds = getattr(dataset, "dataset", None)
    if inner_ds is not None and hasattr(dataset, "transform") and hasattr(dataset, "rewrap"):
        inner = row_selection(inner_ds)
        if inner is None:
            return None
        base, rows = inner
        return dataset.rewrap(base), rows
    return None
