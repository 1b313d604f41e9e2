"""APS search: picks the best validation AUROC (checked by brute force), ties go first."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from shapeood import LinearHead, create_detector, metrics
from shapeood.search import aps_search, aps_search_inputs, grid_points, resolve_grid


def _problem(seed: int = 0, d: int = 48, c: int = 6):
    gen = torch.Generator().manual_seed(seed)
    head = LinearHead(torch.randn(c, d, generator=gen) / d**0.5, torch.randn(c, generator=gen))
    id_val = torch.rand(150, d, generator=gen) * torch.rand(1, d, generator=gen) * 3
    ood_val = torch.rand(120, d, generator=gen) * 1.5
    labels = torch.randint(0, c, (150,), generator=gen)
    return head, id_val, ood_val, labels


def _brute_force(name, head, id_val, ood_val, grid, fit=None, labels=None):
    best, best_auroc = None, -1.0
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        det = create_detector(name, **params).fit(head, id_val if fit is None else fit, labels)
        auroc = metrics.auroc(det.score(id_val), det.score(ood_val))
        if auroc > best_auroc:
            best, best_auroc = params, auroc
    return best, best_auroc


@pytest.mark.parametrize("name", ["ash_s", "ash_b", "scale", "react"])
def test_aps_picks_best_validation_auroc(name):
    head, id_val, ood_val, _ = _problem()
    result = aps_search(name, head, id_val, ood_val)
    grid = create_detector(name).default_sweep
    expected, expected_auroc = _brute_force(name, head, id_val, ood_val, grid)
    assert {k: result.best_params[k] for k in grid} == expected
    assert result.best_auroc == pytest.approx(expected_auroc, abs=1e-12)
    assert len(result.table) == len(grid_points(grid))
    assert result.table["best"].sum() == 1
    assert result.table.loc[result.table["best"], "auroc"].item() == result.table["auroc"].max()
    # every grid point is recorded with its own AUROC, in product order
    first = result.table.iloc[0]
    det = create_detector(name, **{k: first[k] for k in grid}).fit(head, id_val)
    assert first["auroc"] == pytest.approx(metrics.auroc(det.score(id_val), det.score(ood_val)))


def test_user_grid_and_labels_for_himplos():
    head, id_val, ood_val, labels = _problem(seed=3)
    grid = {"percentile": [20, 50, 80], "threshold": [0.5, 2.0]}
    fit = id_val[:100]
    result = aps_search(
        "himplos", head, id_val, ood_val, grid=grid, fit_features=fit, fit_labels=labels[:100]
    )
    expected, _ = _brute_force("himplos", head, id_val, ood_val, grid, fit, labels[:100])
    assert {k: result.best_params[k] for k in grid} == expected
    assert list(result.table.columns[:2]) == ["percentile", "threshold"]


def test_ties_go_to_the_first_grid_point():
    head, id_val, ood_val, _ = _problem(seed=1)
    # thresholds far above every activation: no clipping, identical scores at every point
    result = aps_search("react", head, id_val, ood_val, grid={"threshold": [1e6, 2e6, 3e6]})
    assert result.best_params["threshold"] == 1e6
    assert result.table["auroc"].nunique() == 1
    assert result.table["best"].tolist() == [True, False, False]


def test_base_params_are_kept_and_grid_overrides():
    head, id_val, ood_val, _ = _problem(seed=2)
    result = aps_search(
        "ash_s", head, id_val, ood_val, grid={"percentile": [60, 80]}, params={"score_fn": "msp"}
    )
    assert result.best_params["score_fn"] == "msp"
    assert result.best_params["percentile"] in (60, 80)


def test_grid_validation():
    with pytest.raises(ValueError, match="not parameters"):
        resolve_grid("ash_s", {"threshold": [1]})
    with pytest.raises(ValueError, match="empty"):
        grid_points({"percentile": []})
    assert grid_points({}) == [{}]
    assert grid_points({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    head, id_val, ood_val, _ = _problem()
    with pytest.raises(ValueError, match="aps_search_inputs"):
        aps_search("odin", head, id_val, ood_val)


def test_odin_search_through_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()  # fmt: skip
    id_x = torch.randn(24, 3, 8, 8)
    ood_x = torch.randn(20, 3, 8, 8) * 2 + 0.5
    id_ds = TensorDataset(id_x, torch.zeros(24, dtype=torch.int64))
    ood_ds = TensorDataset(ood_x, torch.full((20,), -1))
    grid = {"temperature": [1, 1000], "noise": [0.0, 0.01]}
    result = aps_search_inputs(model, id_ds, ood_ds, grid=grid, params={"std": [0.5] * 3})
    aurocs = []
    for t, n in itertools.product(grid["temperature"], grid["noise"]):
        det = create_detector("odin", temperature=t, noise=n, std=[0.5] * 3)
        aurocs.append(metrics.auroc(det.score_inputs(model, id_x), det.score_inputs(model, ood_x)))
    np.testing.assert_allclose(result.table["auroc"].to_numpy(), aurocs, atol=1e-12)
    best = int(np.argmax(aurocs))  # argmax returns the first maximum, as the search does
    assert result.table["best"].tolist() == [i == best for i in range(4)]


@pytest.mark.parametrize(
    "criterion",
    ["fpr95", lambda i, o: float(metrics.aupr_out(i, o))],
    ids=["fpr95", "callable"],
)
def test_criterion_picks_the_best_point_by_its_own_value(criterion):
    head, id_val, ood_val, _ = _problem(seed=1)
    result = aps_search("scale", head, id_val, ood_val, criterion=criterion)
    values = []
    for p in result.table["percentile"]:
        det = create_detector("scale", percentile=int(p)).fit(head, id_val)
        s_id, s_ood = det.score(id_val), det.score(ood_val)
        if criterion == "fpr95":
            values.append(-metrics.fpr_at_95(s_id, s_ood, convention="openood"))
        else:
            values.append(criterion(s_id, s_ood))
    np.testing.assert_allclose(result.table["criterion"].to_numpy(), values, atol=1e-12)
    best = int(np.argmax(values))  # first maximum, as the search keeps ties on the first point
    assert result.table["best"].tolist() == [i == best for i in range(len(values))]
    assert result.best_value == pytest.approx(values[best])
    assert result.best_params["percentile"] == result.table["percentile"].iloc[best]


def test_unknown_criterion_is_a_clear_error():
    head, id_val, ood_val, _ = _problem()
    with pytest.raises(ValueError, match=r"unknown APS criterion 'f1'.*callable"):
        aps_search("scale", head, id_val, ood_val, criterion="f1")
