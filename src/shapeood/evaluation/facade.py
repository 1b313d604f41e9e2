"""``evaluate``: one run (``run.evaluate_one``) or several (``runs.evaluate_runs``, mean ± std)."""

from __future__ import annotations

import inspect
from typing import Any

from shapeood.evaluation.run import evaluate_one
from shapeood.evaluation.runs import evaluate_runs

_SIGNATURE = inspect.signature(evaluate_one)


def evaluate(*args: Any, **kwargs: Any) -> Any:
    values = dict(_SIGNATURE.bind(*args, **kwargs).arguments)
    model, weights = values["model"], values.get("weights")
    if isinstance(model, (list, tuple)) or isinstance(weights, (list, tuple)):
        return evaluate_runs(values.pop("model"), values.pop("benchmark"), **values)
    return evaluate_one(**values)


evaluate.__signature__ = _SIGNATURE  # type: ignore[attr-defined]
evaluate.__doc__ = evaluate_one.__doc__
