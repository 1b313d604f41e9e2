"""Deploy: an OOD-aware classifier fitted once, saved as one file, exported as one graph.

``OODClassifier(model, method, **params).fit(id_data, target_tpr)`` sets the decision threshold;
``predict`` answers ``(labels, scores, is_ood, probabilities)``; ``save``/``load`` use one
``.sood`` file (npz + JSON, no pickle); ``export_onnx``/``export_torchscript`` write
``image -> (logits, score, is_ood)``.
"""

from shapeood.deploy.artifact import DetectorFileError
from shapeood.deploy.classifier import OODClassifier, OODPrediction, fit_split
from shapeood.deploy.graph import exportable_methods
from shapeood.deploy.threshold import accepted_rate, fit_threshold

__all__ = [
    "DetectorFileError",
    "OODClassifier",
    "OODPrediction",
    "accepted_rate",
    "exportable_methods",
    "fit_split",
    "fit_threshold",
]
