"""``Detector``: the one contract every OOD method follows.

A detector is built from explicit hyperparameters (stored untouched, scikit-learn style), learns
whatever it needs from the classifier head and, where the method asks for it, from ID features in
``fit``; then it maps pooled penultimate features ``h`` (N, D) to shaped logits and to a score
(N,) where **higher means more in-distribution**. ``score``, ``logits``, ``predict`` and
``score_and_predict`` also take the plain logits ``W h + b`` of the same rows
(``plain_logits=FeatureSet.logits``): methods whose logits follow from them exactly then skip
the head matmul (MSP, MaxLogit, Energy, ODIN without noise, SCALE, and HIMPLoS's prediction).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from shapeood import scores as logit_scores
from shapeood import shaping
from shapeood._threads import numel, single_threaded_below, small_detector_work
from shapeood._types import SCORE_NAMES, BenchmarkFamily, FitSplit, ScoreName
from shapeood._validation import check_features
from shapeood.detectors.constraints import Constraint
from shapeood.head import LinearHead

LOGIT_SCORES = SCORE_NAMES

# Rows of ``plain_logits`` recomputed with the head to make sure they belong to it.
PLAIN_LOGITS_CHECK_ROWS = 8


def as_head(head: Any) -> LinearHead:
    """Accept a ``LinearHead``, an ``nn.Linear`` or an adapted model (anything with ``.head``)."""
    if isinstance(head, LinearHead):
        return head
    if isinstance(head, nn.Linear):
        return LinearHead.from_linear(head)
    inner = getattr(head, "head", None)
    if isinstance(inner, (LinearHead, nn.Linear)):
        return as_head(inner)
    raise ValueError(
        "fit needs the classifier head: pass a LinearHead(weight, bias), an nn.Linear, or a "
        f"model adapted with shapeood.models.adapt (it has .head); got {type(head).__name__}"
    )


def score_logits(
    logits: torch.Tensor, score_fn: ScoreName, temperature: float = 1.0
) -> torch.Tensor:
    """Turn logits into an ID score at temperature ``T``.

    energy ``T * logsumexp(z / T)``; msp ``max softmax(z / T)``; max_logit ``max z``.
    """
    if score_fn == "energy":
        return logit_scores.energy(logits, temperature=temperature)
    if score_fn == "msp":
        return logit_scores.msp(logits if temperature == 1.0 else logits / float(temperature))
    if score_fn == "max_logit":
        return logit_scores.max_logit(logits)
    raise ValueError(f"score_fn must be one of {', '.join(LOGIT_SCORES)}, got {score_fn!r}")


def _summarise(value: Any) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        return f"<{kind} {tuple(value.shape)}>"
    return repr(value)


class Detector:
    """Base class of every OOD detector (higher score = more in-distribution).

    Subclasses declare their hyperparameters as keyword-only arguments of ``__init__`` (each
    stored under the same attribute name, untouched), implement ``_fit`` (learned state in
    attributes with a trailing underscore) and ``_shaped_logits``; the score is
    ``logit_score`` (or the ``score_fn`` parameter) of the shaped logits, at the ``temperature``
    parameter where the method has one.

    Traits (class attributes the evaluator and the search read; nothing else names a method):
        name: registry name (``create_detector(name)``).
        requires_fit: with default parameters, ``fit`` must see ID features.
        requires_labels: ``fit`` must see the ID labels too.
        requires_model: the method perturbs inputs and needs the network (ODIN).
        changes_logits: ``predict`` can differ from the plain argmax.
        fit_split: the ID split ``fit`` should see: ``"train"`` (DICE, HIMPLoS), ``"val"``
            (ReAct, LHAct, as OpenOOD's postprocessor setup) or None (nothing to learn).
        fit_skipped_by: parameters that, when given (not None), replace fitting
            (ReAct's ``threshold``).
        fitted_by: parameters that, when given, make ``fit`` learn from features (LHAct's
            ``th_percentile``).
        alternatives: groups of parameters that give the same thing two ways (``th`` vs
            ``th_percentile``): a user value in one group drops preset values of the others.
        default_sweep: the hyperparameter grid of OpenOOD's APS search (empty when none).
        fitted_sweep: the grid when ``fitted_by`` parameters are given (else ``default_sweep``).
        presets: parameter sets by name, e.g. per benchmark family ``{"cifar": {...}}``.
        param_constraints: ``{param: Constraint}`` checked once by ``fit``.
        logit_score: the logits-to-score step (``"energy"``, ``"msp"``, ``"max_logit"``).
        description: one line for listings.
    """

    name: ClassVar[str] = ""
    requires_fit: ClassVar[bool] = False
    requires_labels: ClassVar[bool] = False
    requires_model: ClassVar[bool] = False
    changes_logits: ClassVar[bool] = False
    fit_split: ClassVar[FitSplit | None] = None
    fit_skipped_by: ClassVar[tuple[str, ...]] = ()
    fitted_by: ClassVar[tuple[str, ...]] = ()
    alternatives: ClassVar[tuple[tuple[str, ...], ...]] = ()
    default_sweep: ClassVar[dict[str, list]] = {}
    fitted_sweep: ClassVar[dict[str, list]] = {}
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    param_constraints: ClassVar[dict[str, Constraint]] = {}
    logit_score: ClassVar[ScoreName] = "energy"
    description: ClassVar[str] = ""

    # ----------------------------------------------------------------- traits
    @classmethod
    def needs_fit(cls, params: Mapping[str, Any] | None = None) -> bool:
        """Whether ``fit`` learns from ID features under ``params`` (defaults filled in)."""
        values = {**cls.default_params(), **(params or {})}
        given = {k for k, v in values.items() if v is not None}
        if given & set(cls.fitted_by):
            return True
        return cls.requires_fit and not given & set(cls.fit_skipped_by)

    @classmethod
    def aps_grid(cls, params: Mapping[str, Any] | None = None) -> dict[str, list]:
        """The APS grid for ``params``: ``fitted_sweep`` when a ``fitted_by`` one is given."""
        given = {k for k, v in (params or {}).items() if v is not None}
        grid = cls.fitted_sweep if cls.fitted_sweep and given & set(cls.fitted_by) else None
        return {k: list(v) for k, v in (grid or cls.default_sweep).items()}

    @classmethod
    def family_params(
        cls, family: BenchmarkFamily | str, user: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The family's preset, then ``user`` (which drops preset values of alternatives)."""
        user = dict(user or {})
        chosen = dict(cls.presets.get(family, {}))
        for group in cls.alternatives:
            if set(group) & set(user):
                others = {k for g in cls.alternatives if g is not group for k in g}
                chosen = {k: v for k, v in chosen.items() if k not in others}
        chosen.update(user)
        return chosen

    # ----------------------------------------------------------------- parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        names = []
        for p in signature.parameters.values():
            if p.name == "self":
                continue
            if p.kind != p.KEYWORD_ONLY:
                raise TypeError(
                    f"{cls.__name__}.__init__ must take its hyperparameters keyword-only "
                    f"(def __init__(self, *, {p.name}=...)); {p.name!r} is not"
                )
            names.append(p.name)
        return names

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """Constructor defaults, in signature order."""
        signature = inspect.signature(cls.__init__)
        return {
            name: signature.parameters[name].default
            for name in cls._param_names()
            if signature.parameters[name].default is not inspect.Parameter.empty
        }

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as passed to the constructor (scikit-learn ``get_params``)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Detector:
        """Change hyperparameters; forgets what ``fit`` learned (call ``fit`` again)."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {key!r}; valid parameters: {valid}"
                )
            setattr(self, key, value)
        if params:
            self._forget_fit()
        return self

    def clone(self) -> Detector:
        """An unfitted copy with the same (deep-copied) hyperparameters."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_summarise(v)}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------- fitting
    def _forget_fit(self) -> None:
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "head_")

    def fit(self, head: Any, features: Any = None, labels: Any = None) -> Detector:
        """Learn from the classifier head (and ID features/labels where needed); returns self.

        ``head``: a ``LinearHead``, an ``nn.Linear`` or an adapted model with ``.head``.
        ``features``: ID features (N, D) (tensor or array), used by ReAct, DICE, HIMPLoS and
        LHAct with fitted thresholds. ``labels``: ID labels (N,), used by HIMPLoS prototypes
        (ignored by methods that do not need them, so unlabelled rows marked -1 are fine there).
        """
        if head is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs the classifier head: "
                "call fit(head, features) with a LinearHead or nn.Linear"
            )
        self._forget_fit()
        self._validate_params()
        fitted_head = as_head(head).to(torch.float32)
        cost = (0 if features is None else numel(features)) * max(8, fitted_head.num_classes)
        with single_threaded_below(max(cost, fitted_head.weight.numel())):
            h = None
            if features is not None:
                h = self._prepare(features, head=fitted_head, name="fit features")
            y = None
            if labels is not None and self.requires_labels:
                y = self._prepare_labels(labels, h, fitted_head)
            self._fit(fitted_head, h, y)
        self.head_ = fitted_head
        return self

    def _validate_params(self) -> None:
        """Check every declared ``param_constraints`` entry, then ``_check_params``."""
        for key, constraint in self.param_constraints.items():
            constraint(getattr(self, key), key)
        self._check_params()

    def _check_params(self) -> None:
        """Checks that involve several parameters (override where a method has them)."""

    def _fit(
        self, head: LinearHead, features: torch.Tensor | None, labels: torch.Tensor | None
    ) -> None:
        """Learn state from the head and the (validated, float32) ID features."""

    def _require_features(self, features: torch.Tensor | None, what: str) -> torch.Tensor:
        if features is None:
            raise ValueError(
                f"{type(self).__name__} learns {what} from ID features: call "
                "fit(head, features) with ID features (N, D)"
            )
        return features

    # ----------------------------------------------------------------- inputs
    def _check_fitted(self) -> LinearHead:
        head = getattr(self, "head_", None)
        if head is None:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted: call fit(head, features) first"
            )
        return head

    def _prepare(
        self, features: Any, head: LinearHead | None = None, name: str = "features"
    ) -> torch.Tensor:
        """Validate features: (N, D) or pooled (N, D, 1, 1), finite, width of the head; float32."""
        head = self._check_fitted() if head is None else head
        h = check_features(features, name, ndims=(2, 4), finite=False).to(torch.float32)
        if not bool(torch.isfinite(h.sum())):
            # A non-finite sum means NaN/inf, or overflow of huge values: the exact check decides.
            check_features(h, name, ndims=(2, 4), finite=True)
        if h.ndim == 4:
            if h.shape[2] != 1 or h.shape[3] != 1:
                raise ValueError(
                    f"{name} of shape {tuple(h.shape)} is a feature map: detectors act on "
                    "pooled features, average-pool it first (x.mean((2, 3)))"
                )
            h = h.flatten(1)
        if h.shape[1] != head.in_features:
            raise ValueError(
                f"{name} of shape {tuple(h.shape)} do not fit the head "
                f"{tuple(head.weight.shape)}: expected (N, {head.in_features})"
            )
        return h

    @staticmethod
    def _prepare_labels(
        labels: Any, features: torch.Tensor | None, head: LinearHead
    ) -> torch.Tensor:
        y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
        if y.ndim != 1:
            raise ValueError(f"labels must be (N,), got shape {tuple(y.shape)}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
        if features is not None and y.shape[0] != features.shape[0]:
            raise ValueError(
                f"labels ({y.shape[0]}) and features ({features.shape[0]}) disagree in length"
            )
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= head.num_classes):
            raise ValueError(
                f"labels must lie in [0, {head.num_classes}) for a head of "
                f"{head.num_classes} classes; got range [{int(y.min())}, {int(y.max())}]"
            )
        return y.to(torch.int64)

    def _prepare_plain_logits(self, plain_logits: Any, h: torch.Tensor) -> torch.Tensor | None:
        """Validate the plain logits ``W h + b`` of the rows of ``h``: (N, C), finite; float32.

        A few rows are compared with the head, so that logits of another head are refused.
        """
        if plain_logits is None:
            return None
        head = self._check_fitted()
        z = check_features(plain_logits, "plain_logits", ndims=(2,), finite=False)
        expected = (h.shape[0], head.num_classes)
        if tuple(z.shape) != expected:
            raise ValueError(
                f"plain_logits of shape {tuple(z.shape)} do not match features "
                f"{tuple(h.shape)} and head {tuple(head.weight.shape)}: expected {expected}, "
                "the logits W h + b of the same rows (FeatureSet.logits)"
            )
        z = z.to(device=h.device, dtype=torch.float32)
        if not bool(torch.isfinite(z.sum())):
            check_features(z, "plain_logits", ndims=(2,), finite=True)
        rows = slice(0, PLAIN_LOGITS_CHECK_ROWS)
        recomputed = head(h[rows])
        # Loose enough for reduced-precision matmuls (TF32), far below a different head's error.
        tolerance = 1e-2 * (1.0 + float(recomputed.abs().max()))
        if float((recomputed - z[rows]).abs().max()) > tolerance:
            raise ValueError(
                "plain_logits are not W h + b of these features under the fitted head: pass the "
                "logits cached with the same features and model (FeatureSet.logits), or omit them"
            )
        return z

    # ----------------------------------------------------------------- outputs
    def _shaped_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of the (validated) features after the method's shaping."""
        return shaping.shaped_linear(h, self.head_)

    def _shaped_logits_given(self, h: torch.Tensor, plain: torch.Tensor | None) -> torch.Tensor:
        """Shaped logits, from the validated plain logits ``plain = W h + b`` where possible.

        Methods that do not shape use ``plain`` as is; methods whose shaped logits follow from
        the plain ones override this; the others ignore ``plain`` and call the head.
        """
        if plain is not None and type(self)._shaped_logits is Detector._shaped_logits:
            return plain
        return self._shaped_logits(h)

    def _score_from_logits(self, logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``logit_score`` (or the ``score_fn`` parameter) at the ``temperature`` parameter."""
        score_fn = getattr(self, "score_fn", self.logit_score)
        return score_logits(logits, score_fn, float(getattr(self, "temperature", 1.0)))

    def _outputs(self, features: Any, plain_logits: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, shaped logits)`` of validated inputs; the logits may be ``plain_logits`` itself."""
        h = self._prepare(features)
        return h, self._shaped_logits_given(h, self._prepare_plain_logits(plain_logits, h))

    @small_detector_work
    def logits(self, features: Any, plain_logits: Any = None) -> torch.Tensor:
        """Shaped logits (N, C) (the plain logits for methods that do not shape).

        ``plain_logits``: optional plain logits ``W h + b`` (N, C) of the same rows, e.g.
        ``FeatureSet.logits``; methods that can (MSP, MaxLogit, Energy, ODIN with ``noise=0``,
        SCALE, HIMPLoS) then skip the head matmul, the others ignore them.
        """
        h = self._prepare(features)
        plain = self._prepare_plain_logits(plain_logits, h)
        logits = self._shaped_logits_given(h, plain)
        # A new tensor, never (a view of) the caller's array.
        return logits.clone() if logits is plain else logits

    @small_detector_work
    def score(self, features: Any, plain_logits: Any = None) -> torch.Tensor:
        """OOD score (N,), higher = more in-distribution (``plain_logits``: as in ``logits``)."""
        h, logits = self._outputs(features, plain_logits)
        return self._score_from_logits(logits, h)

    @small_detector_work
    def predict(self, features: Any, plain_logits: Any = None) -> torch.Tensor:
        """Predicted class (N,): argmax of the shaped logits (``plain_logits`` as in ``logits``)."""
        return self._outputs(features, plain_logits)[1].argmax(dim=1)

    @small_detector_work
    def score_and_predict(
        self, features: Any, plain_logits: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(score(features), predict(features))`` with one pass over the head."""
        h, logits = self._outputs(features, plain_logits)
        return self._score_from_logits(logits, h), logits.argmax(dim=1)
