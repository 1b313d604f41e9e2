"""Stage 1, plan: which datasets play which role, with which parameters, for which methods.

The plan reads only traits: a method fitted on features (``needs_fit``) needs an ID split
(``fit_split`` says which comes first), APS needs ID-val and OOD-val, full-spectrum OOD needs the
benchmark's csid sets. Nothing here names a method.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shapeood._types import CONVENTIONS, FeatureModelLike, FprConvention
from shapeood.data import Benchmark
from shapeood.detectors import detector_class
from shapeood.evaluation.inputs import (
    limit_for,
    method_grid,
    method_params,
    prepare_dataset,
    resolve_benchmark,
    resolve_methods,
    resolve_model,
)
from shapeood.search import Criterion, resolve_criterion

OOD_GROUPS = ("near", "far")


@dataclass
class Plan:
    """Everything the later stages need, decided once.

    ``roles``: prepared ``id_test`` and, where needed, ``id_val``, ``ood_val``, ``id_train``;
    ``ood``: ``{"near": {name: dataset}, "far": {...}}``; ``csid``: ``{name: dataset}`` (only
    with ``fsood``); ``params``: the base parameters of each method (preset, then the user's);
    ``grids``: the APS grid of each method (empty without APS).
    """

    model: FeatureModelLike
    bench: Benchmark
    methods: list[str]
    params: dict[str, dict[str, Any]]
    grids: dict[str, dict[str, list]]
    convention: FprConvention
    other: FprConvention
    aps: bool
    fsood: bool
    criterion: Criterion
    transform: Any
    roles: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, dict[str, Any]] = field(default_factory=dict)
    csid: dict[str, Any] = field(default_factory=dict)
    odin_max_samples: int | None = None
    max_samples: Any = None

    def feature_methods(self) -> list[str]:
        """Methods that run on cached features (all but input-perturbation ones)."""
        return [n for n in self.methods if not detector_class(n).requires_model]

    def ood_sets(self) -> dict[str, tuple[str, Any]]:
        """``{name: (group, dataset)}`` in table order."""
        return {n: (g, d) for g in OOD_GROUPS for n, d in self.ood.get(g, {}).items()}


def _check_request(bench: Any, names: list[str], params: Mapping, aps: bool, fsood: bool) -> None:
    unused = sorted(set(params) - set(names))
    if unused:
        raise ValueError(f"params given for {unused}, which are not among the methods {names}")
    if aps and (bench.id_val is None or bench.ood_val is None):
        raise ValueError(
            f"benchmark {bench.name!r} has no ID-val/OOD-val split, which APS needs: run with "
            "aps=False (defaults and params) or add id_val/ood_val to the benchmark"
        )
    if fsood and not bench.csid:
        skipped = [s for s in bench.skipped_optional if s.startswith("csid/")]
        why = f" (absent from the data: {', '.join(skipped)})" if skipped else ""
        raise ValueError(
            f"benchmark {bench.name!r} has no csid (covariate-shifted ID) set{why}, which "
            "full-spectrum OOD needs: run without fsood, or add a csid section to the benchmark"
        )


def _needed_roles(plan: Plan) -> list[str]:
    """``id_test`` plus the val/train splits that APS or some method's fitting needs."""
    bench, feature_names = plan.bench, plan.feature_methods()
    fitted = [n for n in feature_names if detector_class(n).needs_fit(plan.params[n])]
    roles = ["id_test"]
    if bench.id_val is not None and (plan.aps or fitted):
        roles.append("id_val")
    if plan.aps:
        roles.append("ood_val")
    wants_train = any(detector_class(n).fit_split == "train" for n in feature_names) or (
        bench.id_val is None and bool(fitted)  # val-fitted methods fall back to ID train
    )
    if bench.id_train is not None and wants_train:
        roles.append("id_train")
    return roles


def make_plan(
    model: Any,
    benchmark: Any,
    methods: str | Iterable[str],
    *,
    aps: bool = False,
    fsood: bool = False,
    fpr_convention: FprConvention | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    grids: Mapping[str, Mapping[str, Iterable[Any]]] | None = None,
    criterion: Criterion = "auroc",
    max_samples: Any = None,
    odin_max_samples: int | None = None,
    weights: Any = None,
    data_root: Any = None,
) -> Plan:
    """Resolve the inputs, check the request against the benchmark, choose the datasets."""
    from shapeood.models import transform_for

    fm = resolve_model(model, weights)
    bench = resolve_benchmark(benchmark, data_root)
    names = resolve_methods(methods)
    convention = fpr_convention or bench.fpr_convention
    if convention not in CONVENTIONS:
        raise ValueError(
            f"unknown fpr_convention {convention!r}: use one of {', '.join(CONVENTIONS)}"
        )
    resolve_criterion(criterion)
    user = {detector_class(k).name: dict(v) for k, v in (params or {}).items()}
    user_grids = {detector_class(k).name: v for k, v in (grids or {}).items()}
    _check_request(bench, names, user, aps, fsood)
    base = {n: method_params(n, bench.family, user.get(n)) for n in names}
    plan = Plan(
        model=fm, bench=bench, methods=names, params=base,
        grids={n: method_grid(n, base[n], user_grids.get(n)) if aps else {} for n in names},
        convention=convention, other="classic" if convention == "openood" else "openood",
        aps=bool(aps), fsood=bool(fsood), criterion=criterion,
        transform=transform_for(fm.pretrained_cfg, resize=bench.resize, crop=bench.crop),
        odin_max_samples=odin_max_samples, max_samples=max_samples,
    )  # fmt: skip

    def prepared(dataset: Any, role: str) -> Any:
        return prepare_dataset(dataset, plan.transform, limit_for(max_samples, role))

    plan.roles = {r: prepared(getattr(bench, r), r) for r in _needed_roles(plan)}
    plan.ood = {g: {n: prepared(d, g) for n, d in bench.ood.get(g, {}).items()} for g in OOD_GROUPS}
    plan.csid = {n: prepared(d, "csid") for n, d in bench.csid.items()} if fsood else {}
    return plan
