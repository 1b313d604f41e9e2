"""Image sources and benchmark definitions.

Sources (torch ``Dataset``s yielding ``(image, label)``): ``ArrayDataset`` (npz arrays),
``ImageListDataset`` (OpenOOD image lists), ``ImageFolderDataset``, ``torchvision_dataset``.
Benchmarks: ``get_benchmark(name)``, ``list_benchmarks()``, ``load_benchmark_file(path)``.
"""

from shapeood.data.benchmarks import (
    Benchmark,
    BenchmarkSpec,
    MissingDataError,
    SourceSpec,
    benchmark_spec,
    build_benchmark,
    get_benchmark,
    holdout_rows,
    list_benchmarks,
    load_benchmark_file,
    register_benchmark,
    spec_from_mapping,
)
from shapeood.data.sources import (
    ArrayDataset,
    BadImageError,
    ImageFolderDataset,
    ImageListDataset,
    TorchvisionSource,
    allow_truncated_images,
    load_rgb,
    parse_imglist,
    torchvision_dataset,
)

__all__ = [
    "ArrayDataset",
    "BadImageError",
    "Benchmark",
    "BenchmarkSpec",
    "ImageFolderDataset",
    "ImageListDataset",
    "MissingDataError",
    "SourceSpec",
    "TorchvisionSource",
    "allow_truncated_images",
    "benchmark_spec",
    "build_benchmark",
    "get_benchmark",
    "holdout_rows",
    "list_benchmarks",
    "load_benchmark_file",
    "load_rgb",
    "parse_imglist",
    "register_benchmark",
    "spec_from_mapping",
    "torchvision_dataset",
]
