"""Benchmark definitions: built-ins, the offline kit benchmark, missing-data reports, user files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shapeood import paths
from shapeood.data import (
    Benchmark,
    BenchmarkSpec,
    MissingDataError,
    SourceSpec,
    benchmark_spec,
    get_benchmark,
    holdout_rows,
    list_benchmarks,
    load_benchmark_file,
)
from shapeood.data.benchmarks import CLASSIC_SPECS, OPENOOD_SPECS, register_benchmark

BUILTIN = [
    "cifar10",
    "cifar100",
    "imagenet200",
    "imagenet",
    "imagenet_classic",
    "cifar_classic",
    "cifar10_offline",
]


def test_list_benchmarks_names_every_builtin():
    listed = list_benchmarks()
    assert set(BUILTIN) <= set(listed)
    assert all(isinstance(text, str) and text for text in listed.values())
    with pytest.raises(ValueError, match="unknown benchmark 'cifar11'"):
        get_benchmark("cifar11")


@pytest.mark.parametrize("name", sorted(OPENOOD_SPECS))
def test_kit_image_lists_have_the_recorded_line_counts(kit, name):
    spec = OPENOOD_SPECS[name]
    checked = 0
    for role, set_name, source in spec.roles():
        if source.kind != "imglist":
            continue
        file = Path(source.location).relative_to("benchmark_imglist")
        listing = paths.data_root() / "openood_imglists" / file
        assert listing.is_file(), f"{name} {role}/{set_name}: {listing} missing from the kit"
        with open(listing, encoding="utf-8") as handle:
            lines = sum(1 for line in handle if line.strip())
        assert lines == source.expected_lines, (name, role, set_name, lines)
        checked += 1
    assert checked >= 9


def test_openood_definitions_follow_openood_v15():
    c10, c100 = OPENOOD_SPECS["cifar10"], OPENOOD_SPECS["cifar100"]
    assert list(c10.near) == ["cifar100", "tin"] and list(c100.near) == ["cifar10", "tin"]
    assert list(c10.far) == ["mnist", "svhn", "texture", "places365"] == list(c100.far)
    assert (c10.resize, c10.crop, c10.num_classes) == (32, 32, 10)
    for name in ("imagenet200", "imagenet"):
        spec = OPENOOD_SPECS[name]
        assert list(spec.near) == ["ssb_hard", "ninco"]
        assert list(spec.far) == ["inaturalist", "textures", "openimage_o"]
        assert (spec.resize, spec.crop) == (256, 224) and spec.fpr_convention == "openood"
        assert spec.far["textures"].image_root == "images_classic/"
        assert spec.near["ninco"].image_root == "images_largescale/"
        assert set(spec.csid) == {"imagenet_v2", "imagenet_c", "imagenet_r"}
    for spec in OPENOOD_SPECS.values():
        for role, _, source in spec.roles():
            ood_role = role in ("near", "far", "ood_val")
            assert (source.label_override == -1) == ood_role
    for spec in CLASSIC_SPECS.values():
        assert spec.fpr_convention == "classic" and spec.protocol == "classic"
    assert list(CLASSIC_SPECS["imagenet_classic"].far) == [
        "inaturalist",
        "sun",
        "places",
        "textures",
    ]
    assert list(CLASSIC_SPECS["cifar_classic"].far) == [
        "svhn",
        "lsun_c",
        "lsun_r",
        "isun",
        "textures",
        "places365",
    ]


# ----------------------------------------------------------------------------- offline kit


@pytest.fixture(scope="module")
def offline(kit) -> Benchmark:
    return get_benchmark("cifar10_offline")


def test_offline_benchmark_sizes_and_roles(offline):
    assert offline.protocol == "openood" and offline.fpr_convention == "openood"
    assert (offline.resize, offline.crop, offline.num_classes) == (32, 32, 10)
    sizes = {role + "/" + name: len(ds) for role, name, ds in offline.datasets()}
    assert sizes == {
        "id_test/id_test": 9000,
        "id_val/id_val": 1000,
        "ood_val/ood_val": 1000,
        "id_train/id_train": 10000,
        "near/tin": 7793,
        "far/mnist": 10000,
        "far/texture": 1200,
    }
    assert offline.group_of("tin") == "near" and offline.group_of("mnist") == "far"
    assert list(offline.ood_datasets()) == ["tin", "mnist", "texture"]
    for _, _, ds in offline.datasets():
        assert len(ds.fingerprint()) >= 16
    for ds in [offline.ood_val, *offline.ood_datasets().values()]:
        assert set(ds.labels.tolist()) == {-1}
    assert set(offline.id_test.labels.tolist()) == set(range(10))


def test_offline_id_val_is_a_disjoint_balanced_holdout(kit, offline):
    val, test = offline.id_val.indices, offline.id_test.indices
    assert not set(val.tolist()) & set(test.tolist())
    assert sorted([*val.tolist(), *test.tolist()]) == list(range(10000))
    assert np.bincount(offline.id_val.labels, minlength=10).tolist() == [100] * 10
    with np.load(kit / "cifar10_test.npz") as z:
        labels = z["labels"]
    np.testing.assert_array_equal(offline.id_test.labels, labels[test])
    # the same rows every time
    again_val, again_test = holdout_rows(labels)
    assert np.array_equal(again_val, val) and np.array_equal(again_test, test)


def test_offline_tin_rows_come_from_openood_lists(kit, offline):
    near, val = offline.ood["near"]["tin"], offline.ood_val
    assert not set(near.indices.tolist()) & set(val.indices.tolist())
    listing = kit / "openood_imglists" / "cifar10" / "test_tin.txt"
    first = listing.read_text().splitlines()[0].split(" ")[0]
    row = int(first.rsplit("_", 1)[1].split(".")[0])
    assert near.indices[0] == row
    with np.load(kit / "tinyimagenet_val_32.npz") as z:
        pixels = z["images"][row]
    assert torch.equal(near[0][0], torch.from_numpy(pixels).permute(2, 0, 1))


def test_set_transform_resizes_mnist_to_the_benchmark_size(kit):
    bench = get_benchmark("cifar10_offline")

    def to_benchmark_size(image: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(
            image[None].float(), size=(bench.resize, bench.resize), mode="bilinear"
        )[0]

    assert bench.set_transform(to_benchmark_size) is bench
    image, label = bench.ood["far"]["mnist"][0]
    assert tuple(image.shape) == (3, 32, 32) and label == -1
    assert all(ds.transform is to_benchmark_size for _, _, ds in bench.datasets())


# ----------------------------------------------------------------------------- missing data


def test_missing_openood_data_lists_every_folder(kit, tmp_path):
    with pytest.raises(MissingDataError) as info:
        get_benchmark("cifar10", data_root=tmp_path)
    missing = info.value.missing
    tops = {Path(m.split(" ")[0]).name for m in missing}
    assert tops == {"cifar10", "cifar100", "tin", "mnist", "svhn", "texture", "places365"}
    assert all(m.startswith(str(tmp_path / "images_classic")) for m in missing)
    message = str(info.value)
    assert "test_places365.txt" in message and str(tmp_path) in message and "data_root" in message


def test_missing_classic_data_lists_every_folder(tmp_path):
    with pytest.raises(MissingDataError) as info:
        get_benchmark("imagenet_classic", data_root=tmp_path)
    assert len(info.value.missing) == 5  # ID val + 4 OOD folders; ID train is optional
    for part in ("imagenet/val", "iNaturalist", "SUN", "Places", "dtd/images"):
        assert any(part in m for m in info.value.missing), part
    with pytest.raises(MissingDataError) as info:
        get_benchmark("cifar_classic", data_root=tmp_path)
    assert len(info.value.missing) == 7


def test_missing_offline_kit_is_reported(tmp_path):
    with pytest.raises(MissingDataError, match="SHAPEOOD_DATA") as info:
        benchmark_spec("cifar10_offline", data_root=tmp_path)
    assert len(info.value.missing) == 7


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (value, value, value)).save(path)


def test_openood_benchmark_builds_from_an_openood_layout(tmp_path):
    """A tiny OpenOOD-style tree: lists under benchmark_imglist/, images under images_classic/."""
    lists = tmp_path / "benchmark_imglist" / "cifar10"
    lists.mkdir(parents=True)
    files = {
        "val_cifar10.txt": ("cifar10/test/cat", 3),
        "test_cifar10.txt": ("cifar10/test/dog", 5),
        "val_tin.txt": ("tin/val/images", -1),
        "test_cifar100.txt": ("cifar100/test/apple", -1),
        "test_tin.txt": ("tin/val/images", -1),
        "test_mnist.txt": ("mnist/test", -1),
        "test_svhn.txt": ("svhn/test", -1),
        "test_texture.txt": ("texture/banded", -1),
        "test_places365.txt": ("places365/field", -1),
    }
    for i, (file, (folder, label)) in enumerate(files.items()):
        names = [f"{folder}/{file[:-4]}_{j}.png" for j in range(2)]
        for name in names:
            _png(tmp_path / "images_classic" / name, i)
        (lists / file).write_text("".join(f"{n} {label}\n" for n in names))
    with pytest.warns(UserWarning, match="the benchmark definition expects") as caught:
        bench = get_benchmark("cifar10", data_root=tmp_path)
    assert len(caught) == len(files)  # every tiny list differs from the published size
    assert bench.name == "cifar10" and len(bench.id_test) == 2 and bench.id_test[0][1] == 5
    assert set(bench.skipped_optional) == {"id_train/id_train", "csid/cifar10c"}
    assert bench.id_train is None and bench.csid == {}
    assert bench.ood["near"]["tin"][1][1] == -1
    image, _ = bench.ood["far"]["places365"][0]
    assert image.size == (32, 32) and image.getpixel((0, 0)) == (8, 8, 8)


# ----------------------------------------------------------------------------- user files


@pytest.fixture()
def user_data(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    np.savez(
        data / "id.npz",
        images=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8),
        labels=np.arange(20) % 4,
    )
    np.savez(
        data / "ood.npz",
        images=rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
        labels=np.zeros(6, np.int64),
    )
    for i in range(3):
        _png(data / "folder_ood" / "x" / f"{i}.png", 10 * i)
    _png(data / "imgs" / "a.png", 1)
    _png(data / "imgs" / "b.png", 2)
    (data / "list.txt").write_text("imgs/a.png -1\nimgs/b.png -1\n")
    return tmp_path


def test_yaml_benchmark_file(user_data):
    file = user_data / "bench.yaml"
    file.write_text(
        textwrap.dedent(
            """
            name: mine
            data_root: data
            resize: 8
            fpr_convention: classic
            id:
              test: {npz: id.npz, rows: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
              val: {npz: id.npz, rows: [10, 11, 12]}
            ood:
              val: {npz: ood.npz, rows: [0]}
              near:
                listed: {imglist: list.txt, root: .}
              far:
                arrays: {npz: ood.npz, rows: [1, 2, 3]}
                folder: {folder: folder_ood}
            """
        )
    )
    bench = load_benchmark_file(file)
    assert bench.name == "mine" and bench.fpr_convention == "classic"
    assert (bench.resize, bench.crop, bench.num_classes) == (8, 8, 4)  # classes inferred
    assert len(bench.id_test) == 10 and len(bench.id_val) == 3 and len(bench.ood_val) == 1
    assert {n: len(d) for n, d in bench.ood_datasets().items()} == {
        "listed": 2,
        "arrays": 3,
        "folder": 3,
    }
    for ds in [bench.ood_val, *bench.ood_datasets().values()]:
        assert set(ds.labels.tolist()) == {-1}
    assert bench.id_test[4][1] == 0 and bench.id_test[5][1] == 1
    assert get_benchmark(str(file)).name == "mine"


def test_toml_benchmark_file_with_plain_ood_mapping(user_data):
    file = user_data / "bench.toml"
    file.write_text(
        textwrap.dedent(
            """
            name = "tomlbench"
            data_root = "data"
            num_classes = 4
            resize = 36
            crop = 32

            [id.test]
            npz = "id.npz"

            [ood.arrays]
            npz = "ood.npz"

            [ood.folder]
            folder = "folder_ood"
            label_override = -2
            """
        )
    )
    bench = load_benchmark_file(file)
    assert (bench.resize, bench.crop, bench.num_classes) == (36, 32, 4)
    assert bench.ood["near"] == {} and list(bench.ood["far"]) == ["arrays", "folder"]
    assert bench.ood["far"]["folder"].labels.tolist() == [-2, -2, -2]
    assert bench.id_val is None and bench.ood_val is None


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ("ood: {a: {npz: ood.npz}}", ValueError, "id: missing"),
        ("id: {test: {npz: id.npz}}", ValueError, "ood: missing"),
        ("id: {test: {npz: id.npz, colour: red}}\nood: {a: ood.npz}", ValueError, "unknown key"),
        ("id: {test: {imglist: list.txt}}\nood: {a: ood.npz}", ValueError, "needs root"),
        ("id: {test: {npz: id.npz, folder: x}}\nood: {a: ood.npz}", ValueError, "not several"),
        (
            "id: {test: {npz: nope.npz}}\nood: {a: {npz: gone.npz}, b: {folder: none}}",
            MissingDataError,
            "3 file",
        ),
    ],
)
def test_bad_benchmark_files(user_data, body, error, message):
    file = user_data / "bad.yaml"
    file.write_text("data_root: data\nnum_classes: 4\n" + body + "\n")
    with pytest.raises(error, match=message):
        load_benchmark_file(file)


def test_imagenet_classic_builds_from_folders(tmp_path):
    for wnid in ("n01440764", "n01443537"):
        _png(tmp_path / "imagenet" / "val" / wnid / "a.png", 3)
    for folder in ("iNaturalist/images", "SUN/images", "Places/images", "dtd/images/banded"):
        _png(tmp_path / "ood_data" / folder / "x.png", 7)
    bench = get_benchmark("imagenet_classic", data_root=tmp_path)
    assert bench.fpr_convention == "classic" and (bench.resize, bench.crop) == (256, 224)
    assert bench.id_test.classes == ["n01440764", "n01443537"]
    assert bench.id_test.labels.tolist() == [0, 1]
    assert bench.ood["near"] == {} and list(bench.ood["far"]) == [
        "inaturalist",
        "sun",
        "places",
        "textures",
    ]
    assert all(ds.labels.tolist() == [-1] for ds in bench.ood_datasets().values())
    assert bench.id_train is None and bench.skipped_optional == ["id_train/id_train"]


# ----------------------------------------------------------------------------- registry, family


def test_every_builtin_declares_its_family():
    names = [name for name in list_benchmarks() if name != "cifar10_offline"]
    families = {name: benchmark_spec(name).family for name in names}
    assert families == {
        "cifar10": "cifar",
        "cifar100": "cifar",
        "imagenet200": "imagenet",
        "imagenet": "imagenet",
        "imagenet_classic": "imagenet",
        "cifar_classic": "cifar",
        "cifar100_classic": "cifar",
    }


def test_offline_benchmark_family_reads_through_the_spec(offline):
    assert offline.family == "cifar" and offline.spec.family == "cifar"
    assert offline.name == offline.spec.name == "cifar10_offline"


def test_register_benchmark_adds_a_benchmark_in_one_function(tmp_path):
    from shapeood.data.benchmarks import registry

    @register_benchmark
    def tiny_registered(root):
        """a tiny benchmark registered by a test"""
        return BenchmarkSpec(
            name="tiny_registered", family="custom", protocol="openood",
            fpr_convention="openood", resize=8, crop=8, num_classes=2,
            id_test=SourceSpec("npz", "id.npz"), far={"x": SourceSpec("npz", "x.npz")},
        )  # fmt: skip

    try:
        assert list_benchmarks()["tiny_registered"] == "a tiny benchmark registered by a test"
        with pytest.raises(MissingDataError, match="2 file"):
            get_benchmark("tiny_registered", data_root=tmp_path)
        with pytest.raises(ValueError, match="registered twice"):
            register_benchmark(tiny_registered)
    finally:
        registry._REGISTRY.pop("tiny_registered")
        registry._DESCRIPTIONS.pop("tiny_registered")


def test_family_is_declared_and_checked(user_data):
    file = user_data / "fam.yaml"
    file.write_text("data_root: data\nnum_classes: 4\nid: {test: id.npz}\nood: {a: ood.npz}\n")
    assert load_benchmark_file(file).family == "custom"
    file.write_text(file.read_text() + "family: imagnet\n")
    with pytest.raises(ValueError, match="family: must be one of cifar, imagenet, custom"):
        load_benchmark_file(file)
