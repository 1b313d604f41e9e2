"""``load_model(spec, ...)``: every way to name a model, on the command line (``--model``) and in
Python. Each form, with its CLI spelling:

=====================================  ====================================================
``resnet20_cifar10``                   a pretrained model of the offline kit (``list models``)
``torchvision:resnet18``               torchvision; ``--weights DEFAULT|ENUM|FILE``,
                                       ``--num-classes N`` (a checkpoint's classes by default)
``timm:resnet18``                      timm; ``--weights DEFAULT|FILE``, ``--num-classes N``
``resnet44_cifar``                     an architecture of ``create`` with ``--weights FILE``
``ckpt.pth`` (.pt .safetensors .npz)   a checkpoint file; a state dict directly or under
                                       ``state_dict``/``model``/``net``/``model_state_dict``,
                                       ``module.``/``_orig_mod.`` prefixes stripped;
                                       ``--arch NAME`` says what it is (kit layouts are
                                       recognised from their keys and shapes, and said so)
``python:pkg.module:function``         a factory returning an ``nn.Module`` (also
``path/to/net.py:function``            ``FILE.py:FUNCTION``); called with ``num_classes=N``
                                       when given; ``--weights FILE`` loaded into it
``model.pt --trust-pickle``            a whole pickled model (runs code from the file)
=====================================  ====================================================

A network without weights is refused unless ``random_weights=True`` (``--random-weights``), so
that nobody evaluates an untrained network by accident. A factory function is trusted to load
its own weights (it is the user's code).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shapeood import progress
from shapeood.models.checkpoints import (
    CHECKPOINT_SUFFIXES,
    load_weights,
    read_checkpoint_object,
    strip_prefixes,
)
from shapeood.models.config import complete_cfg
from shapeood.models.factory import (
    ARCHITECTURE_NAMES,
    KIT_MODELS,
    _match_architecture,
    create,
    infer_architecture,
    torchvision_cfg,
)
from shapeood.paths import kit_file

MODEL_FORMS = (
    ("KIT_NAME", "a pretrained model of the offline kit", "resnet20_cifar10"),
    ("torchvision:NAME", "torchvision architecture; --weights DEFAULT|ENUM|FILE, --num-classes N",
     "torchvision:resnet18 --num-classes 10 --weights ckpt.pth"),
    ("timm:NAME", "timm architecture; --weights DEFAULT|FILE, --num-classes N",
     "timm:resnet18 --weights DEFAULT"),
    ("ARCH", "an architecture of the package with --weights FILE",
     "resnet44_cifar --weights resnet44.th"),
    ("FILE.pth|.pt|.safetensors|.npz", "a checkpoint (state dict); --arch NAME says what it is",
     "ckpt.pth --arch torchvision:resnet18"),
    ("python:MODULE:FUNCTION", "a function returning an nn.Module (or FILE.py:FUNCTION)",
     "python:mypkg.nets:build_net --weights net.pth"),
    ("FILE.pt --trust-pickle", "a whole pickled model (runs code from the file)",
     "model.pt --trust-pickle"),
)  # fmt: skip

WEIGHTS_HINT = (
    "give --weights FILE (a checkpoint) or, for torchvision/timm, --weights DEFAULT; "
    "pass --random-weights (random_weights=True) to use an untrained network on purpose"
)


def _how_to_name() -> str:
    return (
        "name it with --arch (arch= in Python): an architecture of this package "
        f"({', '.join(ARCHITECTURE_NAMES)}), torchvision:NAME, timm:NAME or "
        "python:MODULE:FUNCTION ('shapeood list models')"
    )


# ----------------------------------------------------------------------------- helpers


def _last_linear_key(model: nn.Module) -> str | None:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return f"{names[-1]}.weight" if names else None


def _classes_in(state: Mapping[str, torch.Tensor], key: str | None) -> int | None:
    if key is not None and key in state and state[key].ndim == 2:
        return int(state[key].shape[0])
    return None


def _is_path_like(text: str) -> bool:
    return "/" in text or "\\" in text or text.lower().endswith(CHECKPOINT_SUFFIXES)


def _read_state(weights: Any, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """A state dict from a mapping or a checkpoint file (a pickled model is refused here)."""
    if isinstance(weights, Mapping):
        return strip_prefixes(weights)
    obj, _ = read_checkpoint_object(weights, trust_pickle=trust_pickle)
    if isinstance(obj, nn.Module):
        return strip_prefixes(obj.state_dict())
    return obj


def _trusted(weights: Any, trust_pickle: bool) -> Any:
    """``weights`` as given, or a pickled checkpoint read into a state dict when trusted."""
    if trust_pickle and isinstance(weights, (str, Path)) and Path(weights).suffix != ".npz":
        return _read_state(weights, True)
    return weights


def _random(model: nn.Module) -> nn.Module:
    """Mark a network built without weights (``--random-weights``): extraction warns about it."""
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict):
        cfg["random_weights"] = True
    else:
        model.pretrained_cfg = {"random_weights": True}
    return model


def _finish(model: nn.Module, architecture: str, cfg: Mapping[str, Any] | None = None):
    model.eval()
    classes = None
    key = _last_linear_key(model)
    if key is not None:
        classes = model.get_submodule(key.rsplit(".", 1)[0]).out_features
    base = cfg if cfg is not None else getattr(model, "pretrained_cfg", None)
    full = complete_cfg(base if isinstance(base, Mapping) else None, classes)
    full["architecture"] = architecture
    model.pretrained_cfg = full
    return model


# ----------------------------------------------------------------------------- hubs


def _torchvision(
    name: str, weights: Any, num_classes: int | None, random_weights: bool, trust_pickle: bool
) -> nn.Module:
    import torchvision

    try:
        torchvision.models.get_model_builder(name)
    except ValueError:
        raise ValueError(
            f"torchvision has no model {name!r}; see torchvision.models.list_models()"
        ) from None
    spec = f"torchvision:{name}"
    if weights is None:
        if not random_weights:
            raise ValueError(f"{spec} has no weights: {WEIGHTS_HINT}")
        kwargs = {} if num_classes is None else {"num_classes": int(num_classes)}
        return _random(_finish(torchvision.models.get_model(name, **kwargs), spec))
    if isinstance(weights, Mapping) or (
        isinstance(weights, (str, Path)) and _is_path_like(str(weights))
    ):
        state = _read_state(weights, trust_pickle)
        if num_classes is None:
            probe = torchvision.models.get_model(name)
            num_classes = _classes_in(state, _last_linear_key(probe))
        kwargs = {} if num_classes is None else {"num_classes": int(num_classes)}
        model = torchvision.models.get_model(name, **kwargs)
        load_weights(model, state, source=f"weights from {_describe(weights)}")
        return _finish(model, spec)
    try:
        enum = torchvision.models.get_model_weights(name).verify(str(weights))
    except (ValueError, KeyError):
        choices = ", ".join(w.name for w in torchvision.models.get_model_weights(name))
        raise ValueError(
            f"--weights {weights!r} for {spec}: not a file and not one of torchvision's "
            f"weights (DEFAULT, {choices})"
        ) from None
    categories = len(enum.meta.get("categories") or []) or None
    if num_classes is not None and categories is not None and int(num_classes) != categories:
        raise ValueError(
            f"{spec} --weights {enum.name} has {categories} classes, not --num-classes "
            f"{num_classes}: give your own checkpoint with --weights FILE"
        )
    model = torchvision.models.get_model(name, weights=enum)
    return _finish(model, spec, torchvision_cfg(name, enum))


def _timm(
    name: str, weights: Any, num_classes: int | None, random_weights: bool, trust_pickle: bool
) -> nn.Module:
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is an optional extra
        raise ValueError("timm models need the timm package: pip install 'shapeood[timm]'") from err
    spec = f"timm:{name}"
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": int(num_classes)}
    if weights is None:
        if not random_weights:
            raise ValueError(f"{spec} has no weights: {WEIGHTS_HINT}")
        model = _random(timm.create_model(name, **kwargs))
    elif isinstance(weights, Mapping) or _is_path_like(str(weights)):
        state = _read_state(weights, trust_pickle)
        if num_classes is None:
            cls_key = _last_linear_key(timm.create_model(name))
            found = _classes_in(state, cls_key)
            if found is not None:
                kwargs["num_classes"] = found
        model = timm.create_model(name, **kwargs)
        load_weights(model, state, source=f"weights from {_describe(weights)}")
    elif str(weights).upper() in ("DEFAULT", "PRETRAINED", "TRUE"):
        model = timm.create_model(name, pretrained=True, **kwargs)
    else:
        raise ValueError(
            f"--weights {weights!r} for {spec}: give a checkpoint file or DEFAULT (timm's "
            "pretrained weights; pick a tag with the name, e.g. timm:resnet18.a1_in1k)"
        )
    return _finish(model, spec, getattr(model, "pretrained_cfg", None))


def _describe(weights: Any) -> str:
    return "a state dict" if isinstance(weights, Mapping) else str(weights)


# ----------------------------------------------------------------------------- python


def _import_function(text: str) -> Any:
    """``pkg.module:function`` or ``path/to/file.py:function`` -> the function."""
    target, sep, func = text.rpartition(":")
    if not sep or not target or not func:
        raise ValueError(
            f"--model python:{text}: write python:package.module:function or "
            "python:path/to/file.py:function"
        )
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--model {text}: no Python file at {path}")
        name = f"_shapeood_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ValueError(
                f"--model python:{text}: cannot import {target!r} ({err}); is its folder on "
                "PYTHONPATH (or installed)?"
            ) from err
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ValueError(f"--model python:{text}: {target} has no function {func!r}")
    return fn


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _from_function(
    text: str, weights: Any, num_classes: int | None, trust_pickle: bool
) -> nn.Module:
    fn = _import_function(text)
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        if not _accepts(fn, "num_classes"):
            raise ValueError(f"--num-classes given but {text} takes no num_classes argument")
        kwargs["num_classes"] = int(num_classes)
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{text} returned {type(model).__name__}, not a torch nn.Module")
    if weights is not None:
        state = _read_state(weights, trust_pickle)
        load_weights(model, state, source=f"weights from {_describe(weights)}")
    else:
        progress.stage(f"model from {text} with the weights it was built with (no --weights)")
    return _finish(model, f"python:{text}")


# ----------------------------------------------------------------------------- files


def _recognise(state: Mapping[str, torch.Tensor]) -> str | None:
    """The package architecture whose state dict has exactly these keys and shapes."""
    try:
        name = infer_architecture(state)
    except ValueError:
        return None
    try:
        expected = create(name, num_classes=_classes_in(state, _head_key(name))).state_dict()
    except (ValueError, RuntimeError):
        return None
    keys = {k for k in expected if not k.endswith("num_batches_tracked")}
    given = {k for k in state if not k.endswith("num_batches_tracked")}
    if keys != given or any(tuple(expected[k].shape) != tuple(state[k].shape) for k in keys):
        return None
    return name


def _head_key(name: str) -> str | None:
    found = _match_architecture(name)
    return found[3] if found else None


def _hint(state: Mapping[str, torch.Tensor]) -> str:
    keys = set(state)
    if "conv1.weight" in keys and "fc.weight" in keys and any(".downsample." in k for k in keys):
        return " (its keys look like a torchvision ResNet: try --arch torchvision:resnet18 or 50)"
    if any(k.startswith("features.") for k in keys) and any(
        k.startswith("classifier.") for k in keys
    ):
        return " (its keys look like torchvision's features/classifier models, e.g. densenet121)"
    return ""


def _from_file(
    path: Path, arch: str | None, num_classes: int | None, trust_pickle: bool,
    random_weights: bool,
) -> nn.Module:  # fmt: skip
    if path.suffix == ".py":
        raise ValueError(
            f"--model {path} is a Python file: name the function too, {path}:FUNCTION "
            "(or python:package.module:function)"
        )
    obj, meta = read_checkpoint_object(path, trust_pickle=trust_pickle)
    if isinstance(obj, nn.Module):
        if arch is not None:
            raise ValueError(f"{path} holds a whole model: --arch does not apply, leave it out")
        progress.stage(f"model: whole pickled {type(obj).__name__} from {path} (--trust-pickle)")
        return _finish(obj, f"pickle:{path.name}")
    if arch is not None:
        return load_model(
            arch, weights=obj, num_classes=num_classes, trust_pickle=trust_pickle,
            random_weights=random_weights,
        )  # fmt: skip
    if "graph" in meta:
        return create("mobilenet_v2_tf", weights=path, num_classes=num_classes)
    name = _recognise(obj)
    if name is None:
        raise ValueError(
            f"{path} holds a state dict of {len(obj)} tensors of an architecture shapeood does "
            f"not recognise{_hint(obj)}: {_how_to_name()}"
        )
    progress.stage(f"architecture {name}: recognised from the keys and shapes of {path.name}")
    return create(name, weights=obj, num_classes=num_classes)


# ----------------------------------------------------------------------------- entry point


def load_model(
    spec: str | Path | nn.Module,
    weights: Any = None,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    trust_pickle: bool = False,
    random_weights: bool = False,
) -> nn.Module:
    """Resolve a model spec (``--model``) to an ``nn.Module`` in eval mode with ``pretrained_cfg``.

    Args:
        spec: a kit name, ``torchvision:NAME``, ``timm:NAME``, an architecture name of
            ``create``, a checkpoint path, ``python:MODULE:FUNCTION`` / ``FILE.py:FUNCTION``
            (see the module docstring), or an ``nn.Module`` (returned as it is).
        weights: a checkpoint file, a state dict, or a hub's weights name (``DEFAULT``,
            a torchvision enum such as ``IMAGENET1K_V2``).
        arch: what a checkpoint file holds, in any of the forms of ``spec``.
        num_classes: classes of the head (default: the checkpoint's, else the architecture's).
        trust_pickle: allow a whole pickled model (unpickling runs code from the file).
        random_weights: allow a network without weights (untrained).
    """
    if isinstance(spec, nn.Module):
        return spec
    text = str(spec)
    if text.startswith("python:"):
        if arch is not None:
            raise ValueError("--arch names what a checkpoint file holds; leave it out here")
        return _from_function(text[len("python:") :], weights, num_classes, trust_pickle)
    if text.startswith("torchvision:"):
        return _torchvision(text[12:], weights, num_classes, random_weights, trust_pickle)
    if text.startswith("timm:"):
        return _timm(text[5:], weights, num_classes, random_weights, trust_pickle)
    if text in KIT_MODELS:
        kit = KIT_MODELS[text]
        if num_classes is not None and int(num_classes) != kit.num_classes:
            raise ValueError(
                f"{text} has {kit.num_classes} classes; for another head use --arch "
                f"{kit.architecture} with your own checkpoint"
            )
        source = kit_file(kit.weights_file) if weights is None else _trusted(weights, trust_pickle)
        model = create(kit.architecture, weights=source, num_classes=kit.num_classes)
        model.pretrained_cfg.update(name=text, description=kit.description)
        return model
    if _match_architecture(text) is not None:
        if weights is None and not random_weights:
            raise ValueError(f"architecture {text} has no weights: {WEIGHTS_HINT}")
        model = create(text, weights=_trusted(weights, trust_pickle), num_classes=num_classes)
        return _random(model) if weights is None else model
    file_spec, sep, func = text.rpartition(":")
    if sep and file_spec.endswith(".py") and func:
        return _from_function(text, weights, num_classes, trust_pickle)
    path = Path(text).expanduser()
    if path.is_file():
        if weights is not None:
            raise ValueError(
                f"--model {text} is a checkpoint file and holds the weights: leave out --weights"
            )
        return _from_file(path, arch, num_classes, trust_pickle, random_weights)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or "/" in text:
        raise FileNotFoundError(f"--model {text}: no such file")
    raise ValueError(
        f"cannot resolve model {text!r}: use a kit name ({', '.join(KIT_MODELS)}), "
        f"torchvision:NAME, timm:NAME, an architecture ({', '.join(ARCHITECTURE_NAMES)}), "
        "a checkpoint file, or python:MODULE:FUNCTION ('shapeood list models')"
    )


__all__ = ["MODEL_FORMS", "load_model"]
