"""SGD with two parameter groups selected by name: the classifier head and the rest."""

from __future__ import annotations

from torch import nn
from torch.optim import SGD


def split_head_parameters(
    model: nn.Module, head_name: str
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(backbone, head)`` trainable parameters; head = names under ``head_name``."""
    prefix = f"{head_name}."
    backbone, head = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (head if name.startswith(prefix) else backbone).append(param)
    if not head:
        names = [n for n, _ in model.named_parameters()][-4:]
        raise ValueError(
            f"no trainable parameter of the model lies under the head {head_name!r} "
            f"(last parameter names: {names}); pass the head's module name"
        )
    return backbone, head


def make_optimizer(
    model: nn.Module,
    head_name: str,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 5e-4,
    head_weight_decay: float = 5e-5,
) -> SGD:
    """SGD (Nesterov momentum) with ``weight_decay`` on the backbone, ``head_weight_decay`` on
    the head. Each group carries a ``name`` ("backbone", "head"); an empty group is left out."""
    backbone, head = split_head_parameters(model, head_name)
    groups = [
        {"params": backbone, "weight_decay": weight_decay, "name": "backbone"},
        {"params": head, "weight_decay": head_weight_decay, "name": "head"},
    ]
    groups = [g for g in groups if g["params"]]  # a frozen backbone leaves the head alone
    return SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
