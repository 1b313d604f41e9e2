"""``extract``: run the backbone once over a dataset, keep pooled features and logits.

One forward pass per batch gives the pooled penultimate features ``h``; the logits are the
classifier head applied to them, ``h @ W.T + b``, in float32. Results are cached on disk under a
content key (weights, split layer, transform, dataset identity, precision), written in chunks so
that an interrupted run resumes where it stopped, and sharded over ranks when
``torch.distributed`` is initialised.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from shapeood import distributed as dist_utils
from shapeood.data.decode import prepare_decoding
from shapeood.errors import CorruptCacheError
from shapeood.features.cache import ChunkPlan, FeatureCache, MemoryChunks, report_corrupt
from shapeood.features.featureset import FeatureSet
from shapeood.features.keys import (
    cache_key,
    dataset_fingerprint,
    dataset_name,
    dataset_transform,
    has_unstable_repr,
    row_selection,
    transform_repr,
    weights_hash,
)
from shapeood.head import LinearHead

CHUNK_BATCHES = 8  # default chunk = 8 batches: the unit of resumption
MAX_AUTO_WORKERS = 8


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def is_file_backed(dataset: Any) -> bool:
    """Whether ``dataset`` (through ``Subset``/transform wrappers) decodes image files."""
    for _ in range(16):
        if callable(getattr(dataset, "path_of", None)):
            return True
        if isinstance(getattr(dataset, "samples", None), list) and callable(
            getattr(dataset, "loader", None)
        ):
            return True  # torchvision ImageFolder / DatasetFolder
        inner = getattr(dataset, "dataset", None)
        if inner is None:
            return False
        dataset = inner
    return False


def default_num_workers(dataset: Any, rows: int | None = None, batch_size: int = 256) -> int:
    """DataLoader workers when none are asked for: ``min(8, cores - 1)`` (at least 1) for image
    files (decoding then overlaps the forward passes), 0 for in-memory data and for fewer than
    two batches (where starting a worker costs more than it saves)."""
    n = len(dataset) if rows is None else rows
    if not is_file_backed(dataset) or n < 2 * int(batch_size):
        return 0
    return max(1, min(MAX_AUTO_WORKERS, available_cores() - 1))


class _BackgroundWriter:
    """Chunk writes of one extraction in a helper thread, at most ``depth`` in flight.

    Cache writes (``np.save`` + fsync) overlap the next batches' forward passes; errors surface
    at the next write or at ``close``.
    """

    def __init__(self, sink: Any, depth: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.sink = sink
        self.depth = depth
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shapeood-cache")
        self.pending: list[Any] = []

    def write(self, *args: Any) -> None:
        while len(self.pending) >= self.depth:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self.sink.write, *args))

    def close(self) -> None:
        try:
            for future in self.pending:
                future.result()
        finally:
            self.pending = []
            self.pool.shutdown(wait=True)


def is_feature_model(model: Any) -> bool:
    """Whether ``model`` already follows the FeatureModel contract (``features`` + ``head``)."""
    return callable(getattr(model, "features", None)) and isinstance(
        getattr(model, "head", None), LinearHead
    )


def as_feature_model(model: Any) -> Any:
    """``model`` itself when it is a FeatureModel, else ``shapeood.models.adapt(model)``."""
    if is_feature_model(model):
        return model
    if isinstance(model, nn.Module):
        from shapeood.models import adapt

        return adapt(model)
    raise ValueError(
        f"model must be a torch nn.Module or a FeatureModel (shapeood.models.adapt), "
        f"got {type(model).__name__}"
    )


def _network(fm: Any) -> nn.Module:
    """The module whose parameters produce the features (for device moves and hashing)."""
    if isinstance(fm, nn.Module):
        return fm
    inner = getattr(fm, "model", None)
    if isinstance(inner, nn.Module):
        return inner
    raise ValueError(
        "the FeatureModel has no nn.Module to run: expected it or its .model to be one"
    )


def _hashed_module(fm: Any, network: nn.Module) -> nn.Module:
    """The wrapped classifier if any (the same across ``adapt`` calls), else ``network``."""
    inner = getattr(fm, "model", None)
    return inner if isinstance(inner, nn.Module) else network


def _model_name(fm: Any) -> str:
    cfg = getattr(fm, "pretrained_cfg", None) or {}
    for field in ("name", "architecture", "model"):
        if cfg.get(field):
            return str(cfg[field])
    inner = getattr(fm, "model", fm)
    return type(inner).__name__


def _resolve_device(device: str | torch.device | None, network: nn.Module) -> torch.device:
    if device is None:
        first = next(network.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _amp_dtype(amp: bool | str | torch.dtype, device: torch.device) -> torch.dtype | None:
    """``None`` (float32), or the autocast dtype: bfloat16 on CPU, float16 on CUDA by default."""
    if amp is False or amp is None:
        return None
    if amp is True:
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "half": torch.float16,
    }
    if isinstance(amp, torch.dtype) and amp in (torch.bfloat16, torch.float16):
        return amp
    if isinstance(amp, str) and amp.lower() in names:
        return names[amp.lower()]
    raise ValueError(f"amp must be False, True, 'bf16' or 'fp16', got {amp!r}")


class TransformedDataset(Dataset):
    """``dataset`` with ``transform`` applied to each image; keeps name and fingerprint."""

    def __init__(self, dataset: Any, transform: Any) -> None:
        self.dataset = dataset
        self.transform = transform
        self.name = dataset_name(dataset)

    def fingerprint(self) -> str | None:
        return dataset_fingerprint(self.dataset)

    def rewrap(self, dataset: Any) -> TransformedDataset:
        """The same transform around another dataset (see ``keys.row_selection``)."""
        return TransformedDataset(dataset, self.transform)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        base, row = _through_subsets(self.dataset, i)
        if callable(getattr(base, "transformed_item", None)) and base.transform is None:
            return base.transformed_item(row, self.transform)  # image files: exact fast decode
        item = self.dataset[i]
        if isinstance(item, (tuple, list)):
            return (self.transform(item[0]), *item[1:])
        return self.transform(item)


def _through_subsets(dataset: Any, i: int) -> tuple[Any, int]:
    """The dataset under any ``Subset``s and the row that index ``i`` names in it."""
    while isinstance(dataset, Subset):
        i = int(dataset.indices[i])
        dataset = dataset.dataset
    return dataset, i


def _needs_model_transform(dataset: Any) -> bool:
    """A dataset that yields raw images (PIL or uint8 tensors) and has no transform of its own."""
    if dataset_transform(dataset) is not None or len(dataset) == 0:
        return False
    item = dataset[0]
    image = item[0] if isinstance(item, (tuple, list)) else item
    if isinstance(image, torch.Tensor):
        return image.dtype == torch.uint8
    return type(image).__module__.startswith("PIL")


def _with_input_transform(fm: Any, dataset: Any) -> tuple[Any, str]:
    """Apply the model's own preprocessing to a raw-image dataset; return it and the repr."""
    if _needs_model_transform(dataset):
        cfg = getattr(fm, "pretrained_cfg", None)
        if not cfg:
            raise ValueError(
                "the dataset yields raw images and has no transform, and the model has no "
                "pretrained_cfg to build one: give the dataset a transform "
                "(shapeood.models.transform_for(model))"
            )
        from shapeood.models import transform_for

        transform = transform_for(cfg)
        return TransformedDataset(dataset, transform), transform_repr(transform)
    return dataset, transform_repr(dataset_transform(dataset))


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, (tuple, list)):
        images, labels = batch[0], batch[1] if len(batch) > 1 else None
    else:
        images, labels = batch, None
    if labels is not None and not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    return images, labels


class _Runner:
    """Forward passes of one FeatureModel on one device: features and head logits per batch."""

    def __init__(self, fm: Any, device: torch.device, amp_dtype, channels_last: bool) -> None:
        self.fm = fm
        self.device = device
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.head = fm.head.to(device=device, dtype=torch.float32)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            h = self.fm.features(x)
        if h.ndim != 2:
            raise ValueError(
                f"the feature model returned shape {tuple(h.shape)}; features(x) must return "
                "pooled (N, D) features"
            )
        h = h.float()
        return h, self.head(h)


def _chunk_stream(
    runner: _Runner, loader: DataLoader, chunks: list[int], plan: ChunkPlan, bar: Any
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(chunk, features, logits, labels)`` (CPU) for ``chunks`` in order.

    The loader walks exactly the rows of ``chunks``, concatenated; batches may straddle chunks.
    """
    pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    pending_rows = 0
    queue = list(chunks)

    def take(n: int):
        nonlocal pending, pending_rows
        parts = [torch.cat([p[j] for p in pending]) for j in range(3)]
        head = [p[:n].to("cpu") for p in parts]
        rest = [p[n:] for p in parts]
        pending = [tuple(rest)] if rest[0].shape[0] else []
        pending_rows -= n
        return head

    for batch in loader:
        images, labels = _split_batch(batch)
        h, logits = runner(images)
        n = h.shape[0]
        y = (
            torch.full((n,), -1, dtype=torch.int64)
            if labels is None
            else labels.reshape(n).to(torch.int64)
        )
        pending.append((h, logits, y.to(h.device)))
        pending_rows += n
        bar.update(n)
        while queue:
            start, stop = plan.bounds(queue[0])
            if pending_rows < stop - start:
                break
            f, lg, lb = take(stop - start)
            yield queue.pop(0), f, lg, lb
    if queue:
        raise RuntimeError(f"the data loader ended before chunks {queue} were complete")


def _progress_bar(total: int, enabled: bool, desc: str):
    from shapeood import progress as _progress

    return _progress.bar(total, desc, unit="img", progress=enabled)


def _resolve_cache(cache: Any) -> FeatureCache | None:
    if cache is False or cache is None:
        return None
    if cache is True:
        return FeatureCache()
    if isinstance(cache, FeatureCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return FeatureCache(cache)
    raise ValueError(f"cache must be True, False, a folder or a FeatureCache, got {cache!r}")


def describe(
    model: Any, dataset: Any, amp: bool | str = False, device: str = "cpu", key: str | None = None
) -> dict[str, Any]:
    """The identity of ``extract(model, dataset)``: its cache ``key`` and the parts behind it."""
    fm = as_feature_model(model)
    network = _network(fm)
    dataset, transform_text = _with_input_transform(fm, dataset)
    dev = _resolve_device(device, network)
    amp_dtype = _amp_dtype(amp, dev)
    fingerprint = dataset_fingerprint(dataset)
    identity = fingerprint if fingerprint is not None else (None if key is None else f"key:{key}")
    components = {
        "weights": weights_hash(_hashed_module(fm, network), fm.head),
        "layer": str(getattr(fm, "layer_name", "")),
        "transform": transform_text,
        "dataset": identity,
        "precision": "float32" if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
    }
    name, data = _model_name(fm), dataset_name(dataset)
    return {
        "key": None if identity is None else cache_key(components, name),
        "model": name,
        "dataset": data,
        "fingerprint": fingerprint,
        "transform_unstable": has_unstable_repr(transform_text),
        **{f"{k}_id" if k in ("weights", "dataset") else k: v for k, v in components.items()},
    }


def extract(
    model: Any,
    dataset: Any,
    batch_size: int = 256,
    device: str | torch.device | None = "cpu",
    amp: bool | str = False,
    channels_last: bool | None = None,
    num_workers: int | None = None,
    cache: bool | str | os.PathLike | FeatureCache = True,
    progress: bool = True,
    *,
    key: str | None = None,
    chunk_size: int | None = None,
    refresh: bool = False,
    recompute: bool | None = None,
) -> FeatureSet:
    """Pooled penultimate features and logits of ``model`` on every sample of ``dataset``.

    Args:
        model: an ``nn.Module`` classifier (split by ``shapeood.models.adapt``) or a FeatureModel
            (``features(x) -> (N, D)``, ``head: LinearHead``). It is put in eval mode and moved
            to ``device`` (its train/eval mode is restored afterwards).
        dataset: yields ``(image, label)``; a dataset of raw images without a transform gets the
            model's preprocessing (``shapeood.models.transform_for``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"``, or None for the model's device.
        amp: autocast (bfloat16 on CPU, float16 on CUDA; or ``"bf16"``/``"fp16"``). Features are
            stored as float32 either way; the precision is part of the cache key.
        channels_last: NHWC inputs and weights; default on for convolutional nets on CUDA.
        num_workers: DataLoader worker processes; None (default) chooses
            ``default_num_workers``: ``min(8, cores - 1)`` for image files, else 0.
        cache: True (``$SHAPEOOD_CACHE/features``), a folder, a FeatureCache, or False.
        key: names the data when ``dataset`` has no ``fingerprint()`` (else it is not cached).
        chunk_size: rows per cache chunk, the unit of resumption (default 8 batches).
        refresh: recompute even when a complete cached set exists.
        recompute: what to do with a corrupt cache entry (a file failing its checksum, an
            unreadable meta, chunk or progress file): True reports it in one line and
            recomputes it; False raises ``CorruptCacheError`` naming ``shapeood cache clear``;
            None (default): True unless ``features.cache.set_recompute_default(False)``.

    The cache is keyed by content (weights digest computed at this call, split layer,
    transform, the dataset's content fingerprint, precision), never by the dataset's name: the
    same images under another name reuse the entry (``cache list`` shows every name). Rows of a
    dataset (``Subset``, e.g. ``--max-samples``) whose full set is cached are sliced from it
    without running the network.

    Returns:
        FeatureSet with ``features`` (N, D) float32, ``logits = features @ W.T + b`` (N, C)
        float32, ``labels`` (N,) int64 (-1 where the dataset gives none), and ``meta`` (cache
        ``key`` and its parts, ``path`` of the cache entry when cached). Under
        ``torch.distributed`` every rank computes a share and returns the same full set.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    fm = as_feature_model(model)
    network = _network(fm)
    dataset, _ = _with_input_transform(fm, dataset)
    num_samples = len(dataset)
    if num_samples == 0:
        raise ValueError(f"dataset {dataset_name(dataset)!r} is empty: nothing to extract")
    dev = _resolve_device(device, network)
    amp_dtype = _amp_dtype(amp, dev)
    group = dist_utils.current_group()
    if group.distributed and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", dist_utils.local_cuda_index())  # one GPU per rank
    store = _resolve_cache(cache)

    _warn_random_weights(fm)
    identity = describe(fm, dataset, amp=amp, device=str(dev), key=key)
    if store is not None and identity["key"] is None:
        warnings.warn(
            f"dataset {identity['dataset']!r} has no fingerprint(): its features are not cached. "
            "Pass key='a name for this data' to extract() to cache them.",
            stacklevel=2,
        )
        store = None
    if store is not None and identity["transform_unstable"]:
        warnings.warn(
            "the dataset transform's repr holds a memory address, so its cache key changes in "
            "every process: give custom transforms a stable __repr__ to reuse cached features",
            stacklevel=2,
        )
    meta: dict[str, Any] = {
        **{k: v for k, v in identity.items() if k != "transform_unstable"},
        "num_samples": num_samples,
        "amp": identity["precision"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    chunk_rows = int(chunk_size) if chunk_size else int(batch_size) * CHUNK_BATCHES
    sink: Any = None
    if store is not None:
        entry_key = identity["key"]
        if group.is_main and refresh:
            store.remove(entry_key)
        fs = None
        if group.is_main:
            fs = _cached(store, entry_key, identity["dataset"], recompute)
            if fs is None and not refresh:
                fs = _sliced_from_full(store, fm, dataset, amp, dev, key, meta, recompute)
        if dist_utils.broadcast_object(group, fs is not None):
            return _share(group, fs)
        if group.is_main:
            sink = store.open(entry_key, num_samples, chunk_rows, meta, recompute=recompute)
            sink.start()
            plan_info = (sink.chunk_size, sink.missing_chunks())
        else:
            plan_info = None
        chunk_rows, missing = dist_utils.broadcast_object(group, plan_info)
    else:
        missing = list(range(ChunkPlan(num_samples, chunk_rows).num_chunks))
        if group.is_main:
            sink = MemoryChunks(num_samples, chunk_rows)
    plan = ChunkPlan(num_samples, chunk_rows)

    mine = missing[group.rank :: group.world_size]
    modes = {m: m.training for m in network.modules()}
    network.eval()
    network.to(dev)
    if channels_last is None:
        channels_last = dev.type == "cuda" and any(
            isinstance(m, nn.Conv2d) for m in network.modules()
        )
    if channels_last:
        network.to(memory_format=torch.channels_last)
    runner = _Runner(fm, dev, amp_dtype, bool(channels_last))
    rows = [r for i in mine for r in range(*plan.bounds(i))]
    if num_workers is None:
        num_workers = default_num_workers(dataset, len(rows), int(batch_size))
    if int(num_workers) > 0 and is_file_backed(dataset):
        prepare_decoding()  # once here, not once in every forked worker
    loader = DataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=rows,
        num_workers=int(num_workers),
        pin_memory=dev.type == "cuda",
        persistent_workers=False,
    )
    width = (fm.head.in_features, fm.head.num_classes)
    bar = _progress_bar(len(rows), progress and group.is_main, f"extract {identity['dataset']}")
    writer = sink if group.distributed or isinstance(sink, MemoryChunks) else None
    if writer is None:
        writer = _BackgroundWriter(sink)
    try:
        with torch.inference_mode():
            stream = _chunk_stream(runner, loader, mine, plan, bar)
            rounds = -(-len(missing) // group.world_size)
            for r in range(rounds):
                item = next(stream, None) if r < len(mine) else None
                if not group.distributed:
                    writer.write(*item)
                    continue
                gathered = _gather_round(group, item, width, plan.chunk_size)
                if group.is_main:
                    for k, parts in enumerate(gathered):
                        if parts is not None:
                            sink.write(missing[r * group.world_size + k], *parts)
            for _ in stream:  # let the loader finish (and check that every row arrived)
                pass
    finally:
        if isinstance(writer, _BackgroundWriter):
            writer.close()
        bar.close()
        for module, training in modes.items():  # restore each module's own mode
            module.training = training
    fs = sink.finish(meta) if group.is_main else None
    return _share(group, fs)


def _warn_random_weights(fm: Any) -> None:
    """A model built without weights (``random_weights=True``) gives meaningless OOD numbers."""
    cfg = getattr(fm, "pretrained_cfg", None) or getattr(
        getattr(fm, "model", None), "pretrained_cfg", None
    )
    if isinstance(cfg, dict) and cfg.get("random_weights"):
        from shapeood.errors import DegenerateResultWarning

        warnings.warn(
            f"model {_model_name(fm)} runs on random, never-loaded weights (--random-weights): "
            "its features and every OOD number computed from them describe an untrained network",
            DegenerateResultWarning,
            stacklevel=3,
        )


def _cached(store: FeatureCache, key: str, name: str, recompute: bool | None) -> FeatureSet | None:
    """The complete entry ``key`` (recording ``name``), or None; a corrupt one is reported."""
    if key not in store:
        return None
    try:
        fs = store.load(key)
    except CorruptCacheError as err:
        report_corrupt(err, recompute)
        store.remove(key)
        return None
    shutil.rmtree(store.path(key) / "chunks", ignore_errors=True)
    store.add_name(key, name)
    names = list(fs.meta.get("names") or [])
    if name not in names:
        fs.meta["names"] = [*names, name]
    fs.meta["dataset"] = name
    return fs


def _sliced_from_full(
    store: FeatureCache, fm: Any, dataset: Any, amp: Any, dev: torch.device, key: Any,
    meta: dict[str, Any], recompute: bool | None,
) -> FeatureSet | None:  # fmt: skip
    """Rows of a cached full set when ``dataset`` is a row selection of one, else None."""
    selection = row_selection(dataset)
    if selection is None:
        return None
    full, rows = selection
    try:
        full_key = describe(fm, full, amp=amp, device=str(dev), key=key)["key"]
    except (TypeError, ValueError, OSError):
        return None
    if full_key is None:
        return None
    fs = _cached(store, full_key, dataset_name(full), recompute)
    if fs is None:
        return None
    index = torch.as_tensor(rows, dtype=torch.int64)
    if len(rows) and (int(index.min()) < 0 or int(index.max()) >= len(fs)):
        return None
    info = dict(meta, sliced_from=full_key, path=fs.meta.get("path"))
    return FeatureSet(fs.features[index], fs.logits[index], fs.labels[index], info)


def _gather_round(group, item, width: tuple[int, int], capacity: int):
    """All ranks' chunks of one round as ``[(features, logits, labels) | None]`` by rank."""
    f = lg = lb = None
    if item is not None:
        _, f, lg, lb = item
    feats = dist_utils.all_gather_rows(group, f, width[0], torch.float32, capacity)
    logits = dist_utils.all_gather_rows(group, lg, width[1], torch.float32, capacity)
    labels = dist_utils.all_gather_rows(
        group, None if lb is None else lb.reshape(-1, 1), 1, torch.int64, capacity
    )
    return [
        None if a is None else (a, b, c.reshape(-1))
        for a, b, c in zip(feats, logits, labels, strict=True)
    ]


def _share(group: dist_utils.Group, fs: FeatureSet | None) -> FeatureSet:
    """Rank 0's FeatureSet on every rank."""
    if not group.distributed:
        assert fs is not None
        return fs
    meta = dist_utils.broadcast_object(group, fs.meta if group.is_main else None)
    tensors = [
        dist_utils.broadcast_tensor(group, getattr(fs, name) if group.is_main else None)
        for name in ("features", "logits", "labels")
    ]
    if group.is_main:
        return fs
    return FeatureSet(*tensors, meta=meta)
