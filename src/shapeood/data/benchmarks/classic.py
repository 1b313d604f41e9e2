"""Classic suites from folders laid out as in the ReAct / DICE / ASH repositories.

``imagenet_classic`` (iNaturalist, SUN, Places, Textures) and ``cifar_classic`` /
``cifar100_classic`` (SVHN, LSUN-C, LSUN-R, iSUN, Textures, Places365). FPR convention
``classic``.
"""

from __future__ import annotations

from pathlib import Path

from shapeood.data.benchmarks.registry import register_benchmark
from shapeood.data.benchmarks.spec import BenchmarkSpec, SourceSpec

CLASSIC_HINT = (
    "Lay the data out as the ReAct/DICE repositories do under data_root (see the benchmark's "
    "description) and pass data_root= or set SHAPEOOD_DATA."
)
CIFAR_FILES = {  # dataset: (batches folder, test file, train file)
    "cifar10": ("cifar-10-batches-py", "test_batch", "data_batch_1"),
    "cifar100": ("cifar-100-python", "test", "train"),
}


def _folder(location: str) -> SourceSpec:
    return SourceSpec(kind="folder", location=location, label_override=-1)


def _cifar_split(dataset: str, split: str, file: str, optional: bool = False) -> SourceSpec:
    return SourceSpec(
        "torchvision", dataset, dataset=dataset, split=split, expect=(file,), optional=optional
    )


def _cifar_classic(name: str, dataset: str, n_classes: int) -> BenchmarkSpec:
    batches, test_file, train_file = CIFAR_FILES[dataset]
    return BenchmarkSpec(
        name=name,
        family="cifar",
        protocol="classic",
        fpr_convention="classic",
        resize=32,
        crop=32,
        num_classes=n_classes,
        id_test=_cifar_split(dataset, "test", f"{batches}/{test_file}"),
        id_train=_cifar_split(dataset, "train", f"{batches}/{train_file}", optional=True),
        far={
            "svhn": SourceSpec(
                "torchvision",
                "ood_datasets/svhn",
                dataset="svhn",
                split="test",
                label_override=-1,
                expect=("test_32x32.mat",),
            ),
            "lsun_c": _folder("ood_datasets/LSUN"),
            "lsun_r": _folder("ood_datasets/LSUN_resize"),
            "isun": _folder("ood_datasets/iSUN"),
            "textures": _folder("ood_datasets/dtd/images"),
            "places365": _folder("ood_datasets/places365"),
        },
        description=(
            f"classic {dataset.upper()} suite (ReAct/DICE/ASH): torchvision {dataset} in "
            f"<root>/{dataset}; OOD under <root>/ood_datasets/: svhn (test_32x32.mat), LSUN, "
            "LSUN_resize, iSUN, dtd/images, places365 (image folders)"
        ),
        hint=CLASSIC_HINT,
    )


@register_benchmark
def imagenet_classic(root: Path | None = None) -> BenchmarkSpec:
    """classic ImageNet-1K suite (MOS/ReAct/ASH): iNaturalist, SUN, Places, Textures"""
    return BenchmarkSpec(
        name="imagenet_classic",
        family="imagenet",
        protocol="classic",
        fpr_convention="classic",
        resize=256,
        crop=224,
        num_classes=1000,
        id_test=SourceSpec("folder", "imagenet/val"),
        id_train=SourceSpec("folder", "imagenet/train", optional=True),
        far={
            "inaturalist": _folder("ood_data/iNaturalist"),
            "sun": _folder("ood_data/SUN"),
            "places": _folder("ood_data/Places"),
            "textures": _folder("ood_data/dtd/images"),
        },
        description=(
            "classic ImageNet-1K suite (MOS/ReAct/ASH): ID <root>/imagenet/val (wnid class "
            "folders); OOD <root>/ood_data/{iNaturalist,SUN,Places,dtd/images}"
        ),
        hint=CLASSIC_HINT,
    )


@register_benchmark
def cifar_classic(root: Path | None = None) -> BenchmarkSpec:
    """classic CIFAR-10 suite (ReAct/DICE/ASH): SVHN, LSUN-C/R, iSUN, Textures, Places365"""
    return _cifar_classic("cifar_classic", "cifar10", 10)


@register_benchmark
def cifar100_classic(root: Path | None = None) -> BenchmarkSpec:
    """classic CIFAR-100 suite (ReAct/DICE/ASH): SVHN, LSUN-C/R, iSUN, Textures, Places365"""
    return _cifar_classic("cifar100_classic", "cifar100", 100)


CLASSIC_SPECS: dict[str, BenchmarkSpec] = {
    fn.__name__: fn() for fn in (imagenet_classic, cifar_classic, cifar100_classic)
}
