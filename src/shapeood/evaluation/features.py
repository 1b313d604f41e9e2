"""Stage 2, features: one backbone pass per planned dataset (``shapeood.extract``, cached)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shapeood._types import Device, FeatureSetLike
from shapeood.evaluation.plan import Plan


@dataclass(frozen=True)
class RunOptions:
    """How the network runs: device, batch size, loader workers, AMP, cache, progress.

    ``num_workers=None`` chooses the workers per dataset (``default_num_workers``).
    """

    device: Device = "cpu"
    batch_size: int = 256
    num_workers: int | None = None
    amp: bool | str = False
    cache: Any = True
    progress: bool = True


@dataclass
class Features:
    """FeatureSets in the plan's layout: ``roles``, ``ood[group][name]``, ``csid[name]``."""

    roles: dict[str, FeatureSetLike] = field(default_factory=dict)
    ood: dict[str, dict[str, FeatureSetLike]] = field(default_factory=dict)
    csid: dict[str, FeatureSetLike] = field(default_factory=dict)

    def ood_flat(self) -> dict[str, FeatureSetLike]:
        """``{name: FeatureSet}`` of every OOD set in table order."""
        return {n: fs for sets in self.ood.values() for n, fs in sets.items()}

    def sizes(self) -> dict[str, int]:
        """Rows per dataset (roles, OOD sets and csid sets by name)."""
        every = {**self.roles, **self.ood_flat(), **self.csid}
        return {name: len(fs) for name, fs in every.items()}


def extract_features(plan: Plan, options: RunOptions) -> Features:
    """Extract (or load) the features of every planned dataset.

    Without feature-space methods only ID test (and csid) features are extracted: they still
    give the plain network's accuracy.
    """
    from shapeood.features import extract
    from shapeood.features.keys import one_weights_state

    def run(dataset: Any) -> Any:
        return extract(
            plan.model, dataset, batch_size=options.batch_size, device=options.device,
            amp=options.amp, num_workers=options.num_workers, cache=options.cache,
            progress=options.progress,
        )  # fmt: skip

    with one_weights_state():  # one model state for every dataset of this call
        if not plan.feature_methods():
            return Features(
                roles={"id_test": run(plan.roles["id_test"])},
                csid={n: run(d) for n, d in plan.csid.items()},
            )
        return Features(
            roles={role: run(d) for role, d in plan.roles.items()},
            ood={g: {n: run(d) for n, d in sets.items()} for g, sets in plan.ood.items()},
            csid={n: run(d) for n, d in plan.csid.items()},
        )
