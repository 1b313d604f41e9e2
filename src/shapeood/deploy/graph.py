"""One traceable graph: image batch -> (logits, score, is_ood), for ONNX and TorchScript.

``feature_network(fm)`` turns an adapted classifier into a module mapping images to the pooled
penultimate features ``h`` (N, D) with plain tensor operations (no hooks): the timm contract
``forward_head(forward_features(x), pre_logits=True)`` where the model follows it, else a copy of
the model whose final linear layer is replaced by ``nn.Identity``. ``score_module(detector)``
writes the fitted detector's shaping and score as torch operations with every constant frozen
(the top-k size ``k = percentile_to_k(D, p)`` is computed here, at export time, from the feature
width). ``DeployGraph`` chains them with the plain head and the threshold:

    h = features(x);  z = W h + b;  score = detector(h, z);  is_ood = score < threshold

``logits`` are the plain classifier's (the class decision is the classifier's own). ODIN has no
such graph: it perturbs the input with a gradient step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shapeood import shaping
from shapeood.head import LinearHead


def _ratio(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """``S1 / S2`` and 0 where ``S2 == 0`` (factor ``exp(0) = 1``), as ``shaping`` does."""
    zero = s2 == 0
    return torch.where(zero, torch.zeros_like(s1), s1 / torch.where(zero, torch.ones_like(s2), s2))


class LogitScore(nn.Module):
    """``energy`` ``T * logsumexp(z / T)``, ``msp`` ``max softmax(z)`` or ``max_logit``."""

    def __init__(self, kind: str, temperature: float = 1.0) -> None:
        super().__init__()
        if kind not in ("energy", "msp", "max_logit"):
            raise ValueError(f"no graph for the logit score {kind!r}")
        self.kind = kind
        self.temperature = float(temperature)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "msp":
            return torch.softmax(z, dim=1).max(dim=1).values
        if self.kind == "max_logit":
            return z.max(dim=1).values
        if self.temperature == 1.0:
            return torch.logsumexp(z, dim=1)
        return self.temperature * torch.logsumexp(z / self.temperature, dim=1)


class _HeadScore(nn.Module):
    """Base: the head ``(W, b)`` as buffers and a logit score; ``forward(h, z) -> score``."""

    def __init__(self, head: LinearHead, score: LogitScore) -> None:
        super().__init__()
        self.register_buffer("weight", head.weight.detach().float().cpu().clone())
        self.register_buffer("bias", head.bias.detach().float().cpu().clone())
        self.score = score

    def linear(self, y: torch.Tensor) -> torch.Tensor:
        return F.linear(y, self.weight, self.bias)


class PlainScore(_HeadScore):
    """MSP, MaxLogit, Energy, ODIN without noise: a score of the plain logits."""

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.score(z)


class ScaleScore(_HeadScore):
    """SCALE: ``W (f h) + b = f (z - b) + b`` with ``f = exp(S1 / S2)``."""

    def __init__(self, head: LinearHead, score: LogitScore, k: int) -> None:
        super().__init__(head, score)
        self.k = int(k)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        s1 = h.sum(dim=1, keepdim=True)
        s2 = torch.topk(h, self.k, dim=1).values.sum(dim=1, keepdim=True)
        factor = torch.exp(_ratio(s1, s2))
        return self.score(factor * (z - self.bias) + self.bias)


class AshScore(_HeadScore):
    """ASH-P/B/S: keep the top-k of ``h`` (as is, as ``S1/k``, or times ``exp(S1/S2)``)."""

    def __init__(self, head: LinearHead, score: LogitScore, k: int, variant: str) -> None:
        super().__init__(head, score)
        self.k = int(k)
        self.variant = variant

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        values, idx = torch.topk(h, self.k, dim=1)
        if self.variant == "b":
            values = (h.sum(dim=1, keepdim=True) / self.k).expand(-1, self.k)
        elif self.variant == "s":
            s1 = h.sum(dim=1, keepdim=True)
            values = values * torch.exp(_ratio(s1, values.sum(dim=1, keepdim=True)))
        shaped = torch.zeros_like(h).scatter(1, idx, values)
        return self.score(self.linear(shaped))


class ClipScore(_HeadScore):
    """ReAct: ``W min(h, c) + b``."""

    def __init__(self, head: LinearHead, score: LogitScore, threshold: float) -> None:
        super().__init__(head, score)
        self.threshold = float(threshold)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.score(self.linear(torch.clamp(h, max=self.threshold)))


class LHActScore(_HeadScore):
    """LHAct: ``u = max(h, tl)``; ``u`` below ``th``, else ``u / sqrt(1 + (u/th)^4) + tl``."""

    def __init__(self, head: LinearHead, score: LogitScore, th: float, tl: float) -> None:
        super().__init__(head, score)
        self.th = float(th)
        self.tl = float(tl)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        u = torch.clamp(h, min=self.tl)
        high = u / torch.sqrt(1.0 + (u / self.th) ** 4) + self.tl
        return self.score(self.linear(torch.where(u >= self.th, high, u)))


class MaskedHeadScore(_HeadScore):
    """DICE: ``(W * M) h + b`` with the fitted sparsification mask ``M``."""

    def __init__(self, head: LinearHead, score: LogitScore, masked: LinearHead) -> None:
        super().__init__(masked, score)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.score(self.linear(h))


class HimplosScore(_HeadScore):
    """HIMPLoS: ``l = W min(h * M[yhat], t) + b``, scaled by ``cos(mu_yhat, h)``; energy."""

    def __init__(
        self,
        head: LinearHead,
        score: LogitScore,
        mask: torch.Tensor,
        prototypes: torch.Tensor,
        threshold: float,
    ) -> None:
        super().__init__(head, score)
        self.register_buffer("mask", mask.detach().float().cpu().clone())
        self.register_buffer("prototypes", prototypes.detach().float().cpu().clone())
        self.threshold = float(threshold)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        pred = z.argmax(dim=1)
        masked = torch.clamp(h * self.mask[pred], max=self.threshold)
        cosine = F.cosine_similarity(self.prototypes[pred], h, dim=1, eps=1e-8)
        return self.score(self.linear(masked) * cosine[:, None])


def _k(detector: Any, width: int) -> int:
    k = shaping.percentile_to_k(width, float(detector.percentile))
    if k == 0:
        raise ValueError(
            f"percentile={detector.percentile!r} keeps no value out of {width} features"
        )
    return k


def _score_fn(detector: Any) -> LogitScore:
    return LogitScore(getattr(detector, "score_fn", "energy"))


_BUILDERS: dict[str, Callable[[Any, LinearHead], nn.Module]] = {
    "msp": lambda d, head: PlainScore(head, LogitScore("msp")),
    "max_logit": lambda d, head: PlainScore(head, LogitScore("max_logit")),
    "energy": lambda d, head: PlainScore(head, LogitScore("energy", d.temperature)),
    "scale": lambda d, head: ScaleScore(head, _score_fn(d), _k(d, head.in_features)),
    "ash_p": lambda d, head: AshScore(head, _score_fn(d), _k(d, head.in_features), "p"),
    "ash_b": lambda d, head: AshScore(head, _score_fn(d), _k(d, head.in_features), "b"),
    "ash_s": lambda d, head: AshScore(head, _score_fn(d), _k(d, head.in_features), "s"),
    "react": lambda d, head: ClipScore(head, _score_fn(d), d.threshold_),
    "lhact": lambda d, head: LHActScore(head, _score_fn(d), d.th_, d.tl_),
    "dice": lambda d, head: MaskedHeadScore(head, _score_fn(d), d.masked_head_),
    "himplos": lambda d, head: HimplosScore(
        head, LogitScore("energy", d.temperature), d.mask_, d.prototypes_, d.threshold
    ),
}

ODIN_MESSAGE = (
    "ODIN perturbs each input image with a gradient step, so it has no single forward graph to "
    "export: use OODClassifier.predict, or a method that acts on features (e.g. energy, scale)"
)


def exportable_methods() -> list[str]:
    """Names of the methods that have an export graph."""
    return list(_BUILDERS)


def score_module(detector: Any) -> nn.Module:
    """The fitted ``detector`` as a module ``(h, z) -> score`` of plain torch operations."""
    name = type(detector).name
    head = detector._check_fitted()
    if name == "odin":
        if float(detector.noise) != 0.0:
            raise ValueError(ODIN_MESSAGE)
        return _TemperatureMSP(float(detector.temperature))
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(
            f"method {name!r} has no export graph (exportable: {', '.join(_BUILDERS)}): "
            "use OODClassifier.predict for it"
        )
    return builder(detector, head)


class _TemperatureMSP(nn.Module):
    """ODIN with ``noise=0``: ``max softmax(z / T)``."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(z / self.temperature, dim=1).max(dim=1).values


class _ContractFeatures(nn.Module):
    """``forward_head(forward_features(x), pre_logits=True)``, flattened to (N, D)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True).flatten(1)


class _Flatten(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flatten(1)


def feature_network(fm: Any) -> nn.Module:
    """A module ``x -> h`` (N, D) without hooks, for an adapted ``FeatureModel``."""
    if getattr(fm, "use_contract", False):
        return _ContractFeatures(fm.model)
    model = copy.deepcopy(fm.model)
    parent_name, _, child = fm.layer_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return _Flatten(model)


class DeployGraph(nn.Module):
    """``x -> (logits, score, is_ood)``: features, plain head, detector score, threshold."""

    def __init__(self, features: nn.Module, head: LinearHead, scorer: nn.Module, threshold: float):
        super().__init__()
        self.features = features
        self.register_buffer("weight", head.weight.detach().float().cpu().clone())
        self.register_buffer("bias", head.bias.detach().float().cpu().clone())
        self.scorer = scorer
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(x).float()
        z = F.linear(h, self.weight, self.bias)
        score = self.scorer(h, z)
        return z, score, score < self.threshold
