"""ODIN (Liang, Li & Srikant, ICLR 2018): temperature scaling plus input perturbation.

On a normalised image batch ``x``: ``yhat = argmax f(x)``; ``L = CE(f(x) / T, yhat)``;
``g = +1 where dL/dx >= 0 else -1`` (an exactly-zero gradient gives +1); OpenOOD divides channel
c of ``g`` by the normalisation std ``s_c`` (``variant="openood"``, the default) while the
ReAct/LHAct/HIMPLoS copies do not (``variant="react"``); ``x' = x - noise * g``;
``score = max softmax(f(x') / T)``, ``pred = argmax f(x')``.

The std ``s``: ``std=(...)`` when given; else the std of the normalisation the images went
through (the dataset's ``Normalize`` transform, or the model's ``pretrained_cfg["std"]``); else
a ``ValueError`` (there is no silent ImageNet default). ``std="benchmark"`` is OpenOOD's own
behaviour: its ODIN divides by the std of the benchmark's ID dataset (CIFAR-10's for ``cifar10``,
see ``OPENOOD_DATASET_STD``) whatever the model's normalisation; use it to reproduce OpenOOD's
tables exactly. It is resolved where the benchmark is known (``so.evaluate``,
``shapeood.features.perturbation``).

Cost: ``f(x)`` once with its graph kept, one backward per temperature, then one forward per
noise value (``perturbed_logits`` over a grid), so an APS grid of ``T x eps`` costs
``1 + |T|`` passes plus ``|T| * |eps|`` forwards, not ``3 |T| |eps|``.

ODIN needs the network: use ``score_inputs(model, x)`` / ``predict_inputs(model, x)``. On cached
features only the noise-free part exists (``noise=0``: max softmax of ``z / T``). Defaults follow
OpenOOD (T = 1000, noise = 0.0014; APS over T in {1, 10, 100, 1000} x noise in {0.0014, 0.0028}).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from shapeood.detectors.base import Detector
from shapeood.detectors.constraints import TEMPERATURE, Constraint, OneOf, Real
from shapeood.detectors.registry import register_detector
from shapeood.scores import by_row_blocks

VARIANTS = ("openood", "react")
# The per-dataset std OpenOOD v1.5's ODIN divides by (``normalization_dict`` of its
# preprocessors), keyed by the ID dataset of the benchmark.
OPENOOD_DATASET_STD: dict[str, tuple[float, float, float]] = {
    "cifar10": (0.2470, 0.2435, 0.2616),
    "cifar100": (0.2675, 0.2565, 0.2761),
    "imagenet": (0.229, 0.224, 0.225),
    "imagenet200": (0.229, 0.224, 0.225),
}


def benchmark_std(benchmark: Any) -> tuple[float, ...]:
    """The std OpenOOD's ODIN uses on ``benchmark`` (a name or anything with ``.name``).

    ``cifar10_offline`` and other ``cifar10*`` names map to CIFAR-10, ``cifar100*`` to
    CIFAR-100, ``imagenet200*`` and ``imagenet*`` to ImageNet.
    """
    name = str(getattr(benchmark, "name", benchmark)).lower()
    for prefix in ("cifar100", "cifar10", "imagenet200", "imagenet"):
        if name.startswith(prefix):
            return OPENOOD_DATASET_STD[prefix]
    raise ValueError(
        f"std='benchmark' knows OpenOOD's statistics for {', '.join(OPENOOD_DATASET_STD)} only, "
        f"not for benchmark {name!r}: give ODIN std=(s_r, s_g, s_b)"
    )


def model_std(model: Any) -> tuple[float, ...] | None:
    """``pretrained_cfg["std"]`` of a model (or of the network it wraps), else None."""
    for obj in (model, getattr(model, "model", None)):
        cfg = getattr(obj, "pretrained_cfg", None)
        if isinstance(cfg, dict) and cfg.get("std") is not None:
            return tuple(float(v) for v in cfg["std"])
    return None


def check_std(std: Any, channels: int) -> tuple[float, ...]:
    """``std`` as a tuple of one positive value or one per channel; ValueError otherwise."""
    try:
        values = tuple(float(v) for v in torch.as_tensor(std, dtype=torch.float64).flatten())
    except (TypeError, ValueError, RuntimeError):
        values = ()
    if len(values) not in (1, channels) or not all(v > 0 and math.isfinite(v) for v in values):
        raise ValueError(
            f"ODIN std must hold one positive value per input channel ({channels}), got {std!r}"
        )
    return values


def perturbed_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    points: Iterable[tuple[float, float]],
    variant: str = "openood",
    std: Sequence[float] | None = None,
) -> dict[tuple[float, float], torch.Tensor]:
    """``{(T, noise): f(x - noise * g_T) / T}`` for every ``(T, noise)`` of ``points``.

    One forward with its graph kept, one backward per distinct temperature (``g_T`` from
    ``CE(f(x) / T, argmax f(x))``), one forward per point. Each result equals what a separate
    run at that point computes. ``std`` is required for ``variant="openood"``.
    """
    by_temperature: dict[float, list[float]] = {}
    for temperature, noise in points:
        noises = by_temperature.setdefault(float(temperature), [])
        if float(noise) not in noises:
            noises.append(float(noise))
    x = images.detach().clone().requires_grad_(True)
    scale = None
    if variant == "openood":
        if std is None:
            raise ValueError("the OpenOOD variant of ODIN needs the normalisation std")
        s = torch.as_tensor(tuple(std), dtype=x.dtype, device=x.device).flatten()
        scale = s.view(1, -1, *([1] * (x.ndim - 2)))
    out: dict[tuple[float, float], torch.Tensor] = {}
    with torch.enable_grad():
        logits = forward(x)
        target = logits.detach().argmax(dim=1)
    base = x.detach()
    last = len(by_temperature) - 1
    for i, (temperature, noises) in enumerate(by_temperature.items()):
        with torch.enable_grad():
            loss = F.cross_entropy(logits / temperature, target)
            (grad,) = torch.autograd.grad(loss, x, retain_graph=i < last)
        sign = torch.where(grad >= 0, 1.0, -1.0).to(x.dtype)
        if scale is not None:
            sign = sign / scale
        with torch.no_grad():
            for noise in noises:
                out[(temperature, noise)] = forward(base - noise * sign) / temperature
    return out


def _logit_function(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The callable that maps images to logits (an adapted model's wrapped network)."""
    wrapped = getattr(model, "model", None)
    if hasattr(model, "features") and hasattr(model, "head") and callable(wrapped):
        return wrapped
    if not callable(model):
        raise ValueError(f"ODIN needs a callable model (images -> logits), got {type(model)}")
    return model


@register_detector
class ODIN(Detector):
    """ODIN: max softmax at temperature ``T`` after a gradient-sign step on the input."""

    name = "odin"
    description = "ODIN: temperature-scaled MSP after an input perturbation (needs the model)"
    requires_model = True
    default_sweep: ClassVar[dict[str, list]] = {
        "temperature": [1, 10, 100, 1000],
        "noise": [0.0014, 0.0028],
    }
    param_constraints: ClassVar[dict[str, Constraint]] = {
        "temperature": TEMPERATURE,
        "noise": Real(ge=0),
        "variant": OneOf(VARIANTS),
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "openood": {"temperature": 1000, "noise": 0.0014, "variant": "openood"},
        "himplos": {"temperature": 1000, "noise": 0.004, "variant": "react"},
    }

    def __init__(
        self,
        *,
        temperature: float = 1000,
        noise: float = 0.0014,
        variant: str = "openood",
        std: Sequence[float] | str | None = None,
    ) -> None:
        self.temperature = temperature
        self.noise = noise
        self.variant = variant
        self.std = std

    def _check_params(self) -> None:
        if isinstance(self.std, str) and self.std != "benchmark":
            raise ValueError(f"ODIN std must be numbers or 'benchmark', got {self.std!r}")

    # ------------------------------------------------------------ cached features
    def _score_from_logits(self, logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.noise != 0:
            raise ValueError(
                "ODIN perturbs the input image, which cached features cannot do: call "
                "score_inputs(model, images), or set noise=0 for temperature scaling only"
            )
        t = float(self.temperature)
        # in row blocks: the tempered copy and the softmax stay in cache (scores.BLOCK_VALUES)
        return by_row_blocks(logits, lambda rows: torch.softmax(rows / t, dim=1).amax(dim=1))

    # ------------------------------------------------------------ images
    def resolve_std(self, model: Any, channels: int) -> tuple[float, ...] | None:
        """The std the OpenOOD variant divides by (None for the ReAct variant)."""
        if self.variant != "openood":
            return None
        if isinstance(self.std, str):
            if self.std == "benchmark":
                raise ValueError(
                    "ODIN std='benchmark' needs the benchmark: it is resolved by so.evaluate "
                    "and shapeood.features.perturbation.perturbation_scores(benchmark=...); "
                    "on a bare batch give std=(...) numbers"
                )
            raise ValueError(f"ODIN std must be numbers or 'benchmark', got {self.std!r}")
        std = self.std if self.std is not None else model_std(model)
        if std is None:
            raise ValueError(
                "ODIN (variant='openood') divides the gradient sign by the normalisation std, "
                "and this model has no pretrained_cfg['std']: pass std=(s_r, s_g, s_b) (the std "
                "of your Normalize transform), std='benchmark' in so.evaluate, or "
                "variant='react'"
            )
        return check_std(std, channels)

    def _perturbed_logits(self, model: Any, images: Any) -> torch.Tensor:
        self._validate_params()
        forward = _logit_function(model)
        x = torch.as_tensor(images)
        if not x.is_floating_point() or x.ndim < 2:
            raise ValueError(
                f"ODIN needs a normalised float image batch (N, C, H, W), got {tuple(x.shape)} "
                f"of dtype {x.dtype}"
            )
        std = self.resolve_std(model, x.shape[1])
        point = (float(self.temperature), float(self.noise))
        return perturbed_logits(forward, x, [point], self.variant, std)[point]

    def score_and_predict_inputs(
        self, model: Any, images: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(score, pred)`` on a normalised image batch; the model should be in eval mode."""
        logits = self._perturbed_logits(model, images)
        return torch.softmax(logits, dim=1).amax(dim=1), logits.argmax(dim=1)

    def score_inputs(self, model: Any, images: Any) -> torch.Tensor:
        """ODIN score (N,) of a normalised image batch, higher = more in-distribution."""
        return self.score_and_predict_inputs(model, images)[0]

    def predict_inputs(self, model: Any, images: Any) -> torch.Tensor:
        """Prediction on the perturbed inputs (OpenOOD's ODIN pred)."""
        return self.score_and_predict_inputs(model, images)[1]
