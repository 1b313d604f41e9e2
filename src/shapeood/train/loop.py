"""The training loop: cross-entropy, plain or with ISH, resumable and distributed.

One ``Trainer`` covers the ISH recipe of the paper: SGD with Nesterov momentum and two
parameter groups (head weight decay apart, selected by the head's module name), a cosine
learning-rate factor stepped every iteration, mixed precision on GPU, a checkpoint after every
epoch (written atomically) from which a killed run resumes to the very same weights, and
``torchrun`` data parallelism (``DistributedDataParallel`` + ``DistributedSampler``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from shapeood import progress
from shapeood.distributed import Group, all_gather, all_reduce_sum, init_distributed
from shapeood.shaping import check_ish_percentile
from shapeood.train.checkpoint import (
    atomic_save,
    load_checkpoint,
    rng_state,
    seed_everything,
    seed_worker,
    set_rng_state,
)
from shapeood.train.ish import apply_ish, remove_ish
from shapeood.train.optim import make_optimizer
from shapeood.train.schedule import cosine_schedule

CHECKPOINT_NAME = "checkpoint.pt"
FINAL_WEIGHTS_NAME = "model.pt"
LOG_NAME = "log.jsonl"

# Settings that do not change the trained weights: they may differ when a run is resumed.
_RESUME_FREE = ("progress",)


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (defaults: the paper's ImageNet ISH recipe).

    ``batch_size`` is per process (global batch = ``batch_size * world_size``). The learning
    rate follows ``lr * cosine factor`` from 1 to ``min_lr / lr`` over ``epochs * iterations``.
    ``ish=True`` converts ``ish_layers`` (``"head"``, ``"all"`` or names) with
    ``ish_percentile``. ``amp=None`` turns mixed precision on for CUDA only (float16 with a
    gradient scaler; ``amp=True`` on CPU uses bfloat16). ``max_steps_per_epoch`` caps the
    iterations of each epoch (quick runs and throughput checks).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.003
    min_lr: float = 1e-6
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    head_weight_decay: float = 5e-5
    ish: bool = False
    ish_percentile: float = 85.0
    ish_layers: str | list[str] = "head"
    amp: bool | None = None
    seed: int = 0
    num_workers: int = 0
    device: str | None = None
    channels_last: bool = False
    drop_last: bool = False
    max_steps_per_epoch: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}"
            )
        if not self.lr > 0 or self.min_lr < 0:
            raise ValueError(f"need lr > 0 and min_lr >= 0, got lr={self.lr}, min_lr={self.min_lr}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError("max_steps_per_epoch must be >= 1 or None")
        check_ish_percentile(self.ish_percentile)

    def replace(self, **changes: Any) -> TrainConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown training setting(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


@dataclass
class TrainResult:
    """The trained model (unwrapped, ISH layers turned back into plain ones), one record per
    epoch (``epoch``, ``loss``, ``accuracy``, ``lr``, ``images_per_s``, ...) and where the
    checkpoint and the final weights were written (``None`` without ``out_dir``)."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    weights: Path | None = None


EpochCallback = Callable[["Trainer", dict[str, Any]], None]


class Trainer:
    """Train ``model`` on ``train_data`` (a Dataset of ``(image tensor, label)``).

    ``out_dir`` receives ``checkpoint.pt`` after every epoch, ``log.jsonl`` and, at the end,
    ``model.pt`` (the state dict). With ``resume=True`` an existing checkpoint there is
    continued. ``head_name`` names the classifier module (default: found by
    ``shapeood.models.adapt``). ``callbacks`` run after each epoch's checkpoint with
    ``(trainer, record)``.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Dataset,
        config: TrainConfig | None = None,
        *,
        out_dir: str | Path | None = None,
        resume: bool = True,
        head_name: str | None = None,
        callbacks: Sequence[EpochCallback] = (),
    ) -> None:
        self.config = config or TrainConfig()
        self.model = model
        self.train_data = train_data
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.resume = resume
        self.head_name = head_name or _head_module_name(model)
        self.callbacks = list(callbacks)
        self.history: list[dict[str, Any]] = []
        self.dist = Group()

    # ------------------------------------------------------------------ set-up

    def _device(self) -> torch.device:
        name = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(name)
        if device.type == "cuda" and device.index is None and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        return device

    def _loader(self) -> tuple[DataLoader, DistributedSampler, torch.Generator]:
        cfg = self.config
        sampler = DistributedSampler(
            self.train_data,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=cfg.drop_last,
        )
        generator = torch.Generator().manual_seed(cfg.seed + 1000 * self.dist.rank)
        loader = DataLoader(
            self.train_data,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.num_workers,
            generator=generator,
            worker_init_fn=seed_worker,
            pin_memory=self.device.type == "cuda",
            drop_last=cfg.drop_last,
        )
        if len(loader) == 0:
            raise ValueError(
                f"the training set ({len(self.train_data)} samples) gives no batch of "
                f"{cfg.batch_size}: lower batch_size or set drop_last=False"
            )
        return loader, sampler, generator

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    # ------------------------------------------------------------------ run

    def fit(self) -> TrainResult:
        """Train for ``config.epochs`` epochs (continuing a checkpoint when allowed)."""
        cfg = self.config
        self.dist = init_distributed(torch.device(cfg.device or _default_device()).type)
        self.device = self._device()
        seed_everything(cfg.seed + self.dist.rank)

        model = self.model
        if cfg.ish:
            apply_ish(
                model, percentile=cfg.ish_percentile, layers=cfg.ish_layers, head=self.head_name
            )
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)

        loader, sampler, generator = self._loader()
        steps = (
            len(loader)
            if cfg.max_steps_per_epoch is None
            else min(len(loader), cfg.max_steps_per_epoch)
        )
        optimizer = make_optimizer(
            model,
            self.head_name,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
            head_weight_decay=cfg.head_weight_decay,
        )
        scheduler = cosine_schedule(optimizer, cfg.epochs * steps, cfg.lr, cfg.min_lr)
        amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        scaler = torch.amp.GradScaler(self.device.type, enabled=amp and amp_dtype == torch.float16)

        start_epoch = self._maybe_resume(model, optimizer, scheduler, scaler, generator)
        net: nn.Module = model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)

        try:
            for epoch in range(start_epoch, cfg.epochs):
                sampler.set_epoch(epoch)
                record = self._train_epoch(
                    net, loader, steps, epoch, optimizer, scheduler, scaler, amp, amp_dtype
                )
                self.history.append(record)
                self._save_checkpoint(model, optimizer, scheduler, scaler, generator, epoch + 1)
                for callback in self.callbacks:
                    callback(self, record)
        finally:
            if cfg.ish:  # ISH only changes training: hand back plain layers, even on errors
                remove_ish(model)
        weights = None
        if self.out_dir is not None and self.dist.is_main:
            weights = atomic_save(model.state_dict(), self.out_dir / FINAL_WEIGHTS_NAME)
        return TrainResult(model, list(self.history), self.checkpoint_path, weights)

    def _train_epoch(
        self,
        net: nn.Module,
        loader: DataLoader,
        steps: int,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        amp: bool,
        amp_dtype: torch.dtype,
    ) -> dict[str, Any]:
        cfg = self.config
        net.train()
        loss_sum, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        bar = progress.bar(
            steps,
            f"epoch {epoch + 1}/{cfg.epochs}",
            unit="step",
            progress=cfg.progress and self.dist.is_main,
        )
        for step, (images, labels) in enumerate(loader):
            if step >= steps:
                break
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=amp_dtype, enabled=amp):
                logits = net(images)
                loss = F.cross_entropy(logits.float(), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}: "
                    "lower the learning rate (or turn off amp)"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n = labels.shape[0]
            loss_sum += float(loss.detach()) * n
            correct += int((logits.detach().argmax(1) == labels).sum())
            seen += n
            bar.update(1)
            bar.set_postfix_str(f"loss={loss_sum / seen:.4f}, acc={correct / seen:.3f}")
        bar.close()
        elapsed = time.perf_counter() - start
        loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], self.dist, self.device)
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / seen,
            "accuracy": correct / seen,
            "lr": optimizer.param_groups[0]["lr"],
            "images": int(seen),
            "steps": steps,
            "seconds": elapsed,
            "images_per_s": seen / elapsed if elapsed > 0 else math.inf,
        }
        if cfg.progress and self.dist.is_main:
            progress.stage(
                f"epoch {record['epoch']}/{cfg.epochs}: loss {record['loss']:.4f} "
                f"acc {record['accuracy']:.4f} lr {record['lr']:.2e} "
                f"{record['images_per_s']:.1f} img/s"
            )
        return record

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        generator: torch.Generator,
        epochs_done: int,
    ) -> None:
        if self.out_dir is None:
            return
        states = all_gather(rng_state(generator), self.dist)  # every rank's RNG, in rank order
        if not self.dist.is_main:
            return
        checkpoint = {
            "epoch": epochs_done,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": states,
            "world_size": self.dist.world_size,
            "head_name": self.head_name,
            "config": asdict(self.config),
            "history": self.history,
        }
        atomic_save(checkpoint, self.out_dir / CHECKPOINT_NAME)
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        (self.out_dir / LOG_NAME).write_text(lines, encoding="utf-8")

    def _maybe_resume(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        generator: torch.Generator,
    ) -> int:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return 0
        if not self.resume:
            raise ValueError(
                f"{path} exists: pass resume=True (CLI: drop --no-resume) to continue it, "
                "or choose another output folder"
            )
        ckpt = load_checkpoint(path, map_location="cpu")  # load_state_dict moves to the device
        self._check_compatible(ckpt)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"][self.dist.rank], generator)
        self.history = list(ckpt["history"])
        return int(ckpt["epoch"])

    def _check_compatible(self, ckpt: dict[str, Any]) -> None:
        saved = ckpt["config"]
        now = asdict(self.config)
        changed = sorted(k for k in now if k not in _RESUME_FREE and saved.get(k, now[k]) != now[k])
        if changed:
            diffs = ", ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in changed)
            raise ValueError(
                f"checkpoint {self.checkpoint_path} was written with other settings ({diffs}); "
                "resume with the same settings or use another output folder"
            )
        if ckpt["world_size"] != self.dist.world_size:
            raise ValueError(
                f"checkpoint {self.checkpoint_path} comes from {ckpt['world_size']} process(es), "
                f"this run has {self.dist.world_size}: resume with the same number of processes"
            )


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _head_module_name(model: nn.Module) -> str:
    """The classifier module's name, as ``shapeood.models.adapt`` splits the model."""
    if hasattr(model, "layer_name"):
        raise ValueError(
            "pass the classifier itself (feature_model.model), not a FeatureModel, to the trainer"
        )
    from shapeood import models  # train sits above models

    return str(models.adapt(model).layer_name)


def fit_model(
    model: nn.Module,
    train_data: Dataset,
    config: TrainConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: bool = True,
    head_name: str | None = None,
    callbacks: Sequence[EpochCallback] = (),
    **overrides: Any,
) -> TrainResult:
    """Train ``model`` with cross-entropy (``ish=True`` for ISH); keyword overrides change
    ``config`` (e.g. ``fit_model(net, data, epochs=2, ish=True)``). See ``Trainer``."""
    config = (config or TrainConfig()).replace(**overrides)
    trainer = Trainer(
        model,
        train_data,
        config,
        out_dir=out_dir,
        resume=resume,
        head_name=head_name,
        callbacks=callbacks,
    )
    return trainer.fit()
