"""Named training recipes: model, data, augmentation and hyperparameters in one place.

``imagenet_resnet50_ish`` is the published ISH recipe (OpenOOD ``train_ish.yml`` with the
``imagenet_train_ish.sh`` overrides): torchvision ResNet-50 (IMAGENET1K_V1) fine-tuned 10 epochs,
SGD lr 0.003 with Nesterov momentum 0.9, weight decay 5e-4 (5e-5 on ``fc``), cosine per
iteration, batch 128 per process on 4 processes (``torchrun --nproc_per_node 4``),
RandomResizedCrop 224 + horizontal flip, ISH on ``fc`` at 85 %. ``*_plain`` recipes are the
same with plain cross-entropy, the control that isolates ISH.

``cifar10_densenet_ish`` fine-tunes the offline kit's CIFAR-10 DenseNet-BC-100 on the kit's
10000-image training subset (RandomCrop 32 with padding 4 + flip). It keeps the ImageNet
recipe's optimiser, decay and ISH settings with two changes sized for a CPU: ONE epoch (79
iterations of 128; training runs at about 7 images/s on two CPU cores, so the epoch takes about
25 minutes) and lr 0.01 instead of 0.003, since the run has 79 iterations where the ImageNet
recipe has 25000 and should still move the network.

``cifar10_resnet20_ish`` / ``cifar10_resnet20_plain`` fine-tune the kit's CIFAR-10 ResNet-20
(0.27 M parameters) on the same subset with the same optimiser, decay and ISH settings and
lr 0.01, for EIGHT epochs (632 iterations of 128): one training thread runs about 130 images/s
(an epoch in about 75 s on an idle core), and the per-epoch training loss has flattened by the
last epochs of the cosine schedule. Small enough to repeat over several seeds on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

from shapeood import paths
from shapeood.data.pixels import ToFloat
from shapeood.train.loop import TrainConfig

KIT_PREFIX = "kit:"


def _cfg(model_or_cfg: nn.Module | Mapping[str, Any]) -> Mapping[str, Any]:
    cfg = model_or_cfg if isinstance(model_or_cfg, Mapping) else model_or_cfg.pretrained_cfg
    for key in ("mean", "std", "input_size"):
        if key not in cfg:
            raise ValueError(f"pretrained_cfg lacks {key!r}: load the model with shapeood.models")
    return cfg


def _to_normalised(cfg: Mapping[str, Any]) -> list[Any]:
    return [
        v2.ToImage(),
        ToFloat(),  # x / 255 exactly as ToTensor (v2.ToDtype multiplies)
        v2.Normalize(mean=list(cfg["mean"]), std=list(cfg["std"])),
    ]


def cifar_augmentation(model_or_cfg: nn.Module | Mapping[str, Any]) -> v2.Compose:
    """``RandomCrop(size, padding=4) -> RandomHorizontalFlip -> [0, 1] -> Normalize``."""
    cfg = _cfg(model_or_cfg)
    size = [int(s) for s in cfg["input_size"][1:]]
    return v2.Compose(
        [v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip(), *_to_normalised(cfg)]
    )


def imagenet_augmentation(model_or_cfg: nn.Module | Mapping[str, Any]) -> v2.Compose:
    """``RandomResizedCrop(size, bilinear) -> RandomHorizontalFlip -> [0, 1] -> Normalize``."""
    cfg = _cfg(model_or_cfg)
    size = [int(s) for s in cfg["input_size"][1:]]
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, interpolation=InterpolationMode.BILINEAR, antialias=True),
            v2.RandomHorizontalFlip(),
            *_to_normalised(cfg),
        ]
    )


AUGMENTATIONS: dict[str, Callable[[Any], v2.Compose]] = {
    "cifar": cifar_augmentation,
    "imagenet": imagenet_augmentation,
}


@dataclass(frozen=True)
class Recipe:
    """A reproducible training run. ``model``/``weights`` go to ``shapeood.models.load_model``;
    ``data`` is ``"kit:<file>.npz"``, an ``.npz``, an image folder or an OpenOOD image list
    (``None``: the user must name one); ``processes`` is the published number of processes."""

    name: str
    description: str
    config: TrainConfig
    augmentation: str
    model: str | None = None
    weights: str | None = None
    data: str | None = None
    processes: int = 1
    notes: tuple[str, ...] = field(default_factory=tuple)

    def transform(self, model: nn.Module | Mapping[str, Any]) -> v2.Compose:
        """The training augmentation for ``model``'s input size and normalisation."""
        return AUGMENTATIONS[self.augmentation](model)


_RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to the registry (its name must be new)."""
    if recipe.name in _RECIPES:
        raise ValueError(f"a recipe named {recipe.name!r} is already registered")
    if recipe.augmentation not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augmentation {recipe.augmentation!r}; use one of {sorted(AUGMENTATIONS)}"
        )
    _RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    try:
        return _RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(_RECIPES))}") from None


def list_recipes() -> dict[str, Recipe]:
    return dict(sorted(_RECIPES.items()))


def training_data(
    source: str | Path, transform: Any, imglist_root: str | Path | None = None
) -> Dataset:
    """A training set from ``"kit:<file>.npz"``, an ``.npz`` path, an image folder
    (class sub-folders) or an OpenOOD image list (``.txt``, images under ``imglist_root``)."""
    from shapeood import data  # train sits above data

    text = str(source)
    if text.startswith(KIT_PREFIX):
        return data.ArrayDataset(paths.kit_file(text[len(KIT_PREFIX) :]), transform=transform)
    path = Path(text).expanduser()
    if path.suffix == ".npz":
        return data.ArrayDataset(path, transform=transform)
    if path.is_dir():
        return data.ImageFolderDataset(path, transform=transform)
    if path.suffix == ".txt":
        if imglist_root is None:
            raise ValueError(
                f"{path} is an image list: also give the folder its paths are relative to "
                "(CLI: --data-root)"
            )
        return data.ImageListDataset(imglist_root, path, transform=transform)
    raise FileNotFoundError(
        f"training data {text!r} not found: give 'kit:FILE.npz', an .npz file, an image folder "
        "or an OpenOOD image list (.txt) with --data-root"
    )


_IMAGENET = TrainConfig(
    epochs=10,
    batch_size=128,
    lr=0.003,
    min_lr=1e-6,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    head_weight_decay=5e-5,
    ish=True,
    ish_percentile=85,
    ish_layers="head",
    num_workers=8,
)
_CIFAR = _IMAGENET.replace(lr=0.01, epochs=1, num_workers=0)

for _ish in (True, False):
    _kind = "ish" if _ish else "plain"
    register_recipe(
        Recipe(
            name=f"imagenet_resnet50_{_kind}",
            description=(
                "ISH paper recipe: fine-tune torchvision ResNet-50 (IMAGENET1K_V1) on ImageNet-1K "
                "for 10 epochs, 4 processes x 128"
                + ("" if _ish else " (plain cross-entropy control)")
            ),
            config=_IMAGENET.replace(ish=_ish),
            augmentation="imagenet",
            model="torchvision:resnet50",
            weights="IMAGENET1K_V1",
            data=None,
            processes=4,
            notes=(
                "data: OpenOOD's train_imagenet.txt with --data-root, or an ImageFolder of the "
                "ILSVRC-2012 training set",
                "launch: torchrun --nproc_per_node 4 --no-python shapeood train --recipe ...",
            ),
        )
    )
    register_recipe(
        Recipe(
            name=f"cifar10_densenet_{_kind}",
            description=(
                "fine-tune the kit CIFAR-10 DenseNet-BC-100 on cifar10_train_subset (10000 images)"
                + (" with ISH" if _ish else " with plain cross-entropy (control)")
            ),
            config=_CIFAR.replace(ish=_ish),
            augmentation="cifar",
            model="densenet100_cifar10",
            data=f"{KIT_PREFIX}cifar10_train_subset.npz",
            processes=1,
        )
    )
    register_recipe(
        Recipe(
            name=f"cifar10_resnet20_{_kind}",
            description=(
                "fine-tune the kit CIFAR-10 ResNet-20 on cifar10_train_subset (10000 images), "
                "8 epochs" + (" with ISH" if _ish else " with plain cross-entropy (control)")
            ),
            config=_CIFAR.replace(ish=_ish, epochs=8),
            augmentation="cifar",
            model="resnet20_cifar10",
            data=f"{KIT_PREFIX}cifar10_train_subset.npz",
            processes=1,
        )
    )
