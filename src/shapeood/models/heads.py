"""Find the classifier head of a model ``adapt`` has no recipe for.

The head is the ``nn.Linear`` whose output the model returns unchanged: ``logits = W h + b``
with ``h`` the pooled penultimate feature. It is found by running a small probe batch with a
forward hook on every ``nn.Linear`` and keeping the one(s) whose output *is* the model's output
(the same tensor, or equal to it), then checked numerically: ``h @ W.T + b`` must equal
``model(x)`` on that batch. When no probe input can be built (the input shape cannot be read
from ``pretrained_cfg`` or the first layer), the head is chosen by name: the only ``nn.Linear``,
or the single one named ``fc``, ``classifier``, ``head``, ``linear`` or ``last_linear``;
``FeatureModel`` then checks the split on the first real batch before using it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

HEAD_NAMES = ("fc", "classifier", "head", "linear", "last_linear")
PROBE_SIZES = (32, 224, 64, 28, 96, 299)


def _linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _listing(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def probe_inputs(model: nn.Module, batch: int = 2) -> list[torch.Tensor]:
    """Candidate probe batches for ``model``, most likely first (possibly none).

    From ``pretrained_cfg["input_size"]`` when the model carries one, else from its first
    layer: ``Conv2d(C, ...)`` -> ``(batch, C, S, S)`` for a few usual sizes ``S``;
    ``Linear(D, ...)`` -> ``(batch, D)``.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)

    def make(*shape: int) -> torch.Tensor:
        return torch.rand(batch, *shape, generator=gen).to(device=device, dtype=dtype)

    cfg = getattr(model, "pretrained_cfg", None)
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    out: list[torch.Tensor] = []
    if size:
        out.append(make(*(int(s) for s in size)))
    first = next(
        (m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Conv1d))), None
    )
    if isinstance(first, nn.Conv2d):
        out.extend(make(first.in_channels, s, s) for s in PROBE_SIZES)
    elif isinstance(first, nn.Linear):
        out.append(make(first.in_features))
    return out


class _Trace:
    """Every call of every ``nn.Linear`` during one forward pass: (name, input, output)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    def run(self, x: torch.Tensor) -> Any:
        handles = []
        for name, layer in _linears(self.model):

            def hook(_m: nn.Module, args: tuple, out: Any, name: str = name) -> None:
                if args and torch.is_tensor(args[0]) and torch.is_tensor(out):
                    self.calls.append((name, args[0], out))

            handles.append(layer.register_forward_hook(hook))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.model(x)
        finally:
            self.model.train(was_training)
            for h in handles:
                h.remove()


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b))


def _flat(h: torch.Tensor) -> torch.Tensor | None:
    if h.ndim == 2:
        return h
    if h.ndim == 4 and h.shape[2:] == (1, 1):
        return h.flatten(1)
    return None


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """``(name, layer)`` of the final linear layer of ``model`` (see the module docstring).

    Raises ``ValueError`` naming the candidates when no single layer fits.
    """
    cls = type(model).__name__
    linears = _linears(model)
    if not linears:
        raise ValueError(
            f"{cls} has no nn.Linear layer: shapeood needs a linear classifier head "
            "(pass adapt(model, head='NAME') for a 1x1-convolution head)"
        )
    names = [n for n, _ in linears]
    failures: list[str] = []
    for x in probe_inputs(model):
        trace = _Trace(model)
        try:
            out = trace.run(x)
        except Exception as err:  # a wrong probe shape: try the next one
            failures.append(f"{tuple(x.shape)}: {type(err).__name__}")
            continue
        return _pick_traced(model, trace, out, names)
    return _pick_by_name(cls, linears, failures)


def _pick_traced(
    model: nn.Module, trace: _Trace, out: Any, names: list[str]
) -> tuple[str, nn.Linear]:
    cls = type(model).__name__
    if not torch.is_tensor(out) or out.ndim != 2:
        what = type(out).__name__ if not torch.is_tensor(out) else f"shape {tuple(out.shape)}"
        raise ValueError(
            f"{cls}.forward returns {what}, not (N, classes) logits: wrap it so that forward "
            "returns the logits, or pass adapt(model, head='NAME')"
        )
    counts: dict[str, int] = {}
    for name, _, _ in trace.calls:
        counts[name] = counts.get(name, 0) + 1
    hits = [(name, h) for name, h, o in trace.calls if _same(o, out)]
    found = sorted({name for name, _ in hits}, key=names.index)
    if not found:
        ran = [n for n in names if n in counts]
        raise ValueError(
            f"no nn.Linear of {cls} produces the output of forward unchanged (is there an "
            f"activation, scaling or softmax after the last linear layer?); linear layers that "
            f"ran: {_listing(ran) or 'none'}. Return the head's output as the logits, or pass "
            "adapt(model, head='NAME')"
        )
    if len(found) > 1 or counts[found[0]] > 1:
        raise ValueError(
            f"several layers of {cls} could be the classifier head: {_listing(found)} (or one "
            "runs more than once); pass adapt(model, head='NAME') to choose"
        )
    name = found[0]
    layer = model.get_submodule(name)
    h = _flat(hits[0][1])
    if h is None:
        raise ValueError(
            f"the input of {cls}.{name} has shape {tuple(hits[0][1].shape)}, not pooled (N, D) "
            "features: shapeood needs a linear head on a pooled vector"
        )
    _check_split(cls, name, layer, h, out)
    return name, layer


def _check_split(cls: str, name: str, layer: nn.Linear, h: torch.Tensor, out: torch.Tensor):
    """``h @ W.T + b == model(x)`` on the probe batch (what ``LinearHead`` will compute)."""
    with torch.no_grad():
        logits = h.double() @ layer.weight.double().T
        if layer.bias is not None:
            logits = logits + layer.bias.double()
    scale = max(1.0, float(out.abs().max()))
    if not torch.allclose(logits, out.double(), rtol=1e-3, atol=1e-3 * scale):
        raise ValueError(
            f"{cls}.{name}: weight @ input + bias differs from the model's output on a probe "
            "batch; pass adapt(model, head='NAME') with the final linear layer"
        )


def _pick_by_name(
    cls: str, linears: list[tuple[str, nn.Linear]], failures: list[str]
) -> tuple[str, nn.Linear]:
    if len(linears) == 1:
        return linears[0]
    named = [(n, m) for n, m in linears if n.rsplit(".", 1)[-1] in HEAD_NAMES]
    if len(named) == 1:
        return named[0]
    tried = f" (a probe forward failed for inputs {', '.join(failures)})" if failures else ""
    candidates = named or linears
    raise ValueError(
        f"several layers of {cls} could be the classifier head: "
        f"{_listing([n for n, _ in candidates])}{tried}; pass adapt(model, head='NAME'), or set "
        "model.pretrained_cfg = {'input_size': (3, H, W)} so the head can be found by a probe"
    )
