"""shapeood: out-of-distribution detection by activation shaping for any PyTorch classifier.

Quick map: ``shaping`` (tensor functions), ``scores`` (logits -> score), ``LinearHead``,
``create_detector`` / ``list_detectors`` (every method behind one contract), ``metrics``,
``models`` (adapters and offline architectures), ``extract`` (features once, cached),
``evaluate`` (benchmarks), ``train`` (ISH), ``OODClassifier`` (deploy: threshold, predict,
save/load, ONNX/TorchScript export).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shapeood.head import LinearHead as LinearHead

__version__ = "0.1.0"

# Every room loads on first use so that ``import shapeood`` (and ``shapeood --help``) imports
# no torch.
_LAZY = {
    "LinearHead": ("shapeood.head", "LinearHead"),
    "shaping": ("shapeood.shaping", None),
    "scores": ("shapeood.scores", None),
    "metrics": ("shapeood.metrics", None),
    "create_detector": ("shapeood.detectors", "create_detector"),
    "list_detectors": ("shapeood.detectors", "list_detectors"),
    "FeatureSet": ("shapeood.features", "FeatureSet"),
    "extract": ("shapeood.features", "extract"),
    "evaluate": ("shapeood.evaluation", "evaluate"),
    "models": ("shapeood.models", None),
    "data": ("shapeood.data", None),
    "detectors": ("shapeood.detectors", None),
    "features": ("shapeood.features", None),
    "train": ("shapeood.train", None),
    "deploy": ("shapeood.deploy", None),
    "OODClassifier": ("shapeood.deploy", "OODClassifier"),
    "report": ("shapeood.report", None),
    "percent": ("shapeood._validation", "percent"),
    "errors": ("shapeood.errors", None),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'shapeood' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
