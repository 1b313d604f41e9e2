"""Stage 4, search: APS over each method's grid on ID-val vs OOD-val, by the plan's criterion.

Feature-space methods search on cached features (``shapeood.search.aps_search``, fitted on the
same split the final detector is fitted on); input-perturbation methods search through the
model, every grid point in one pass per val set (``aps_search_inputs``).
"""

from __future__ import annotations

from typing import Any

from shapeood.detectors import detector_class
from shapeood.evaluation.features import Features, RunOptions
from shapeood.evaluation.fit import fit_source
from shapeood.evaluation.inputs import prepare_dataset
from shapeood.evaluation.plan import Plan
from shapeood.search import SearchResult, aps_search, aps_search_inputs


def search_method(
    plan: Plan, features: Features, name: str, options: RunOptions
) -> SearchResult | None:
    """The APS result of ``name``, or None without APS or without a grid."""
    grid, base = plan.grids.get(name), plan.params[name]
    if not plan.aps or not grid:
        return None
    if detector_class(name).requires_model:

        def capped(role: str) -> Any:
            return prepare_dataset(plan.roles[role], plan.transform, plan.odin_max_samples)

        return aps_search_inputs(
            plan.model, capped("id_val"), capped("ood_val"), method=name, grid=grid, params=base,
            criterion=plan.criterion, benchmark=plan.bench, cache=options.cache,
            batch_size=options.batch_size, device=options.device,
            num_workers=options.num_workers, progress=options.progress,
        )  # fmt: skip
    source, _ = fit_source(name, base, features)
    return aps_search(
        name, plan.model.head, features.roles["id_val"], features.roles["ood_val"], grid=grid,
        params=base, fit_features=source, criterion=plan.criterion,
    )  # fmt: skip
