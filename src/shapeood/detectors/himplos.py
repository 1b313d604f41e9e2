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

import torch
import torch.nn.functional as F

from shapeood import shaping
from shapeood._types import FitSplit
from shapeood._validation import as_tensor
from shapeood.detectors.base import Detector
from shapeood.detectors.constraints import TEMPERATURE, ArrayLike, Constraint, Percentile, Real
from shapeood.detectors.registry import register_detector
from shapeood.head import LinearHead


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
        cosine = F.cosine_similarity(protos, h, dim=1, eps=1e-8)
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
        """One pass over row blocks: prediction, mask, clip, head and cosine per block.

        Per block of rows the masked features and the gathered prototypes live in two reused
        buffers (never (N, D) temporaries), and the head is applied once (twice without
        ``plain``: the prediction needs the plain logits). Same values as ``_parts``.
        """
        head = self.head_
        mask = self.mask_.to(device=h.device, dtype=h.dtype)
        protos = self.prototypes_.to(device=h.device, dtype=h.dtype)
        threshold = float(self.threshold)
        out = torch.empty((h.shape[0], head.num_classes), dtype=h.dtype, device=h.device)
        blocks = shaping.row_blocks(h.shape[0], h.shape[1], h.device)
        rows0 = blocks[0][1] - blocks[0][0]
        masked = torch.empty((rows0, h.shape[1]), dtype=h.dtype, device=h.device)
        gathered = torch.empty_like(masked)
        for lo, hi in blocks:
            rows, n = h[lo:hi], hi - lo
            block_out = out[lo:hi]
            if plain is None:
                head.into(rows, block_out)
                pred = block_out.argmax(dim=1)
            else:
                pred = plain[lo:hi].argmax(dim=1)
            m, g = masked[:n], gathered[:n]
            torch.index_select(mask, 0, pred, out=g)
            torch.mul(rows, g, out=m).clamp_(max=threshold)
            torch.index_select(protos, 0, pred, out=g)
            cosine = F.cosine_similarity(g, rows, dim=1, eps=1e-8)
            head.into(m, block_out)
            block_out.mul_(cosine[:, None])
        return out
