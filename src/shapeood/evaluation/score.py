"""Stage 5, score: per-sample scores and predictions of one fitted method on every test set."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from shapeood import metrics
from shapeood.detectors import Detector, create_detector
from shapeood.evaluation.features import Features, RunOptions
from shapeood.evaluation.inputs import prepare_dataset
from shapeood.evaluation.plan import Plan


@dataclass
class MethodScores:
    """Scores of one method: ``id`` (ID test), ``csid[name]``, ``ood[group][name]``.

    ``accuracy``: percent accuracy of the method's own predictions on ID (test, then every csid
    set in full-spectrum mode), NaN for methods whose predictions are the plain network's.
    """

    detector: Detector
    id: torch.Tensor
    ood: dict[str, dict[str, torch.Tensor]]
    csid: dict[str, torch.Tensor] = field(default_factory=dict)
    accuracy: float = math.nan
    note: str | None = None


def percent_accuracy(preds: list[torch.Tensor], labels: list[torch.Tensor]) -> float:
    """Accuracy in percent over the rows with a known label (>= 0), pooled; NaN when none."""
    pred, label = torch.cat(preds), torch.cat(labels)
    if not bool((label >= 0).any()):
        return math.nan
    return 100 * metrics.accuracy(pred, label, labelled_only=True)


def score_on_features(plan: Plan, features: Features, detector: Detector) -> MethodScores:
    """Score the ID test, csid and OOD feature sets with a fitted feature-space detector."""

    def run(fs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return detector.score_and_predict(fs.features, plain_logits=fs.logits)

    id_fs = [features.roles["id_test"], *features.csid.values()]
    scored = [run(fs) for fs in id_fs]
    ood = {
        g: {n: detector.score(fs.features, plain_logits=fs.logits) for n, fs in sets.items()}
        for g, sets in features.ood.items()
    }
    accuracy = math.nan
    if detector.changes_logits:
        accuracy = percent_accuracy([p for _, p in scored], [fs.labels for fs in id_fs])
    csid = {n: s for n, (s, _) in zip(features.csid, scored[1:], strict=True)}
    return MethodScores(detector, scored[0][0], ood, csid, accuracy)


def score_on_inputs(plan: Plan, name: str, params: dict, options: RunOptions) -> MethodScores:
    """Score every test set through the model (input-perturbation methods such as ODIN)."""
    from shapeood.features.perturbation import perturbation_scores

    detector = create_detector(name, **params)

    def run(dataset: Any) -> Any:
        capped = prepare_dataset(dataset, plan.transform, plan.odin_max_samples)
        (result,) = perturbation_scores(
            plan.model, capped, [detector.get_params()], benchmark=plan.bench,
            cache=options.cache, batch_size=options.batch_size, device=options.device,
            num_workers=options.num_workers, progress=options.progress,
        )  # fmt: skip
        return result

    id_results = [run(plan.roles["id_test"]), *(run(d) for d in plan.csid.values())]
    ood = {g: {n: run(d).scores for n, d in sets.items()} for g, sets in plan.ood.items()}
    accuracy = percent_accuracy([r.preds for r in id_results], [r.labels for r in id_results])
    sizes = ", ".join(f"{n}={len(s)}" for sets in ood.values() for n, s in sets.items())
    note = f"{name}: through the model on {len(id_results[0].scores)} ID test images and {sizes}"
    csid = {n: r.scores for n, r in zip(plan.csid, id_results[1:], strict=True)}
    return MethodScores(detector, id_results[0].scores, ood, csid, accuracy, note)
