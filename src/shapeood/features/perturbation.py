"""Input-perturbation scores (ODIN) over datasets, stored in the feature cache as entries.

ODIN is the one method that cannot run on cached features: it takes a gradient step on the
input image. This module runs it over a dataset at the cost the method allows: per batch, one
forward with its graph kept, one backward per temperature and one forward per (temperature,
noise) point (``shapeood.detectors.odin.perturbed_logits``). A full OpenOOD APS grid
(4 temperatures x 2 noise values) thus costs 1 + 4 backward + 8 forwards per image instead of
8 x (forward + backward + forward).

Each (model, dataset, point) result is one cache entry of kind ``"odin"`` in the feature cache,
written and read through ``FeatureCache.put``/``get`` (atomic files, checksums verified on
load; ``shapeood cache list`` shows the entry, ``shapeood cache clear`` removes it)::

    <root>/odin__<model>__<digest>/
        scores.npy preds.npy labels.npy   the per-image results
        meta.json                         kind, parameters, features key, checksums (last)

The digest covers the features key of (model weights, transform, dataset content) and the ODIN
parameters with the resolved std. Results are stored only once a whole dataset is scored, and
an entry counts only once its ``meta.json`` (written last) exists: a process killed while
scoring leaves nothing that is served, and the next run recomputes; an entry that fails its
checksums is reported in one line and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from shapeood.detectors.odin import (
    ODIN,
    _logit_function,
    benchmark_std,
    check_std,
    model_std,
    perturbed_logits,
)
from shapeood.progress import bar as progress_bar

KIND = "odin"
ARRAYS = ("scores", "preds", "labels")

__all__ = [
    "PerturbationResult",
    "count_passes",
    "perturbation_scores",
    "resolve_std",
    "score_inputs",
]


@dataclass(frozen=True)
class PerturbationResult:
    """Per-image ``scores`` (N,) float32, ``preds`` (N,) int64, ``labels`` (N,) int64."""

    scores: torch.Tensor
    preds: torch.Tensor
    labels: torch.Tensor


def count_passes(points: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Network passes per image for ``points``: ``forward`` and ``backward`` counts.

    One forward with its graph (per distinct variant/std), one backward per distinct
    temperature, one forward per point.
    """
    groups: dict[Any, set[float]] = {}
    for p in points:
        key = (p.get("variant", "openood"), repr(p.get("std")))
        groups.setdefault(key, set()).add(float(p.get("temperature", 1000)))
    return {
        "forward": len(groups) + len(points),
        "backward": sum(len(t) for t in groups.values()),
    }


# ----------------------------------------------------------------------------- std


def _normalize_std(transform: Any) -> tuple[float, ...] | None:
    """The std of the last ``Normalize`` inside ``transform`` (torchvision v1 or v2)."""
    if transform is None:
        return None
    found = None
    stack = [transform]
    while stack:
        t = stack.pop(0)
        if type(t).__name__ == "Normalize" and getattr(t, "std", None) is not None:
            found = tuple(float(v) for v in t.std)
        stack.extend(getattr(t, "transforms", []) or [])
    return found


def _dataset_std(dataset: Any) -> tuple[float, ...] | None:
    seen = 0
    while dataset is not None and seen < 16:
        std = _normalize_std(getattr(dataset, "transform", None))
        if std is not None:
            return std
        dataset = getattr(dataset, "dataset", None)
        seen += 1
    return None


def resolve_std(
    std: Any, model: Any = None, dataset: Any = None, benchmark: Any = None
) -> tuple[float, ...]:
    """The std ODIN's OpenOOD variant divides by.

    ``std`` numbers as given; ``"benchmark"``: OpenOOD's std of the benchmark's ID dataset
    (``benchmark_std``); None: the dataset's ``Normalize`` std, else the model's
    ``pretrained_cfg["std"]``, else a ValueError (never a silent ImageNet default).
    """
    if isinstance(std, str):
        if std != "benchmark":
            raise ValueError(f"ODIN std must be numbers or 'benchmark', got {std!r}")
        if benchmark is None:
            raise ValueError("ODIN std='benchmark' needs the benchmark (benchmark=...)")
        return benchmark_std(benchmark)
    if std is not None:
        return tuple(float(v) for v in torch.as_tensor(std, dtype=torch.float64).flatten())
    found = _dataset_std(dataset)
    if found is None and model is not None:
        found = model_std(model)
    if found is None:
        raise ValueError(
            "ODIN (variant='openood') divides the gradient sign by the normalisation std, and "
            "neither the dataset's transform nor the model's pretrained_cfg gives one: pass "
            "std=(s_r, s_g, s_b), std='benchmark' (OpenOOD's behaviour), or variant='react'"
        )
    return found


# ----------------------------------------------------------------------------- cache


def _store(cache: Any) -> Any:
    if cache is None or cache is False:
        return None
    from shapeood.features.extraction import _resolve_cache

    return _resolve_cache(cache)


def _entry_key(identity: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    from shapeood.features.keys import slug

    if identity.get("key") is None:
        return None
    payload = json.dumps(
        {"kind": KIND, "features_key": identity["key"], "params": dict(params)},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.blake2b(payload.encode(), digest_size=10).hexdigest()
    return f"{KIND}__{slug(str(identity['model']))}__{digest}"


def _load(store: Any, key: str) -> PerturbationResult | None:
    got = store.get(key, mmap=False)
    if got is None:
        return None
    arrays, _ = got
    if set(ARRAYS) - set(arrays) or len({len(arrays[a]) for a in ARRAYS}) != 1:
        store.remove(key)
        return None
    return PerturbationResult(*(torch.from_numpy(np.array(arrays[a])) for a in ARRAYS))


# ----------------------------------------------------------------------------- scoring


def _point_params(detector_params: Mapping[str, Any]) -> dict[str, Any]:
    det = ODIN(**{k: v for k, v in detector_params.items() if k in ODIN._param_names()})
    det._validate_params()
    return det.get_params()


def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def perturbation_scores(
    model: Any,
    dataset: Any,
    points: Sequence[Mapping[str, Any]],
    *,
    benchmark: Any = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int | None = None,
    progress: bool = False,
    cache: Any = None,
) -> list[PerturbationResult]:
    """ODIN results over ``dataset`` for each parameter point (one pass over the data).

    Args:
        model: an ``nn.Module`` classifier or a FeatureModel (its wrapped network is run).
        dataset: yields ``(normalised float image, label)`` (the model's transform applied).
        points: ODIN parameters per point (``temperature``, ``noise``, ``variant``, ``std``);
            missing keys take the ODIN defaults.
        benchmark: resolves ``std="benchmark"`` (a Benchmark or its name).
        cache: True (the default feature cache), a folder, a FeatureCache, or None/False.

    Returns:
        one :class:`PerturbationResult` per point, in order. Points already in the cache are
        read back (checksums verified); the others are computed together, per batch one
        forward with the graph, one backward per temperature, one forward per point.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    params = [_point_params(p) for p in points]
    for p in params:
        if p["variant"] == "openood":
            p["std"] = resolve_std(p["std"], model, dataset, benchmark)
        elif isinstance(p["std"], str):
            p["std"] = None
    store = _store(cache)
    identity: Mapping[str, Any] = {}
    if store is not None:
        from shapeood.features.extraction import describe

        identity = describe(model, dataset)
        if identity.get("key") is None:
            store = None
    keys = [None if store is None else _entry_key(identity, p) for p in params]
    results: list[PerturbationResult | None] = [
        None if k is None else _load(store, k) for k in keys
    ]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        computed = _compute(
            model, dataset, [params[i] for i in todo], batch_size, device, num_workers, progress
        )
        for i, result in zip(todo, computed, strict=True):
            results[i] = result
            if keys[i] is not None:
                meta = {
                    "model": identity.get("model"),
                    "dataset": identity.get("dataset"),
                    "num_samples": len(result.scores),
                    "params": params[i],
                    "features_key": identity.get("key"),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                arrays = {a: getattr(result, a) for a in ARRAYS}
                store.put(keys[i], arrays, meta, kind=KIND)
    return [r for r in results if r is not None]


def _compute(
    model: Any,
    dataset: Any,
    params: list[dict[str, Any]],
    batch_size: int,
    device: str | torch.device,
    num_workers: int | None,
    progress: bool,
) -> list[PerturbationResult]:
    forward = _logit_function(model)
    network = getattr(model, "model", model)
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for p in params:
        std = None if p["std"] is None else tuple(p["std"])
        groups.setdefault((p["variant"], std), []).append(
            (float(p["temperature"]), float(p["noise"]))
        )
    dev = torch.device(device)
    if num_workers is None:
        from shapeood.features.extraction import default_num_workers

        num_workers = default_num_workers(dataset, batch_size=batch_size)
    was_training = getattr(network, "training", False)
    if hasattr(network, "eval"):
        network.eval().to(dev)
    loader = DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=False,
        num_workers=int(num_workers),
        pin_memory=dev.type == "cuda",
    )
    scores: dict[tuple, list[torch.Tensor]] = {}
    preds: dict[tuple, list[torch.Tensor]] = {}
    labels: list[torch.Tensor] = []
    bar = progress_bar(
        len(dataset), f"odin {getattr(dataset, 'name', '')}".strip(), progress=progress
    )
    try:
        for batch in loader:
            images, y = _split(batch)
            x = torch.as_tensor(images).to(dev)
            if not labels:  # checked once, on the first batch
                if not x.is_floating_point() or x.ndim < 2:
                    raise ValueError(
                        f"ODIN needs normalised float images (N, C, H, W), got "
                        f"{tuple(x.shape)} of dtype {x.dtype}: give the dataset the model's "
                        "transform"
                    )
                for _, std in groups:
                    if std is not None:
                        check_std(std, x.shape[1])
            for (variant, std), points in groups.items():
                for point, logits in perturbed_logits(forward, x, points, variant, std).items():
                    key = (variant, std, *point)
                    scores.setdefault(key, []).append(
                        torch.softmax(logits, dim=1).amax(dim=1).detach().cpu().float()
                    )
                    preds.setdefault(key, []).append(logits.argmax(dim=1).detach().cpu())
            n = x.shape[0]
            y = torch.full((n,), -1) if y is None else torch.as_tensor(y).reshape(n)
            labels.append(y.to(torch.int64))
            bar.update(n)
    finally:
        bar.close()
        if hasattr(network, "train"):
            network.train(was_training)
    if not labels:
        raise ValueError("the dataset is empty: nothing to score")
    all_labels = torch.cat(labels)
    out = []
    for p in params:
        std = None if p["std"] is None else tuple(p["std"])
        key = (p["variant"], std, float(p["temperature"]), float(p["noise"]))
        out.append(PerturbationResult(torch.cat(scores[key]), torch.cat(preds[key]), all_labels))
    return out


def score_inputs(
    detector: ODIN,
    model: Any,
    dataset: Any,
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = False,
    cache: Any = None,
    *,
    benchmark: Any = None,
    num_workers: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scores, preds, labels)`` of one ODIN detector over ``dataset``."""
    (result,) = perturbation_scores(
        model, dataset, [detector.get_params()], benchmark=benchmark, batch_size=batch_size,
        device=device, num_workers=num_workers, progress=progress, cache=cache,
    )  # fmt: skip
    return result.scores, result.preds, result.labels
