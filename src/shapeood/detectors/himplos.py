"""HIMPLoS: classifier-head informed feature masking + prototype-based logit smoothing.

With ``M = class_row_mask(W, p)`` (row c keeps ``W[c, j] >= np.percentile(W[c, :], p)``), class
prototypes ``mu_c`` (mean ID training feature of true class c) and ``yhat = argmax(W h + b)``:

    h_m = min(h * M[yhat], t);   l = W h_m + b;   s = cos(mu_yhat, h);   score = T*logsumexp(s*l/T)

Defaults are the official ImageNet ResNet-50 setting (``percentile=30``, ``threshold=0.8``);
CIFAR DenseNet-100 uses 60 / 1.6 (``preset="cifar"``). Prototypes come from
``fit(head, features, labels)`` (per-class means grouped by the TRUE label) or ``prototypes=``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from shapeood import shaping
from shapeood._threads import for_row_chunks, scratch
from shapeood._types import FitSplit
from shapeood._validation import as_tensor
from shapeood.detectors.base import Detector
from shapeood.detectors.constraints import TEMPERATURE, ArrayLike, Constraint, Percentile, Real
from shapeood.detectors.registry import register_detector
from shapeood.head import LinearHead

COSINE_EPS = 1e-8  # F.cosine_similarity's eps in the reference code


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean feature (C, D) by label; raises when a class has no sample."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes)
    missing = torch.nonzero(counts == 0).flatten().tolist()
    if missing:
        shown = missing[:10] + (["..."] if len(missing) > 10 else [])
        raise ValueError(
            f"no ID training sample for class(es) {shown}: HIMPLoS prototypes need every class; "
            "pass more labelled ID features or explicit prototypes="
        )
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels.cpu(), features.detach().cpu().to(torch.float64))
    return (sums / counts.to(torch.float64)[:, None]).to(torch.float32)


@register_detector
class HIMPLoS(Detector):
    """HIMPLoS: mask by the predicted class's head row, clip, scale logits by prototype cosine."""

    name = "himplos"
    description = (
        "HIMPLoS: mask h by the predicted class's top weights, clip at t, "
        "scale logits by cos(prototype, h); energy"
    )
    requires_fit = True
    requires_labels = True
    changes_logits = True
    fit_split: ClassVar[FitSplit] = "train"
    fit_skipped_by: ClassVar[tuple[str, ...]] = ("prototypes",)
    param_constraints: ClassVar[dict[str, Constraint]] = {
        "percentile": Percentile(upper_inclusive=True),
        "threshold": Real(allow_inf=True),
        "prototypes": ArrayLike(),
        "temperature": TEMPERATURE,
    }
    default_sweep: ClassVar[dict[str, list]] = {
        "percentile": [30, 60],
        "threshold": [0.8, 1.0, 1.6],
    }
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "imagenet": {"percentile": 30, "threshold": 0.8},
        "cifar": {"percentile": 60, "threshold": 1.6},
    }

    def __init__(
        self,
        *,
        percentile: float = 30,
        threshold: float = 0.8,
        prototypes: Any = None,
        temperature: float = 1.0,
    ) -> None:
        self.percentile = percentile
        self.threshold = threshold
        self.prototypes = prototypes
        self.temperature = temperature

    def _fit(
        self, head: LinearHead, features: torch.Tensor | None, labels: torch.Tensor | None
    ) -> None:
        if self.prototypes is not None:
            protos = as_tensor(self.prototypes, "prototypes").to(torch.float32)
            if protos.shape != head.weight.shape or not bool(torch.isfinite(protos).all()):
                raise ValueError(
                    f"prototypes must be finite with shape {tuple(head.weight.shape)} "
                    f"(one mean feature per class), got {tuple(protos.shape)}"
                )
        else:
            h = self._require_features(features, "class prototypes")
            if labels is None:
                raise ValueError(
                    "HIMPLoS learns class prototypes from labelled ID features: call "
                    "fit(head, features, labels) with the true labels, or pass prototypes="
                )
            if not bool(h.any()):
                import warnings

                from shapeood.errors import DegenerateResultWarning

                warnings.warn(
                    "HIMPLoS fitted on all-zero features: every class prototype is zero, so "
                    "the cosine factor and the scores carry no information (check the layer "
                    "and the data given to fit)",
                    DegenerateResultWarning,
                    stacklevel=4,
                )
            protos = class_means(h, labels, head.num_classes)
        self.prototypes_ = protos.cpu()
        self.mask_ = shaping.class_row_mask(head.weight, self.percentile)

    def _parts(
        self, h: torch.Tensor, plain: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(yhat, min(h * M[yhat], t), cos(mu_yhat, h))`` for validated features.

        ``yhat`` is the argmax of the plain logits ``plain`` when given (no matmul).
        """
        pred = (self.head_(h) if plain is None else plain).argmax(dim=1)
        masked = torch.clamp(h * self.mask_.to(h.device)[pred], max=float(self.threshold))
        protos = self.prototypes_.to(h.device)[pred]
        cosine = F.cosine_similarity(protos, h, dim=1, eps=COSINE_EPS)
        return pred, masked, cosine

    def masked_features(self, features: Any) -> torch.Tensor:
        """``min(h * M[yhat], t)``: features masked by the predicted class's row, clipped."""
        return self._parts(self._prepare(features))[1]

    def prototype_similarity(self, features: Any) -> torch.Tensor:
        """``cos(mu_yhat, h)`` (N,): cosine of each feature with its predicted class prototype."""
        return self._parts(self._prepare(features))[2]

    def _shaped_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self._shaped_logits_given(h, None)

    def _shaped_logits_given(self, h: torch.Tensor, plain: torch.Tensor | None) -> torch.Tensor:
        """One pass over row chunks: prediction, mask, clip, head and cosine per chunk.

        The masked features of a chunk are never an (N, D) temporary, and the head is applied
        once per chunk (twice without ``plain``: the prediction needs the plain logits). On
        CPU the chunks run in threads (``for_row_chunks``) with the per-row work (argmax, mask,
        clip, cosine) in numpy while the chunk is in cache. Same values as ``_parts``.
        """
        head = self.head_
        out = torch.empty((h.shape[0], head.num_classes), dtype=h.dtype, device=h.device)
        if h.device.type != "cpu":
            for lo, hi in shaping.row_blocks(h.shape[0], h.shape[1], h.device):
                self._chunk(h[lo:hi], None if plain is None else plain[lo:hi], out[lo:hi])
            return out
        numpy_parts = self._numpy_parts(h.dtype)
        for_row_chunks(
            h.shape[0],
            h.shape[1],
            lambda lo, hi: self._chunk(
                h[lo:hi], None if plain is None else plain[lo:hi], out[lo:hi], numpy_parts
            ),
            shaping.MATMUL_CHUNK_VALUES,
        )
        return out

    def _numpy_parts(self, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """``(mask, prototypes, clamped prototype norms, threshold)`` as numpy, for CPU chunks."""
        protos = self.prototypes_.to(dtype).numpy()
        norms = np.maximum(np.linalg.norm(protos, axis=1), COSINE_EPS)
        return self.mask_.cpu().numpy(), protos, norms, protos.dtype.type(self.threshold)

    def _chunk(
        self,
        rows: torch.Tensor,
        plain: torch.Tensor | None,
        out: torch.Tensor,
        numpy_parts: tuple[np.ndarray, np.ndarray, np.ndarray, Any] | None = None,
    ) -> None:
        """HIMPLoS logits of one chunk of rows into ``out``."""
        if plain is None:
            self.head_.into(rows, out)
        logits = out if plain is None else plain
        if numpy_parts is None:
            masked = torch.empty_like(rows)
            pred = logits.argmax(dim=1)
            mask = self.mask_.to(device=rows.device, dtype=rows.dtype)
            torch.mul(rows, mask[pred], out=masked).clamp_(max=float(self.threshold))
            protos = self.prototypes_.to(device=rows.device, dtype=rows.dtype)[pred]
            cosine = F.cosine_similarity(protos, rows, dim=1, eps=COSINE_EPS)
        else:
            masked = scratch("himplos_masked", tuple(rows.shape), rows.dtype)
            cosine = _numpy_chunk(rows, logits, masked, *numpy_parts)
        self.head_.into(masked, out)
        out.mul_(cosine[:, None])


def _numpy_chunk(
    rows: torch.Tensor,
    logits: torch.Tensor,
    masked: torch.Tensor,
    mask: np.ndarray,
    protos: np.ndarray,
    proto_norms: np.ndarray,
    threshold: Any,
) -> torch.Tensor:
    """``masked = min(rows * M[yhat], t)``; returns ``cos(mu_yhat, rows)`` (numpy, CPU).

    ``cos = (mu . h) / (max(|mu|, eps) * max(|h|, eps))``, the value of ``F.cosine_similarity``
    (which divides each vector by its clamped norm first).
    """
    x, dst = rows.contiguous().numpy(), masked.numpy()
    pred = logits.contiguous().numpy().argmax(axis=1)
    row_mask = np.take(mask, pred, axis=0, out=scratch("himplos_mask", x.shape, torch.bool).numpy())
    np.multiply(x, row_mask, out=dst)
    masked.clamp_(max=float(threshold))  # min(., t): 6x faster than np.minimum here
    row_protos = np.take(
        protos, pred, axis=0, out=scratch("himplos_protos", x.shape, rows.dtype).numpy()
    )
    dot = np.einsum("ij,ij->i", row_protos, x)
    norm = np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), COSINE_EPS)
    return torch.from_numpy(dot / (proto_norms[pred] * norm))
