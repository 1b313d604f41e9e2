"""The training loop on tiny synthetic problems: learning, exact resume, parameter groups."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from shapeood.train import TrainConfig, fit_model, ish_layers
from shapeood.train.checkpoint import atomic_save, load_checkpoint
from shapeood.train.optim import make_optimizer
from shapeood.train.schedule import cosine_factor, cosine_schedule


class TinyNet(nn.Module):
    """The head ``fc`` is declared FIRST, so "the last two parameters" would be the conv's."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(16, num_classes)
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(F.relu(self.bn(self.conv(x))).mean((2, 3))))


def toy_data(n: int = 192, seed: int = 0) -> TensorDataset:
    """Four classes told apart by which colour channel is brighter or darker."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.5
    x[torch.arange(n), y % 3] += ((y // 3) * 2 - 1).float()[:, None, None] + 0.5
    return TensorDataset(x, y)


class RandomFlip(Dataset):
    """Augmentation that draws from the global torch RNG (as torchvision transforms do)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return (x.flip(-1) if torch.rand(()) < 0.5 else x), y


def model_with_seed(seed: int) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


FAST = {"batch_size": 32, "lr": 0.05, "progress": False, "seed": 3}


@pytest.mark.parametrize("ish", [False, True])
def test_tiny_training_lowers_the_loss(ish: bool) -> None:
    data = toy_data(256)
    settings = {**FAST, "lr": 0.1}
    result = fit_model(model_with_seed(0), data, head_name="fc", epochs=3, ish=ish, **settings)
    losses = [r["loss"] for r in result.history]
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert losses[-1] < 0.5 * losses[0], losses
    assert result.history[-1]["accuracy"] > 0.9
    assert result.history[-1]["images"] == len(data)
    assert type(result.model.fc) is nn.Linear  # ISH is a training-time change only
    assert math.isclose(result.history[-1]["lr"], 1e-6, rel_tol=1e-6)  # cosine reached min_lr


def test_resume_after_a_kill_gives_the_same_weights(tmp_path: Path) -> None:
    data = RandomFlip(toy_data(96))
    cfg = TrainConfig(epochs=2, ish=True, weight_decay=1e-3, **FAST)
    straight = fit_model(model_with_seed(0), data, cfg, head_name="fc", out_dir=tmp_path / "a")

    class Killed(Exception):
        pass

    def kill_after_first_epoch(trainer, record) -> None:
        raise Killed

    killed_model = model_with_seed(0)
    with pytest.raises(Killed):
        fit_model(
            killed_model,
            data,
            cfg,
            head_name="fc",
            out_dir=tmp_path / "b",
            callbacks=[kill_after_first_epoch],
        )
    assert ish_layers(killed_model) == []  # ISH layers are undone even when training stops
    saved = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert saved["epoch"] == 1 and {"optimizer", "scheduler", "scaler", "rng"} <= set(saved)
    torch.manual_seed(12345)  # the resumed process starts from another RNG state and weights
    resumed = fit_model(model_with_seed(7), data, cfg, head_name="fc", out_dir=tmp_path / "b")

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    final = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(final[k], a[k]) for k in a)
    assert len((tmp_path / "b" / "log.jsonl").read_text().splitlines()) == 2
    assert not list((tmp_path / "b").glob("*.tmp"))


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=1, **FAST)
    fit_model(model_with_seed(0), toy_data(64), cfg, head_name="fc", out_dir=tmp_path)
    with pytest.raises(ValueError, match="lr"):
        fit_model(
            model_with_seed(0), toy_data(64), cfg.replace(lr=0.1), head_name="fc", out_dir=tmp_path
        )
    with pytest.raises(ValueError, match="exists"):
        fit_model(
            model_with_seed(0), toy_data(64), cfg, head_name="fc", out_dir=tmp_path, resume=False
        )


def test_parameter_groups_are_chosen_by_name() -> None:
    model = TinyNet()
    opt = make_optimizer(model, "fc", lr=0.1, weight_decay=5e-4, head_weight_decay=5e-5)
    backbone, head = opt.param_groups
    assert (backbone["name"], head["name"]) == ("backbone", "head")
    assert [id(p) for p in head["params"]] == [id(model.fc.weight), id(model.fc.bias)]
    assert head["weight_decay"] == 5e-5 and backbone["weight_decay"] == 5e-4
    assert len(backbone["params"]) == 4  # conv weight/bias, bn weight/bias
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    # What the position rule ("last two parameters") would have picked is the BatchNorm.
    assert list(model.parameters())[-2:] == [model.bn.weight, model.bn.bias]
    with pytest.raises(ValueError, match="head"):
        make_optimizer(model, "classifier", lr=0.1)


def test_trainer_finds_the_head_through_the_adapter() -> None:
    from shapeood.models import adapt, create

    model = create("resnet20_cifar")
    head = adapt(model).layer_name
    cfg = TrainConfig(epochs=1, batch_size=4, max_steps_per_epoch=1, ish=True, progress=False)
    data = TensorDataset(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))
    seen: list[str] = []

    def record_groups(trainer, record) -> None:
        seen.append(trainer.head_name)

    result = fit_model(model, data, cfg, callbacks=[record_groups])
    assert seen == [head]
    assert result.history[0]["steps"] == 1 and result.history[0]["images"] == 4


def test_cosine_schedule_per_iteration() -> None:
    assert cosine_factor(0, 10, 1.0, 0.1) == 1.0
    assert cosine_factor(10, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine_factor(5, 10, 1.0, 0.1) == pytest.approx(0.55)
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.01)
    sched = cosine_schedule(opt, total_steps=4, lr=0.01, min_lr=1e-6)
    lrs = []
    for _ in range(4):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == sorted(lrs, reverse=True)
    assert lrs[-1] == pytest.approx(1e-6)
    assert lrs[1] == pytest.approx(1e-6 + (0.01 - 1e-6) * 0.5)


def test_atomic_save_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    atomic_save({"epoch": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises
        atomic_save({"bad": lambda: None}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        TrainConfig(ish_percentile=100)
    with pytest.raises(ValueError, match=r"ish_percentile=85|ISH percentile=85"):
        TrainConfig(ish_percentile=0.85)
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig().replace(learning_rate=0.1)
