"""Contract of every registered detector: fit/score/predict, params, registry and errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

import shapeood as so
from shapeood import LinearHead
from shapeood.detectors import (
    ODIN,
    Detector,
    Energy,
    create_detector,
    detector_class,
    list_detectors,
    register_detector,
)
from shapeood.detectors import registry as registry_module

ALL_NAMES = [
    "msp", "max_logit", "energy", "odin", "dice", "react",
    "ash_p", "ash_b", "ash_s", "scale", "lhact", "himplos",
]  # fmt: skip
N, D, C = 48, 64, 10


def _params(name: str) -> dict:
    """Parameters that let every detector score cached features (ODIN without input noise)."""
    return {"noise": 0.0} if name == "odin" else {}


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(C, D, generator=g) * 0.3
    bias = torch.randn(C, generator=g) * 0.1
    train = torch.relu(torch.randn(200, D, generator=g)) * 1.5
    labels = torch.arange(200) % C
    test = torch.relu(torch.randn(N, D, generator=g)) * 1.5
    return {"weight": weight, "bias": bias, "train": train, "labels": labels, "test": test}


def _head(d: dict[str, torch.Tensor]) -> LinearHead:
    return LinearHead(d["weight"], d["bias"])


def _fit(name: str, d: dict[str, torch.Tensor], **params) -> Detector:
    det = create_detector(name, **{**_params(name), **params})
    return det.fit(_head(d), d["train"], d["labels"])


# ------------------------------------------------------------------ registry


def test_list_detectors_covers_all_methods() -> None:
    infos = list_detectors()
    assert list(infos)[: len(ALL_NAMES)] == ALL_NAMES
    for name, info in infos.items():
        assert info.name == name == info.cls.name
        assert info.description and "\n" not in info.description
        assert info.params == info.cls.default_params()
        for key, values in info.default_sweep.items():
            assert key in info.params, (name, key)
            assert values, (name, key)
        for preset in info.presets.values():
            assert set(preset) <= set(info.params)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("ash_p", "percentile", 90),
        ("ash_b", "percentile", 90),
        ("ash_s", "percentile", 90),
        ("scale", "percentile", 85),
        ("react", "percentile", 90),
        ("dice", "percentile", 90),
        ("himplos", "percentile", 30),
        ("himplos", "threshold", 0.8),
        ("odin", "temperature", 1000),
        ("odin", "noise", 0.0014),
        ("odin", "variant", "openood"),
        ("energy", "temperature", 1.0),
    ],
)
def test_documented_defaults(name: str, key: str, value) -> None:
    assert list_detectors()[name].params[key] == value


def test_sweeps_follow_openood() -> None:
    infos = list_detectors()
    grid = [65, 70, 75, 80, 85, 90, 95]
    for name in ("ash_p", "ash_b", "ash_s", "scale"):
        assert infos[name].default_sweep == {"percentile": grid}
    assert infos["react"].default_sweep == {"percentile": [85, 90, 95, 99]}
    assert infos["odin"].default_sweep == {
        "temperature": [1, 10, 100, 1000],
        "noise": [0.0014, 0.0028],
    }
    for name in ("msp", "max_logit", "energy", "dice"):
        assert infos[name].default_sweep == {}


def test_capability_flags() -> None:
    infos = list_detectors()
    assert [n for n in ALL_NAMES if infos[n].requires_model] == ["odin"]
    assert [n for n in ALL_NAMES if infos[n].requires_labels] == ["himplos"]
    assert {n for n in ALL_NAMES if infos[n].requires_fit} == {"react", "dice", "himplos"}
    plain = {"msp", "max_logit", "energy", "odin"}
    assert {n for n in ALL_NAMES if not infos[n].changes_logits} == plain


def test_traits_say_what_each_method_needs() -> None:
    infos = list_detectors()
    assert {n: infos[n].fit_split for n in ALL_NAMES if infos[n].fit_split} == {
        "dice": "train",
        "himplos": "train",
        "react": "val",
        "lhact": "val",
    }
    react, lhact = detector_class("react"), detector_class("lhact")
    assert react.needs_fit() and not react.needs_fit({"threshold": 1.0})
    assert not detector_class("dice").needs_fit({"mean_feature": [1.0, 2.0]})
    assert not lhact.needs_fit() and lhact.needs_fit({"th_percentile": 95})
    assert lhact.aps_grid() == {}
    assert lhact.aps_grid({"th_percentile": 95}) == {
        "th_percentile": [90, 95, 99],
        "tl_percentile": [15, 35, 55],
    }
    assert lhact.family_params("imagenet") == {}
    assert lhact.family_params("cifar") == {"th_percentile": 95, "tl_percentile": 35}
    # given th/tl replace the fitted percentiles of the preset (alternatives)
    assert lhact.family_params("cifar", {"th": 2.0}) == {"th": 2.0}
    assert lhact.family_params("cifar", {"th_percentile": 90}) == {
        "th_percentile": 90,
        "tl_percentile": 35,
    }


@pytest.mark.parametrize("name", ALL_NAMES)
def test_hyperparameters_are_keyword_only(name: str) -> None:
    cls = detector_class(name)
    params = cls.default_params()
    if params:
        with pytest.raises(TypeError):
            cls(*params.values())
    assert set(cls.param_constraints) <= set(params)


def test_positional_hyperparameters_are_refused_at_registration() -> None:
    class Positional(Detector):
        name = "positional_test"

        def __init__(self, percentile: float = 90) -> None:
            self.percentile = percentile

    with pytest.raises(TypeError, match="keyword-only"):
        register_detector(Positional)


def test_percentile_constraints_use_the_shared_check(data) -> None:
    from shapeood import _validation

    calls = []
    original = _validation.check_percentile

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    from shapeood.detectors import constraints

    constraints.check_percentile = spy
    try:
        with pytest.raises(ValueError, match="percentile"):
            create_detector("scale", percentile=150).fit(_head(data))
    finally:
        constraints.check_percentile = original
    assert calls and calls[0][1] == "percentile"


def test_create_detector_aliases_presets_and_errors() -> None:
    assert type(create_detector("ASH-S")) is detector_class("ash_s")
    assert type(create_detector("ebo")) is Energy
    assert create_detector("ash").name == "ash_b"
    assert create_detector("ash_s", preset="cifar").percentile == 95
    assert create_detector("ash_s", preset="cifar", percentile=80).percentile == 80
    himplos = create_detector("himplos", preset="cifar")
    assert (himplos.percentile, himplos.threshold) == (60, 1.6)
    with pytest.raises(ValueError, match=r"unknown detector 'ash_x'.*ash_"):
        create_detector("ash_x")
    with pytest.raises(ValueError, match=r"no parameter.*percentil.*valid parameters"):
        create_detector("scale", percentil=80)
    with pytest.raises(ValueError, match="no preset 'cifar'"):
        create_detector("msp", preset="cifar")
    assert so.create_detector is create_detector and so.list_detectors is list_detectors


def test_register_detector_adds_and_guards_names(data) -> None:
    class Doubled(Energy):
        """Energy times two (a stand-in for a user method)."""

        name = "doubled_energy"
        description = "twice the energy"

        def _score_from_logits(self, logits, h):
            return 2 * super()._score_from_logits(logits, h)

    try:
        register_detector(Doubled)
        assert "doubled_energy" in list_detectors()
        det = create_detector("doubled_energy").fit(_head(data))
        plain = Energy().fit(_head(data)).score(data["test"])
        torch.testing.assert_close(det.score(data["test"]), 2 * plain)

        class Clash(Energy):
            name = "energy"

        with pytest.raises(ValueError, match="already registered"):
            register_detector(Clash)
        with pytest.raises(TypeError, match="Detector subclass"):
            register_detector(int)
    finally:
        registry_module._REGISTRY.pop("doubled_energy", None)
    assert detector_class("energy") is Energy


# ------------------------------------------------------------------ contract per detector


@pytest.mark.parametrize("name", ALL_NAMES)
def test_fit_score_predict_contract(name: str, data) -> None:
    det = create_detector(name, **_params(name))
    assert det.fit(_head(data), data["train"], data["labels"]) is det
    assert det.is_fitted
    scores = det.score(data["test"])
    assert scores.shape == (N,) and scores.dtype == torch.float32
    assert bool(torch.isfinite(scores).all())
    logits = det.logits(data["test"])
    assert logits.shape == (N, C) and logits.dtype == torch.float32
    pred = det.predict(data["test"])
    assert pred.shape == (N,) and pred.dtype == torch.int64
    torch.testing.assert_close(pred, logits.argmax(dim=1))
    both = det.score_and_predict(data["test"])
    torch.testing.assert_close(both[0], scores)
    torch.testing.assert_close(both[1], pred)
    if not det.changes_logits:
        plain = data["test"] @ data["weight"].T + data["bias"]
        torch.testing.assert_close(pred, plain.argmax(dim=1))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_inputs_numpy_pooled_4d_and_dtypes(name: str, data) -> None:
    det = _fit(name, data)
    test = data["test"]
    before = test.clone()
    reference = det.score(test)
    assert torch.equal(test, before), "score must not modify its input"
    torch.testing.assert_close(det.score(test.numpy()), reference)
    torch.testing.assert_close(det.score(test[:, :, None, None]), reference)
    torch.testing.assert_close(det.score(test.double()), reference)
    half = det.score(test.half())
    assert half.dtype == torch.float32 and half.shape == (N,)
    # Row independence: scoring a subset gives the subset of the scores.
    torch.testing.assert_close(det.score(test[5:9]), reference[5:9])


@pytest.mark.parametrize("name", ALL_NAMES)
def test_params_round_trip_clone_and_repr(name: str, data) -> None:
    det = _fit(name, data)
    params = det.get_params()
    assert params == {**list_detectors()[name].params, **_params(name)}
    copy = det.clone()
    assert type(copy) is type(det) and copy.get_params() == params
    assert not copy.is_fitted
    assert type(det)(**params).get_params() == params
    text = repr(det)
    assert text.startswith(type(det).__name__ + "(")
    for key in params:
        assert f"{key}=" in text
    if params:
        key = next(iter(params))
        assert det.set_params(**{key: params[key]}) is det
        assert not det.is_fitted, "set_params must forget what fit learned"
    with pytest.raises(ValueError, match="no parameter 'bogus'"):
        det.set_params(bogus=1)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_fitted_detector_pickles(name: str, data) -> None:
    det = _fit(name, data)
    restored = pickle.loads(pickle.dumps(det))
    assert torch.equal(restored.score(data["test"]), det.score(data["test"]))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_errors(name: str, data) -> None:
    det = create_detector(name, **_params(name))
    with pytest.raises(RuntimeError, match=r"call fit\(head, features\) first"):
        det.score(data["test"])
    with pytest.raises(ValueError, match="head"):
        det.fit(None)
    det = _fit(name, data)
    with pytest.raises(ValueError, match=r"\(48, 63\).*\(10, 64\)"):
        det.score(data["test"][:, :63])
    bad = data["test"].clone()
    bad[3, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        det.score(bad)
    with pytest.raises(ValueError, match=r"pooled|average-pool"):
        det.score(data["test"].view(N, 16, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        det.score(data["test"][0])


@pytest.mark.parametrize("name", ["react", "dice", "lhact", "ash_s"])
def test_labels_ignored_where_not_needed(name: str, data) -> None:
    """Unlabelled ID rows (-1) are fine for methods that do not use labels."""
    unlabelled = torch.full_like(data["labels"], -1)
    det = create_detector(name).fit(_head(data), data["train"], unlabelled)
    reference = create_detector(name).fit(_head(data), data["train"])
    torch.testing.assert_close(det.score(data["test"]), reference.score(data["test"]))


@pytest.mark.parametrize("name", ["react", "dice", "himplos"])
def test_fit_needs_id_features(name: str, data) -> None:
    with pytest.raises(ValueError, match=r"fit\(head, features"):
        create_detector(name).fit(_head(data))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ash_s", {"percentile": 100}),
        ("ash_b", {"percentile": -1}),
        ("scale", {"percentile": "high"}),
        ("react", {"percentile": 101}),
        ("dice", {"percentile": 100}),
        ("energy", {"temperature": 0}),
        ("odin", {"variant": "other"}),
        ("odin", {"noise": -0.1}),
        ("lhact", {"th": 0.1, "tl": 0.5}),
        ("ash_p", {"score_fn": "entropy"}),
        ("himplos", {"threshold": float("nan")}),
    ],
)
def test_bad_parameters_fail_in_fit(name: str, params: dict, data) -> None:
    det = create_detector(name, **params)  # stored untouched
    assert all(det.get_params()[k] is v or det.get_params()[k] == v for k, v in params.items())
    with pytest.raises(ValueError):
        det.fit(_head(data), data["train"], data["labels"])


def test_fit_accepts_linear_and_adapted_models(data) -> None:
    layer = nn.Linear(D, C)
    with torch.no_grad():
        layer.weight.copy_(data["weight"])
        layer.bias.copy_(data["bias"])
    from_layer = create_detector("energy").fit(layer).score(data["test"])
    from_head = create_detector("energy").fit(_head(data)).score(data["test"])
    torch.testing.assert_close(from_layer, from_head)

    class Adapted:
        head = _head(data)

    torch.testing.assert_close(
        create_detector("energy").fit(Adapted()).score(data["test"]), from_head
    )
    with pytest.raises(ValueError, match="LinearHead"):
        create_detector("msp").fit(data["weight"])


# ------------------------------------------------------------------ method specifics


def test_react_threshold_is_percentile_of_all_id_values(data) -> None:
    det = create_detector("react", percentile=80).fit(_head(data), data["train"])
    expected = np.percentile(data["train"].numpy().ravel(), 80)
    assert det.threshold_ == pytest.approx(float(expected), rel=1e-6)
    fixed = create_detector("react", threshold=0.5).fit(_head(data))
    assert fixed.threshold_ == 0.5
    clipped = torch.clamp(data["test"], max=0.5) @ data["weight"].T + data["bias"]
    torch.testing.assert_close(fixed.logits(data["test"]), clipped)


def test_lhact_fitted_percentiles(data) -> None:
    det = create_detector("lhact", th_percentile=90, tl_percentile=20)
    det.fit(_head(data), data["train"])
    values = data["train"].numpy().ravel()
    assert det.th_ == pytest.approx(float(np.percentile(values, 90)), rel=1e-6)
    assert det.tl_ == pytest.approx(float(np.percentile(values, 20)), rel=1e-6)
    shaped = so.shaping.lhact(data["test"], th=det.th_, tl=det.tl_)
    torch.testing.assert_close(det.logits(data["test"]), _head(data)(shaped))
    with pytest.raises(ValueError, match="th/tl percentiles"):
        create_detector("lhact", th_percentile=90).fit(_head(data))


def test_dice_mean_feature_skips_features_and_checks_shape(data) -> None:
    mean = data["train"].mean(dim=0)
    given = create_detector("dice", mean_feature=mean.numpy()).fit(_head(data))
    fitted = create_detector("dice").fit(_head(data), data["train"])
    torch.testing.assert_close(given.score(data["test"]), fitted.score(data["test"]))
    kept = fitted.mask_.float().mean().item()
    assert kept == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValueError, match=r"mean_feature.*\(64,\)"):
        create_detector("dice", mean_feature=np.ones(5)).fit(_head(data))


def test_himplos_prototypes_and_labels(data) -> None:
    det = create_detector("himplos").fit(_head(data), data["train"], data["labels"])
    for c in (0, 3):
        expected = data["train"][data["labels"] == c].mean(dim=0)
        torch.testing.assert_close(det.prototypes_[c], expected)
    with pytest.raises(ValueError, match="labels"):
        create_detector("himplos").fit(_head(data), data["train"])
    with pytest.raises(ValueError, match=r"class\(es\) \[9\]"):
        keep = data["labels"] != 9
        create_detector("himplos").fit(_head(data), data["train"][keep], data["labels"][keep])
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        create_detector("himplos").fit(_head(data), data["train"], data["labels"] + 1)
    with pytest.raises(ValueError, match="disagree in length"):
        create_detector("himplos").fit(_head(data), data["train"], data["labels"][:-1])
    with pytest.raises(ValueError, match=r"prototypes.*\(10, 64\)"):
        create_detector("himplos", prototypes=np.ones((10, 3))).fit(_head(data))


def test_shaping_detectors_use_shaping_functions(data) -> None:
    head, test = _head(data), data["test"]
    cases = {
        "ash_p": so.shaping.ash_p(test, 80),
        "ash_b": so.shaping.ash_b(test, 80),
        "ash_s": so.shaping.ash_s(test, 80),
        "scale": so.shaping.scale(test, 80),
    }
    for name, shaped in cases.items():
        det = create_detector(name, percentile=80).fit(head)
        torch.testing.assert_close(det.logits(test), head(shaped))
        torch.testing.assert_close(det.score(test), so.scores.energy(head(shaped)))
        msp = create_detector(name, percentile=80, score_fn="msp").fit(head)
        torch.testing.assert_close(msp.score(test), so.scores.msp(head(shaped)))


def test_ash_all_zero_row_gives_finite_scores(data) -> None:
    test = data["test"].clone()
    test[0] = 0
    for name in ("ash_p", "ash_b", "ash_s", "scale"):
        scores = _fit(name, data).score(test)
        assert bool(torch.isfinite(scores).all()), name
        expected = so.scores.energy(data["bias"][None])[0]
        torch.testing.assert_close(scores[0], expected)


# ------------------------------------------------------------------ ODIN


def test_odin_on_features_needs_zero_noise(data) -> None:
    det = ODIN().fit(_head(data))
    with pytest.raises(ValueError, match="score_inputs"):
        det.score(data["test"])
    plain = ODIN(temperature=10, noise=0).fit(_head(data)).score(data["test"])
    logits = _head(data)(data["test"])
    torch.testing.assert_close(plain, torch.softmax(logits / 10, dim=1).amax(dim=1))


def test_odin_zero_noise_in_row_blocks_equals_the_whole_softmax() -> None:
    logits = torch.randn(1_500, 1_000, generator=torch.Generator().manual_seed(0)) * 30
    got = ODIN(temperature=7, noise=0)._score_from_logits(logits, logits)  # 3 row blocks
    assert torch.equal(got, torch.softmax(logits / 7.0, dim=1).amax(dim=1))


class _Recorder(nn.Module):
    """Linear classifier on channels 0-1 only (channel 2 gets an exactly-zero gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * 4 * 4, 5)
        self.pretrained_cfg = {"std": (0.5, 0.25, 0.2)}
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.fc(x[:, :2].flatten(1))


@pytest.mark.parametrize("variant", ["openood", "react"])
def test_odin_perturbation_step(variant: str) -> None:
    torch.manual_seed(0)
    model = _Recorder().eval()
    x = torch.randn(6, 3, 4, 4)
    det = ODIN(temperature=1000, noise=0.01, variant=variant)
    scores, pred = det.score_and_predict_inputs(model, x)
    assert scores.shape == (6,) and pred.shape == (6,)
    perturbed = model.seen[-1]
    step = (x - perturbed) / 0.01
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    sign = step * std if variant == "openood" else step
    # Every step is +-1 (divided by the channel std in the OpenOOD variant) ...
    torch.testing.assert_close(sign.abs(), torch.ones_like(sign))
    # ... and an exactly-zero gradient (channel 2 is ignored) maps to +1.
    torch.testing.assert_close(sign[:, 2], torch.ones_like(sign[:, 2]))
    with torch.no_grad():
        expected = torch.softmax(model.fc(perturbed[:, :2].flatten(1)) / 1000, dim=1).amax(1)
    torch.testing.assert_close(scores, expected)
    assert x.grad is None and all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(det.score_inputs(model, x), scores)
    torch.testing.assert_close(det.predict_inputs(model, x), pred)


def test_odin_input_errors() -> None:
    model = _Recorder()
    with pytest.raises(ValueError, match="std"):
        ODIN(std=(1.0, 2.0)).score_inputs(model, torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="float image batch"):
        ODIN().score_inputs(model, torch.zeros(2, 3, 4, 4, dtype=torch.uint8))


def test_huge_finite_features_are_not_mistaken_for_nan() -> None:
    """A float32 sum that overflows must not be reported as NaN/inf input."""
    head = LinearHead(torch.full((3, 4), 1e-30), torch.zeros(3))
    x = torch.tensor([[3e38, 3e38, 0.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    scores = create_detector("energy").fit(head).score(x)
    assert bool(torch.isfinite(scores).all())
    with pytest.raises(ValueError, match="infinite"):
        create_detector("energy").fit(head).score(torch.tensor([[float("inf"), 0, 0, 0]]))
