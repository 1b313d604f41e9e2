"""Evaluation as stages behind one call, ``evaluate(model, benchmark, methods)``.

The backbone runs once per dataset (``shapeood.features.extract``, cached on disk); every
feature-space method and every grid point of its APS search then runs on the cached pooled
features. Input-perturbation methods (ODIN) run through the model, every APS grid point in one
pass (``shapeood.features.perturbation``, cached as entries of kind ``odin``).

Stages, one module each, reading only the methods' traits and the benchmark's declaration:

* ``plan``: roles to datasets (ID test; ID val/OOD val for APS; the split each method's
  ``fit_split`` names; csid sets in full-spectrum mode), parameters (the benchmark family's
  preset, then the user's), APS grids (``aps_grid``);
* ``features``: one extraction per dataset;
* ``aps``: APS per method by a criterion (``"auroc"``, ``"fpr95"`` or a callable);
* ``fit``: each detector on its split (``train``: ID train then ID val; ``val``: the reverse;
  ID test with a warning when neither exists);
* ``score``: per-sample scores and the method's own ID accuracy;
* ``table``: OpenOOD's rows per method (``metrics.ood_table``: sets, then ``nearood`` /
  ``farood`` unweighted means), metrics in percent.

``evaluate`` returns an ``EvaluationResult``: the DataFrame, carrying ``scores``, ``grids``
(every APS point with its criterion value), ``timings``, ``notes`` and ``mode``.
"""

from shapeood.evaluation.facade import evaluate
from shapeood.evaluation.inputs import (
    method_grid,
    method_params,
    resolve_benchmark,
    resolve_methods,
    resolve_model,
)
from shapeood.evaluation.result import EvaluationResult, load_score_file, save_score_file
from shapeood.evaluation.runs import evaluate_runs, run_pairs
from shapeood.evaluation.table import METRIC_COLUMNS
from shapeood.features.perturbation import score_inputs

__all__ = [
    "METRIC_COLUMNS",
    "EvaluationResult",
    "evaluate",
    "evaluate_runs",
    "load_score_file",
    "method_grid",
    "method_params",
    "resolve_benchmark",
    "resolve_methods",
    "resolve_model",
    "run_pairs",
    "save_score_file",
    "score_inputs",
]
