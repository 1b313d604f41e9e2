"""The public detector conformance suite, as scikit-learn's ``estimator_checks``.

``check_detector(detector)`` runs every check that applies to ``detector`` (built-in or
third-party) and raises ``AssertionError`` naming the first broken rule;
``parametrize_with_checks(detectors)`` turns the same checks into pytest cases::

    from shapeood.testing import parametrize_with_checks

    @parametrize_with_checks([MyDetector(), create_detector("scale")])
    def test_conformance(detector, check):
        check(detector)

The rules (``Detector``'s contract): parameters round-trip through ``get_params`` /
``set_params`` / ``clone``; ``fit`` returns ``self``, leaves the parameters untouched and adds
only trailing-underscore state; scores are (N,), finite, higher for in-distribution data and
permutation-equivariant; inputs are never mutated; float32/float64, numpy/torch and
(N, D)/(N, D, 1, 1) inputs agree; a fitted detector pickles; every declared constraint turns a
bad value into a ``ValueError`` naming the parameter. Methods that perturb inputs
(``requires_model``) are checked through a small network on images instead of features.

>>> from shapeood import create_detector
>>> check_detector(create_detector("energy"))
"""

from __future__ import annotations

import copy
import functools
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shapeood import metrics
from shapeood.detectors import Detector
from shapeood.head import LinearHead

__all__ = ["all_checks", "check_detector", "parametrize_with_checks"]

N_CLASSES, WIDTH, N_ID, N_OOD = 5, 64, 60, 40


@dataclass(frozen=True)
class Problem:
    """A small separable problem: ID features near the head's class rows, OOD ones faint."""

    head: LinearHead
    train: torch.Tensor
    labels: torch.Tensor
    id_test: torch.Tensor
    ood_test: torch.Tensor
    model: nn.Module
    id_images: torch.Tensor
    ood_images: torch.Tensor


def make_problem(seed: int = 0) -> Problem:
    """The synthetic data every check uses (deterministic for a given ``seed``).

    ID features are ``2 relu(W_c) + noise`` for the head rows ``W_c``; OOD features are sparse
    (15% of units active) and unaligned with the head. For input methods a linear network on
    3 x 8 x 8 images has class templates as rows: ID images are scaled templates plus noise,
    OOD images faint noise.
    """
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(N_CLASSES, WIDTH, generator=g)
    head = LinearHead(weight, 0.1 * torch.randn(N_CLASSES, generator=g))

    def id_rows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % N_CLASSES
        rows = 2.0 * torch.relu(weight[labels]) + 0.2 * torch.rand(n, WIDTH, generator=g)
        return rows, labels

    train, labels = id_rows(3 * N_ID)
    id_test, _ = id_rows(N_ID)
    active = torch.rand(N_OOD, WIDTH, generator=g) < 0.15
    ood_test = torch.relu(torch.randn(N_OOD, WIDTH, generator=g)) * active
    templates = torch.randn(N_CLASSES, 3 * 8 * 8, generator=g) / 8
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, N_CLASSES)).eval()
    with torch.no_grad():
        model[1].weight.copy_(templates)
        model[1].bias.zero_()
    model.pretrained_cfg = {"std": (0.5, 0.5, 0.5)}
    classes = torch.arange(24) % N_CLASSES
    id_images = (3 * templates[classes] + 0.1 * torch.randn(24, 192, generator=g)).view(24, 3, 8, 8)
    ood_images = 0.3 * torch.randn(16, 3, 8, 8, generator=g)
    return Problem(head, train, labels, id_test, ood_test, model, id_images, ood_images)


# ----------------------------------------------------------------------------- helpers


def _fitted(detector: Detector, p: Problem) -> Detector:
    return detector.clone().fit(p.head, p.train, p.labels)


def _scores(detector: Detector, p: Problem, which: str = "id") -> torch.Tensor:
    if detector.requires_model:
        images = p.id_images if which == "id" else p.ood_images
        return detector.score_inputs(p.model, images)
    return detector.score(p.id_test if which == "id" else p.ood_test)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (torch.Tensor, np.ndarray)) or isinstance(b, (torch.Tensor, np.ndarray)):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return bool(a == b)


def _state(detector: Detector) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in vars(detector).items()}


# ----------------------------------------------------------------------------- checks


def check_params_round_trip(detector: Detector, p: Problem) -> None:
    """``get_params`` names the constructor keywords; ``set_params`` and ``clone`` keep them."""
    params = detector.get_params()
    assert list(params) == type(detector)._param_names(), "get_params must list __init__ keywords"
    assert detector.set_params(**params) is detector, "set_params must return self"
    twin = detector.clone()
    assert type(twin) is type(detector) and twin is not detector
    for key, value in params.items():
        assert _same(twin.get_params()[key], value), f"clone changed parameter {key!r}"
    assert not any(k.endswith("_") for k in vars(twin)), "clone must be unfitted"
    assert type(detector).__name__ in repr(detector)
    try:
        detector.clone().set_params(no_such_parameter=1)
    except ValueError as err:
        assert "no_such_parameter" in str(err)
    else:
        raise AssertionError("set_params accepted an unknown parameter")


def check_fit_returns_self(detector: Detector, p: Problem) -> None:
    """``fit`` returns self, keeps the parameters, and adds only trailing-underscore state."""
    fresh = detector.clone()
    before = _state(fresh)
    assert fresh.fit(p.head, p.train, p.labels) is fresh, "fit must return self"
    for key, value in before.items():
        if not key.endswith("_"):
            assert _same(getattr(fresh, key), value), f"fit changed parameter {key!r}"
    learned = [k for k in vars(fresh) if k not in before]
    wrong = [k for k in learned if not k.endswith("_")]
    assert not wrong, f"fit must store learned state with a trailing underscore: {wrong}"


def check_scores(detector: Detector, p: Problem) -> None:
    """Scores are (N,), floating, finite, and higher for ID than for OOD data."""
    fitted = _fitted(detector, p)
    id_s, ood_s = _scores(fitted, p, "id"), _scores(fitted, p, "ood")
    n_id = len(p.id_images) if detector.requires_model else N_ID
    assert tuple(id_s.shape) == (n_id,), f"score must be (N,), got {tuple(id_s.shape)}"
    assert id_s.is_floating_point() and bool(torch.isfinite(id_s).all()), "scores not finite"
    auroc = metrics.auroc(id_s, ood_s)
    assert auroc > 0.5, f"higher must mean more in-distribution: AUROC(ID, OOD) = {auroc:.3f}"


def check_permutation_equivariance(detector: Detector, p: Problem) -> None:
    """Scoring permuted rows permutes the scores."""
    fitted = _fitted(detector, p)
    if detector.requires_model:
        perm = torch.randperm(len(p.id_images), generator=torch.Generator().manual_seed(1))
        got = fitted.score_inputs(p.model, p.id_images[perm])
    else:
        perm = torch.randperm(N_ID, generator=torch.Generator().manual_seed(1))
        got = fitted.score(p.id_test[perm])
    torch.testing.assert_close(got, _scores(fitted, p)[perm], rtol=1e-5, atol=1e-6)


def check_no_input_mutation(detector: Detector, p: Problem) -> None:
    """Neither ``fit`` nor ``score`` writes into the arrays they are given."""
    train, labels, test = p.train.clone(), p.labels.clone(), p.id_test.numpy().copy()
    head = LinearHead(p.head.weight.clone(), p.head.bias.clone())
    fitted = detector.clone().fit(head, train, labels)
    if not detector.requires_model:
        fitted.score(test)
    assert torch.equal(train, p.train) and torch.equal(labels, p.labels), "fit mutated inputs"
    assert torch.equal(head.weight, p.head.weight) and torch.equal(head.bias, p.head.bias)
    assert np.array_equal(test, p.id_test.numpy()), "score mutated its input"


def check_inputs_agree(detector: Detector, p: Problem) -> None:
    """float32/float64, numpy/torch and (N, D)/(N, D, 1, 1) features give the same scores."""
    fitted = _fitted(detector, p)
    reference = fitted.score(p.id_test)
    for variant in (p.id_test.double(), p.id_test.numpy(), p.id_test[:, :, None, None]):
        torch.testing.assert_close(fitted.score(variant).float(), reference, rtol=1e-4, atol=1e-5)
    refit = detector.clone().fit(p.head, p.train.double().numpy(), p.labels.numpy())
    torch.testing.assert_close(refit.score(p.id_test), reference, rtol=1e-4, atol=1e-5)


def check_pickle(detector: Detector, p: Problem) -> None:
    """A fitted detector survives a pickle round trip with the same scores."""
    fitted = _fitted(detector, p)
    back = pickle.loads(pickle.dumps(fitted))
    assert type(back) is type(fitted)
    torch.testing.assert_close(_scores(back, p), _scores(fitted, p))


def check_bad_params(detector: Detector, p: Problem) -> None:
    """Every declared constraint turns its ``invalid`` value into a ValueError naming it."""
    for key, constraint in type(detector).param_constraints.items():
        bad = detector.clone().set_params(**{key: constraint.invalid})
        try:
            bad.fit(p.head, p.train, p.labels)
        except ValueError as err:
            assert key in str(err), f"the error for a bad {key!r} must name it: {err}"
        else:
            raise AssertionError(f"fit accepted {key}={constraint.invalid!r}")


FEATURE_CHECKS = (check_inputs_agree,)
COMMON_CHECKS = (
    check_params_round_trip,
    check_fit_returns_self,
    check_scores,
    check_permutation_equivariance,
    check_no_input_mutation,
    check_pickle,
    check_bad_params,
)


def all_checks(detector: Detector) -> list[Callable[[Detector, Problem], None]]:
    """The checks that apply to ``detector`` (feature checks only for feature detectors)."""
    return list(COMMON_CHECKS) + ([] if detector.requires_model else list(FEATURE_CHECKS))


def check_detector(detector: Detector, problem: Problem | None = None) -> None:
    """Run every applicable check on ``detector``; raises AssertionError on the first failure."""
    problem = make_problem() if problem is None else problem
    for check in all_checks(detector):
        check(detector, problem)


def parametrize_with_checks(detectors: Iterable[Detector]) -> Any:
    """A ``pytest.mark.parametrize("detector, check", ...)`` over every (detector, check).

    Each ``check`` is called as ``check(detector)``; ids read ``<Class>-<check name>``.
    """
    import pytest

    problem = make_problem()
    cases, ids = [], []
    for detector in detectors:
        for check in all_checks(detector):
            cases.append((detector, functools.partial(_run, check, problem=problem)))
            ids.append(f"{type(detector).__name__}-{check.__name__}")
    return pytest.mark.parametrize(("detector", "check"), cases, ids=ids)


def _run(check: Callable[[Detector, Problem], None], detector: Detector, problem: Problem) -> None:
    check(detector, problem)
