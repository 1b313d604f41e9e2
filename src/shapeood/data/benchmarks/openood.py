"""OpenOOD v1.5 benchmarks: ``cifar10``, ``cifar100``, ``imagenet200``, ``imagenet``.

Read from OpenOOD's layout under the data root: lists in ``benchmark_imglist/<benchmark>/``
(falling back to the offline kit's ``openood_imglists/<benchmark>/``), images in
``images_classic/`` or ``images_largescale/``. FPR convention ``openood``; near/far groups and
csid sets as OpenOOD. ``expected_lines`` are the published list sizes.
"""

from __future__ import annotations

from pathlib import Path

from shapeood.data.benchmarks.registry import register_benchmark
from shapeood.data.benchmarks.spec import BenchmarkSpec, SourceSpec

CLASSIC_IMAGES = "images_classic/"
LARGESCALE_IMAGES = "images_largescale/"
OPENOOD_HINT = (
    "Get the OpenOOD v1.5 data (OpenOOD's scripts/download/download.py) and pass its folder "
    "(the one holding benchmark_imglist/, images_classic/, images_largescale/) as data_root= "
    "or SHAPEOOD_DATA."
)
IMAGENET_OOD_LINES = {
    "val_openimage_o.txt": 1763,
    "test_ssb_hard.txt": 49000,
    "test_ninco.txt": 5879,
    "test_inaturalist.txt": 10000,
    "test_textures.txt": 5160,
    "test_openimage_o.txt": 15869,
}


def _listed(
    bench: str,
    file: str,
    lines: int,
    images: str = CLASSIC_IMAGES,
    ood: bool = False,
    optional: bool = False,
) -> SourceSpec:
    return SourceSpec(
        kind="imglist",
        location=f"benchmark_imglist/{bench}/{file}",
        image_root=images,
        label_override=-1 if ood else None,
        expected_lines=lines,
        optional=optional,
    )


def _openood_cifar(bench: str, other: str, n_classes: int, counts: dict[str, int]) -> BenchmarkSpec:
    def ood(file: str) -> SourceSpec:
        return _listed(bench, file, counts[file], ood=True)

    csid_file = "test_cifar10c.txt"  # OpenOOD v1.5 lists a csid set for CIFAR-10 only
    csid = {"cifar10c": _listed(bench, csid_file, counts.get(csid_file, 0), optional=True)}
    return BenchmarkSpec(
        name=bench,
        family="cifar",
        protocol="openood",
        fpr_convention="openood",
        resize=32,
        crop=32,
        num_classes=n_classes,
        id_train=_listed(bench, f"train_{bench}.txt", 50000, optional=True),
        id_val=_listed(bench, f"val_{bench}.txt", 1000),
        id_test=_listed(bench, f"test_{bench}.txt", 9000),
        ood_val=ood("val_tin.txt"),
        near={other: ood(f"test_{other}.txt"), "tin": ood("test_tin.txt")},
        far={
            "mnist": ood("test_mnist.txt"),
            "svhn": ood("test_svhn.txt"),
            "texture": ood("test_texture.txt"),
            "places365": ood("test_places365.txt"),
        },
        csid=csid if csid_file in counts else {},
        description=(
            f"OpenOOD v1.5 {bench.upper()}: near {other}/TIN, far MNIST/SVHN/Textures/Places365"
        ),
        hint=OPENOOD_HINT,
    )


def _openood_imagenet(bench: str, n_classes: int, id_counts: dict[str, int]) -> BenchmarkSpec:
    counts = {**id_counts, **IMAGENET_OOD_LINES}

    def large(file: str, ood: bool = False, optional: bool = False) -> SourceSpec:
        return _listed(bench, file, counts[file], LARGESCALE_IMAGES, ood, optional)

    suffix = "" if bench == "imagenet" else "200"
    return BenchmarkSpec(
        name=bench,
        family="imagenet",
        protocol="openood",
        fpr_convention="openood",
        resize=256,
        crop=224,
        num_classes=n_classes,
        id_val=large(f"val_{bench}.txt"),
        id_test=large(f"test_{bench}.txt"),
        ood_val=large("val_openimage_o.txt", ood=True),
        near={
            "ssb_hard": large("test_ssb_hard.txt", ood=True),
            "ninco": large("test_ninco.txt", ood=True),
        },
        far={
            "inaturalist": large("test_inaturalist.txt", ood=True),
            "textures": _listed(bench, "test_textures.txt", counts["test_textures.txt"], ood=True),
            "openimage_o": large("test_openimage_o.txt", ood=True),
        },
        csid={
            "imagenet_v2": large(f"test_imagenet{suffix}_v2.txt", optional=True),
            "imagenet_c": large(f"test_imagenet{suffix}_c.txt", optional=True),
            "imagenet_r": large(f"test_imagenet{suffix}_r.txt", optional=True),
        },
        description=(
            f"OpenOOD v1.5 ImageNet-{n_classes if n_classes == 200 else '1K'}: near "
            "SSB-hard/NINCO, far iNaturalist/Textures/OpenImage-O (ImageNet-C csid images are "
            "already 224x224)"
        ),
        hint=OPENOOD_HINT,
    )


@register_benchmark
def cifar10(root: Path | None = None) -> BenchmarkSpec:
    """OpenOOD v1.5 CIFAR-10: near CIFAR-100/TIN, far MNIST/SVHN/Textures/Places365"""
    counts = {
        "val_tin.txt": 1000,
        "test_cifar100.txt": 9000,
        "test_tin.txt": 7793,
        "test_mnist.txt": 70000,
        "test_svhn.txt": 26032,
        "test_texture.txt": 5640,
        "test_places365.txt": 35195,
        "test_cifar10c.txt": 10000,
    }
    return _openood_cifar("cifar10", "cifar100", 10, counts)


@register_benchmark
def cifar100(root: Path | None = None) -> BenchmarkSpec:
    """OpenOOD v1.5 CIFAR-100: near CIFAR-10/TIN, far MNIST/SVHN/Textures/Places365"""
    counts = {
        "val_tin.txt": 972,
        "test_cifar10.txt": 10000,
        "test_tin.txt": 6526,
        "test_mnist.txt": 70000,
        "test_svhn.txt": 26032,
        "test_texture.txt": 5640,
        "test_places365.txt": 33773,
    }
    return _openood_cifar("cifar100", "cifar10", 100, counts)


@register_benchmark
def imagenet200(root: Path | None = None) -> BenchmarkSpec:
    """OpenOOD v1.5 ImageNet-200: near SSB-hard/NINCO, far iNaturalist/Textures/OpenImage-O"""
    counts = {
        "val_imagenet200.txt": 1000,
        "test_imagenet200.txt": 9000,
        "test_imagenet200_v2.txt": 2000,
        "test_imagenet200_c.txt": 2000,
        "test_imagenet200_r.txt": 30000,
    }
    return _openood_imagenet("imagenet200", 200, counts)


@register_benchmark
def imagenet(root: Path | None = None) -> BenchmarkSpec:
    """OpenOOD v1.5 ImageNet-1K: near SSB-hard/NINCO, far iNaturalist/Textures/OpenImage-O"""
    counts = {
        "val_imagenet.txt": 5000,
        "test_imagenet.txt": 45000,
        "test_imagenet_v2.txt": 10000,
        "test_imagenet_c.txt": 10000,
        "test_imagenet_r.txt": 30000,
    }
    return _openood_imagenet("imagenet", 1000, counts)


OPENOOD_SPECS: dict[str, BenchmarkSpec] = {
    fn.__name__: fn() for fn in (cifar10, cifar100, imagenet200, imagenet)
}
