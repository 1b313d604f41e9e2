"""Models: split any classifier into features + linear head, and the offline-kit architectures.

``adapt(model)`` -> ``FeatureModel`` (``features(x)`` pooled penultimate (N, D), ``head``
``LinearHead``); ``create(name, weights)`` builds ``resnet{6n+2}_cifar``, ``densenet100_cifar``,
``resnet18_32x32``, ``mobilenet_v2_tf``; ``load_model(spec, weights=, arch=, num_classes=,
trust_pickle=, random_weights=)`` resolves every ``--model`` form (kit names, ``torchvision:NAME``,
``timm:NAME``, checkpoint files, ``python:MODULE:FUNCTION``, pickled models; see
``shapeood.models.spec``); every model carries ``pretrained_cfg`` and ``transform_for(model)``
builds its preprocessing.
"""

from __future__ import annotations

from shapeood.models.adapter import FeatureModel, adapt
from shapeood.models.checkpoints import read_checkpoint
from shapeood.models.cifar_resnet import CifarResNet
from shapeood.models.config import complete_cfg, imagenet_cfg
from shapeood.models.densenet import DenseNetBC
from shapeood.models.factory import KIT_MODELS, create, infer_architecture, list_models
from shapeood.models.heads import find_head
from shapeood.models.mobilenet_v2_tf import MobileNetV2TF
from shapeood.models.resnet18_32x32 import ResNet18_32x32
from shapeood.models.spec import MODEL_FORMS, load_model
from shapeood.models.transforms import transform_for

__all__ = [
    "KIT_MODELS",
    "MODEL_FORMS",
    "CifarResNet",
    "DenseNetBC",
    "FeatureModel",
    "MobileNetV2TF",
    "ResNet18_32x32",
    "adapt",
    "complete_cfg",
    "create",
    "find_head",
    "imagenet_cfg",
    "infer_architecture",
    "list_models",
    "load_model",
    "read_checkpoint",
    "transform_for",
]
