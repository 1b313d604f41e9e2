"""``OODClassifier``: a classifier answering (class, score, is-OOD), fitted once, saved as one file.

    clf = OODClassifier("resnet20_cifar10", method="scale").fit(id_images, target_tpr=0.95)
    out = clf.predict(images)        # out.labels, out.scores, out.is_ood, out.probabilities
    clf.save("detector.sood");  clf = OODClassifier.load("detector.sood")
    clf.export_onnx("detector.onnx")  # image -> (logits, score, is_ood)

``labels`` and ``probabilities`` are the plain classifier's (softmax of ``W h + b``): the
detector does not change the class decision, it only flags inputs whose score (higher = more
in-distribution) falls below the threshold: ``is_ood = score < threshold``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from shapeood.deploy import artifact
from shapeood.deploy.graph import DeployGraph, feature_network, score_module
from shapeood.deploy.threshold import accepted_rate, check_target_tpr, fit_threshold
from shapeood.head import LinearHead


def fit_split(detector: Any) -> str | None:
    """What ``detector.fit`` needs: ``"train"`` (ID training features), ``"val"`` or ``None``.

    Read from the detector class's declared ``fit_split`` trait where it has one.
    """
    cls = type(detector)
    if not cls.needs_fit(detector.get_params()):
        return None
    return cls.fit_split or "val"


@dataclass
class OODPrediction:
    """What ``OODClassifier.predict`` returns (CPU tensors, one row per input image).

    ``labels`` (N,) int64: argmax of the plain classifier; ``scores`` (N,) float32: the
    detector's score, higher = more in-distribution; ``is_ood`` (N,) bool:
    ``scores < threshold``; ``probabilities`` (N, C): softmax of the plain logits.
    """

    labels: torch.Tensor
    scores: torch.Tensor
    is_ood: torch.Tensor
    probabilities: torch.Tensor
    threshold: float
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def label_names(self) -> list[str | None]:
        """Class name of each predicted label (None where no class names are known)."""
        names = self.class_names
        return [names[i] if names else None for i in self.labels.tolist()]

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per image: ``label``, ``class_name``, ``score``, ``is_ood``."""
        return [
            {"label": int(label), "class_name": name, "score": float(score), "is_ood": bool(ood)}
            for label, name, score, ood in zip(
                self.labels.tolist(),
                self.label_names,
                self.scores.tolist(),
                self.is_ood.tolist(),
                strict=True,
            )
        ]


class _ImageBatch(Dataset):
    """A list of images (PIL, uint8 arrays/tensors, or transformed float tensors) as a dataset."""

    def __init__(self, images: Sequence[Any], transform: Any) -> None:
        self.images = images
        self.transform = transform
        self.name = "images"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return _prepare_image(self.images[i], self.transform), -1


def _prepare_image(image: Any, transform: Any) -> torch.Tensor:
    """One image as a transformed float (3, H, W) tensor."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            image = torch.from_numpy(np.ascontiguousarray(image))
        else:
            pixels = image[:, :, None] if image.ndim == 2 else image
            if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3):
                raise ValueError(
                    f"a uint8 image array must be (H, W, 3) or (H, W), got {image.shape}"
                )
            image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
            if image.shape[0] == 1:
                image = image.expand(3, -1, -1).contiguous()
    if isinstance(image, torch.Tensor):
        if image.is_floating_point():
            if image.ndim != 3:
                raise ValueError(f"a transformed image must be (C, H, W), got {tuple(image.shape)}")
            return image
        if image.dtype != torch.uint8 or image.ndim != 3:
            raise ValueError(
                f"an image tensor must be uint8 (3, H, W) or transformed float (C, H, W), got "
                f"{image.dtype} {tuple(image.shape)}"
            )
        return transform(image)
    if type(image).__module__.startswith("PIL"):
        return transform(image.convert("RGB"))
    raise ValueError(
        "images must be a float tensor batch (N, C, H, W) already transformed, uint8 arrays "
        f"(N, H, W, 3) or PIL images; got {type(image).__name__}"
    )


def _is_feature_set(data: Any) -> bool:
    return all(hasattr(data, a) for a in ("features", "logits", "labels")) and isinstance(
        getattr(data, "features", None), (torch.Tensor, np.ndarray)
    )


def _resolve_device(device: Any, module: nn.Module) -> torch.device:
    if device is None:
        first = next(module.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _amp_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    if amp is False or amp is None:
        return None
    if amp is True:
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
             "float16": torch.float16}  # fmt: skip
    if isinstance(amp, torch.dtype) and amp in (torch.bfloat16, torch.float16):
        return amp
    if isinstance(amp, str) and amp.lower() in names:
        return names[amp.lower()]
    raise ValueError(f"amp must be False, True, 'bf16' or 'fp16', got {amp!r}")


def _move_fitted(detector: Any, device: torch.device) -> None:
    """Move a detector's fitted tensors and heads to ``device``."""
    for key, value in list(vars(detector).items()):
        if not key.endswith("_") or key.startswith("_"):
            continue
        if isinstance(value, (torch.Tensor, LinearHead)):
            setattr(detector, key, value.to(device))


class OODClassifier:
    """A classifier plus an OOD detector and a decision threshold.

    Args:
        model: an ``nn.Module`` classifier that ``shapeood.models.adapt`` splits (or an adapted
            ``FeatureModel``), or a model spec string of ``shapeood.models.load_model`` (kit
            name such as ``"resnet20_cifar10"``, ``"torchvision:NAME"``, ``"timm:NAME"``, an
            architecture name with ``weights``, a checkpoint path).
        method: detector name (``shapeood.list_detectors()``), default ``"scale"``.
        preset: a named parameter set of the method (``create_detector(preset=...)``).
        weights: weights for a spec string (as ``load_model(spec, weights)``).
        model_spec, load_options: for a module already built by ``load_model(model_spec,
            weights, **load_options)`` (e.g. ``{"arch": ..., "num_classes": ...}``): recorded so
            that a file saved without weights can rebuild it.
        head: the final linear layer's name for models ``adapt`` does not know.
        class_names: names of the classes (else taken from ``id_data`` when it has them).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or None (where the model's parameters are).
        amp: autocast for the backbone (``True``: bfloat16 on CPU, float16 on CUDA; or
            ``"bf16"``/``"fp16"``); the head and the detector always run in float32.
        **params: the method's hyperparameters, e.g. ``percentile=85``.

    Fitted attributes: ``threshold_``, ``target_tpr_``, ``id_accepted_rate_`` (share of the
    ``id_data`` scores ``>= threshold_``), ``n_id_``, ``fit_split_``.
    """

    def __init__(
        self,
        model: Any,
        method: str = "scale",
        *,
        preset: str | None = None,
        weights: Any = None,
        head: str | nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        amp: bool | str = False,
        model_spec: str | None = None,
        load_options: dict[str, Any] | None = None,
        **params: Any,
    ) -> None:
        from shapeood.detectors import create_detector
        from shapeood.models import adapt, load_model

        self.model_spec: str | None = None if model_spec is None else str(model_spec)
        self.weights_spec: str | None = None if weights is None else str(weights)
        self.load_options = dict(load_options or {})
        if isinstance(model, (str, os.PathLike)):
            self.model_spec = str(model)
            model = load_model(self.model_spec, weights=weights, **self.load_options)
        elif weights is not None and model_spec is None:
            raise ValueError("weights= goes with a model spec string; load the module's weights "
                             "yourself when you pass an nn.Module")  # fmt: skip
        self.feature_model = adapt(model, head=head)
        self.detector = create_detector(method, preset=preset, **params)
        self.method = type(self.detector).name
        self.head_name = head if isinstance(head, str) else None
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self._check_class_names()
        self.device = _resolve_device(device, self.feature_model.model)
        self.amp = amp
        self._amp_dtype = _amp_dtype(amp, self.device)
        self.feature_model.model.to(self.device).eval()
        from shapeood.models import transform_for

        self.transform = transform_for(self.feature_model.pretrained_cfg)

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> nn.Module:
        """The wrapped classifier."""
        return self.feature_model.model

    @property
    def head(self) -> LinearHead:
        return self.feature_model.head

    @property
    def num_classes(self) -> int:
        return self.feature_model.num_classes

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "threshold_")

    def _check_class_names(self) -> None:
        names = self.class_names
        if names is not None and len(names) != self.feature_model.num_classes:
            raise ValueError(
                f"class_names has {len(names)} names but the model has "
                f"{self.feature_model.num_classes} classes"
            )

    def _check_fitted(self) -> float:
        if not self.is_fitted:
            raise RuntimeError("OODClassifier is not fitted: call fit(id_data) first")
        return float(self.threshold_)

    def __repr__(self) -> str:
        state = f"threshold={self.threshold_:.6g}" if self.is_fitted else "not fitted"
        name = self.model_spec or type(self.model).__name__
        return f"OODClassifier(model={name!r}, detector={self.detector!r}, {state})"

    def to(self, device: str | torch.device) -> OODClassifier:
        """Move the model and the fitted detector to ``device``; returns self."""
        self.device = _resolve_device(device, self.model)
        self._amp_dtype = _amp_dtype(self.amp, self.device)
        self.model.to(self.device)
        if self.detector.is_fitted:
            _move_fitted(self.detector, self.device)
        return self

    # ------------------------------------------------------------------ inputs
    def _batch(self, x: Any) -> torch.Tensor:
        """A transformed float batch (N, C, H, W) on the device."""
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            batch = x.unsqueeze(0) if x.ndim == 3 else x
            if batch.ndim != 4:
                raise ValueError(
                    f"a transformed image batch must be (N, C, H, W), got {tuple(x.shape)}"
                )
        else:
            if isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.ndim == 3:
                x = [x]
            elif isinstance(x, np.ndarray) and x.ndim in (2, 3) and x.dtype == np.uint8:
                if x.ndim == 2 or x.shape[-1] in (1, 3):
                    x = [x]
            elif not isinstance(x, (list, tuple, np.ndarray, torch.Tensor)):
                x = [x]
            if len(x) == 0:
                raise ValueError("predict got no images")
            batch = torch.stack([_prepare_image(image, self.transform) for image in x])
        return batch.to(self.device, non_blocking=True)

    def _autocast(self) -> Any:
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp_dtype)

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, z)`` float32 for a transformed batch: features and plain logits."""
        with torch.inference_mode():
            with self._autocast():
                h, z = self.feature_model.features_and_logits(batch)
            h = h.float()
            # Under autocast the plain logits are recomputed from h in float32.
            z = self.head(h) if self._amp_dtype is not None else z.float()
        return h, z

    def _dataset(self, data: Any) -> Any:
        if isinstance(data, Dataset) or (
            hasattr(data, "__getitem__")
            and hasattr(data, "labels")
            and not isinstance(data, (torch.Tensor, np.ndarray))
        ):
            return data
        if isinstance(data, torch.Tensor) and data.is_floating_point():
            batch = data.unsqueeze(0) if data.ndim == 3 else data
            return _ImageBatch(list(batch), self.transform)
        if isinstance(data, (list, tuple, np.ndarray, torch.Tensor)):
            return _ImageBatch(data, self.transform)
        raise ValueError(
            "id_data/fit_data must be a dataset yielding (image, label), a FeatureSet, a float "
            f"image batch (N, C, H, W), uint8 arrays (N, H, W, 3) or PIL images; got "
            f"{type(data).__name__}"
        )

    def _features(self, data: Any, batch_size: int, progress: bool) -> Any:
        """A FeatureSet (features, logits, labels) of ``data``."""
        if _is_feature_set(data):
            return data
        from shapeood.features import extract

        return extract(
            self.feature_model, self._dataset(data), batch_size=batch_size, device=self.device,
            amp=self.amp, cache=False, progress=progress,
        )  # fmt: skip

    def _image_scores(self, data: Any, batch_size: int) -> torch.Tensor:
        """Scores of a method that needs the images (ODIN), batch by batch."""
        dataset = self._dataset(data)
        from shapeood.features.extraction import _with_input_transform

        dataset, _ = _with_input_transform(self.feature_model, dataset)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
        parts = []
        for item in loader:
            images = item[0] if isinstance(item, (list, tuple)) else item
            parts.append(self._scores_of_images(images.to(self.device)))
        return torch.cat(parts)

    def _uses_images(self) -> bool:
        """Whether the method scores images through the model (ODIN with a noise step)."""
        detector = self.detector
        return bool(detector.requires_model) and float(getattr(detector, "noise", 1.0)) != 0.0

    def _scores_of_images(self, batch: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            score, _ = self.detector.score_and_predict_inputs(self.feature_model, batch)
        return score.float()

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        id_data: Any,
        target_tpr: float = 0.95,
        fit_data: Any = None,
        *,
        batch_size: int = 256,
        progress: bool = False,
    ) -> OODClassifier:
        """Fit the detector, then the threshold that accepts ``target_tpr`` of ``id_data``.

        ``id_data``: ID images (a dataset yielding ``(image, label)``, raw or transformed; a
        float batch; uint8 arrays; PIL images) or their ``FeatureSet``. ``fit_data``: ID
        training images for the methods that learn from ID *training* features (DICE's mean
        feature, HIMPLoS's class prototypes); without it they learn from ``id_data``. Methods
        fitted on ID validation data (ReAct, LHAct percentiles) learn from ``id_data``; the
        others learn from the head only.

        Threshold rule, with ``s_1..s_n`` the scores of the ``n`` ``id_data`` images and
        ``k = max(1, ceil(target_tpr * n))`` (``target_tpr * n`` rounded to 9 decimals first):
        ``threshold_ = the k-th largest s_i``, and an image is ID when ``score >= threshold_``.
        So at least ``k`` ID images are accepted; exactly ``k`` unless others tie with the
        ``k``-th score, which are all accepted too (ties are never split), so the accepted
        share ``id_accepted_rate_`` is ``>= target_tpr``.
        """
        tpr = check_target_tpr(target_tpr)
        detector = self.detector
        split = fit_split(detector)
        head = self.head
        if self._uses_images():
            detector.fit(head)
            scores = self._image_scores(id_data, batch_size)
            n_fit, used = 0, None
        else:
            id_fs = self._features(id_data, batch_size, progress)
            source = None
            used = None
            if split == "train":
                source = (
                    id_fs if fit_data is None else self._features(fit_data, batch_size, progress)
                )
                used = "id_data" if fit_data is None else "fit_data"
            elif split == "val":
                source, used = id_fs, "id_data"
            if source is None:
                detector.fit(head)
                n_fit = 0
            else:
                labels = source.labels if detector.requires_labels else None
                detector.fit(head, source.features, labels)
                n_fit = len(source.features)
            features = torch.as_tensor(id_fs.features).to(self.device)
            logits = torch.as_tensor(id_fs.logits).to(self.device)
            with torch.inference_mode():
                scores = detector.score(features, plain_logits=logits).float()
        self.threshold_ = fit_threshold(scores, tpr)
        self.target_tpr_ = tpr
        self.id_accepted_rate_ = accepted_rate(scores, self.threshold_)
        self.n_id_ = int(scores.shape[0])
        self.fit_split_ = used
        self.n_fit_ = n_fit
        if self.class_names is None:
            names = getattr(id_data, "class_names", None)
            if isinstance(names, (list, tuple)) and len(names) == self.num_classes:
                self.class_names = [str(n) for n in names]
        return self

    # ------------------------------------------------------------------ predict
    def predict(self, x: Any) -> OODPrediction:
        """Class, score and OOD flag for a batch of images.

        ``x``: a float tensor (N, C, H, W) (or one (C, H, W)) already transformed for the model,
        or images it transforms with the model's own transform: PIL images, uint8 arrays
        (N, H, W, 3) / (H, W, 3), uint8 tensors (3, H, W), or a list of those.
        """
        threshold = self._check_fitted()
        batch = self._batch(x)
        h, z = self._forward(batch)
        if self._uses_images():
            scores = self._scores_of_images(batch)
            return self._result(z, scores, threshold)
        return self._from_features(h, z, threshold)

    def predict_features(self, features: Any, logits: Any = None) -> OODPrediction:
        """The same as ``predict`` from pooled features ``h`` (N, D) (e.g. a cached FeatureSet).

        ``logits``: the plain logits ``W h + b`` of the same rows (computed when omitted).
        """
        threshold = self._check_fitted()
        h = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor)
                            else features).to(self.device, torch.float32)  # fmt: skip
        with torch.inference_mode():
            h = h.flatten(1) if h.ndim == 4 else h
            z = (
                self.head(h)
                if logits is None
                else torch.as_tensor(logits).to(self.device, torch.float32)
            )
        return self._from_features(h, z, threshold)

    def _from_features(self, h: torch.Tensor, z: torch.Tensor, threshold: float) -> OODPrediction:
        with torch.inference_mode():
            scores = self.detector.score(h, plain_logits=z).float()
        return self._result(z, scores, threshold)

    def _result(self, z: torch.Tensor, scores: torch.Tensor, threshold: float) -> OODPrediction:
        with torch.inference_mode():
            probabilities = torch.softmax(z, dim=1)
            return OODPrediction(
                labels=z.argmax(dim=1).cpu(),
                scores=scores.cpu(),
                is_ood=(scores < threshold).cpu(),
                probabilities=probabilities.cpu(),
                threshold=threshold,
                class_names=self.class_names,
            )

    # ------------------------------------------------------------------ export
    def to_graph(self) -> DeployGraph:
        """The eager module ``image -> (logits, score, is_ood)`` that the exports trace (CPU).

        Raises ``ValueError`` for ODIN (it needs gradients with respect to the input).
        """
        threshold = self._check_fitted()
        scorer = score_module(self.detector)
        graph = DeployGraph(feature_network(self.feature_model), self.head, scorer, threshold)
        graph = copy.deepcopy(graph).cpu().float().eval()
        for p in graph.parameters():
            p.requires_grad_(False)
        return graph

    def _example_input(self, batch_size: int = 2) -> torch.Tensor:
        size = tuple(int(v) for v in self.feature_model.pretrained_cfg["input_size"])
        return torch.zeros((batch_size, *size), dtype=torch.float32)

    def export_onnx(self, path: str | os.PathLike, opset: int = 17) -> Path:
        """Write an ONNX graph ``image`` (N, C, H, W) float32 -> ``logits``, ``score``, ``is_ood``.

        The input is the transformed image batch (the model's normalisation applied, see
        ``transform``); the batch size is dynamic. Raises ``ValueError`` for ODIN.
        """
        graph = self.to_graph()
        out = Path(path).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (self._example_input(),), str(out), dynamo=False,
                input_names=["image"], output_names=["logits", "score", "is_ood"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"},
                              "score": {0: "batch"}, "is_ood": {0: "batch"}},
                opset_version=int(opset),
            )  # fmt: skip
        return out

    def export_torchscript(self, path: str | os.PathLike) -> Path:
        """Write a TorchScript module (traced) ``image -> (logits, score, is_ood)``.

        Load it with ``torch.jit.load(path)``; the input is the transformed image batch.
        Raises ``ValueError`` for ODIN.
        """
        graph = self.to_graph()
        out = Path(path).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(graph, self._example_input(), check_trace=False)
            traced.save(str(out))
        return out

    # ------------------------------------------------------------------ save / load
    def weights_digest(self) -> str:
        """Digest of the model's weights (every tensor of its ``state_dict``)."""
        from shapeood.features.keys import weights_hash

        return weights_hash(self.model)

    def save(self, path: str | os.PathLike, include_model: bool = True) -> Path:
        """Write everything ``load`` needs to one file (see ``shapeood.deploy.artifact``).

        Holds the method, its parameters and fitted state, ``threshold_`` and ``target_tpr_``,
        the model's ``pretrained_cfg`` (its transform), class names, the shapeood version, the
        model spec (when the model came from one) and a digest of the weights; plus the weights
        themselves unless ``include_model=False`` (then ``load`` rebuilds the model from its
        spec, or needs ``model=``).
        """
        self._check_fitted()
        import shapeood

        store = artifact._Arrays()
        detector = self.detector
        fitted = {k: v for k, v in vars(detector).items() if k.endswith("_") and
                  not k.startswith("_")}  # fmt: skip
        cfg = self.feature_model.pretrained_cfg
        header: dict[str, Any] = {
            "shapeood_version": shapeood.__version__,
            "method": self.method,
            "params": artifact.encode(detector.get_params(), "detector/params", store),
            "fitted": artifact.encode(fitted, "detector/fitted", store),
            "threshold": float(self.threshold_),
            "target_tpr": float(self.target_tpr_),
            "id_accepted_rate": float(self.id_accepted_rate_),
            "n_id": int(self.n_id_),
            "fit_split": self.fit_split_,
            "n_fit": int(self.n_fit_),
            "amp": self.amp if isinstance(self.amp, (bool, str)) else str(self.amp),
            "pretrained_cfg": artifact.json_safe(cfg),
            "transform": repr(self.transform),
            "class_names": self.class_names,
            "model": {
                "spec": self.model_spec,
                "weights_spec": self.weights_spec,
                "load_options": artifact.json_safe(self.load_options),
                "architecture": cfg.get("architecture"),
                "class": type(self.model).__name__,
                "head": self.head_name,
                "layer": self.feature_model.layer_name,
                "weights_digest": self.weights_digest(),
                "includes_weights": bool(include_model),
            },
        }
        arrays = dict(store.arrays)
        if include_model:
            for name, tensor in self.model.state_dict().items():
                t = tensor.detach().cpu()
                arrays[f"weights/{name}"] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        return artifact.write(path, header, arrays)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: nn.Module | None = None,
        *,
        load_weights: bool = False,
        device: str | torch.device | None = "cpu",
    ) -> OODClassifier:
        """Restore a classifier written by ``save``.

        ``model=None``: the model is rebuilt from the file: its architecture (kit architectures,
        ``torchvision:``/``timm:`` names) with the stored weights, or, for a file without
        weights, ``load_model(spec)``. A model saved from a plain ``nn.Module`` has no spec to
        rebuild it: pass ``model=`` (a module of the same architecture) and, to use the weights
        stored in the file, ``load_weights=True``. The weights of the model used must have the
        digest recorded at save time; a different model is refused.
        """
        header, arrays = artifact.read(path)
        info = header.get("model") or {}
        digest = info.get("weights_digest")
        weights = {k[len("weights/") :]: v for k, v in arrays.items() if k.startswith("weights/")}
        if model is None:
            model = _rebuild_model(path, header, weights)
        elif load_weights:
            if not weights:
                raise ValueError(f"{path} holds no model weights (saved with include_model=False)")
            _load_state(model, weights, header, path)
        spec = info.get("spec")
        clf = cls.__new__(cls)
        from shapeood.detectors import create_detector
        from shapeood.models import adapt, transform_for

        params = artifact.decode(header.get("params") or {}, arrays)
        clf.model_spec = spec
        clf.weights_spec = info.get("weights_spec")
        clf.load_options = dict(info.get("load_options") or {})
        clf.feature_model = adapt(model, head=info.get("head"))
        clf.head_name = info.get("head")
        cfg = header.get("pretrained_cfg") or {}
        if cfg and not getattr(model, "pretrained_cfg", None):
            model.pretrained_cfg = dict(cfg)
        clf.feature_model.pretrained_cfg.update(cfg)
        found = _digest_of(model)
        if digest and found != digest:
            hint = (
                " Pass load_weights=True to use the weights stored in the file."
                if weights
                else " Pass the model the detector was fitted with."
            )
            raise ValueError(
                f"{path}: the model's weights (digest {found}) differ from those the detector was "
                f"fitted with (digest {digest}), so its threshold does not apply.{hint}"
            )
        clf.detector = create_detector(header["method"], **params)
        clf.method = type(clf.detector).name
        for key, value in artifact.decode(header.get("fitted") or {}, arrays).items():
            setattr(clf.detector, key, value)
        clf.class_names = header.get("class_names")
        clf.device = _resolve_device(device, model)
        amp = header.get("amp", False)
        clf.amp = amp
        clf._amp_dtype = _amp_dtype(amp, clf.device)
        model.to(clf.device).eval()
        _move_fitted(clf.detector, clf.device)
        clf.transform = transform_for(clf.feature_model.pretrained_cfg)
        clf.threshold_ = float(header["threshold"])
        clf.target_tpr_ = float(header["target_tpr"])
        clf.id_accepted_rate_ = float(header.get("id_accepted_rate", float("nan")))
        clf.n_id_ = int(header.get("n_id", 0))
        clf.fit_split_ = header.get("fit_split")
        clf.n_fit_ = int(header.get("n_fit", 0))
        return clf


def _digest_of(model: nn.Module) -> str:
    from shapeood.features.keys import weights_hash

    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and hasattr(model, "head") and hasattr(model, "features"):
        model = inner
    return weights_hash(model)


def _load_state(model: nn.Module, weights: dict[str, np.ndarray], header: dict, path: Any) -> None:
    target = getattr(model, "model", model) if hasattr(model, "features") else model
    state = target.state_dict()
    tensors = {}
    for name, array in weights.items():
        t = torch.from_numpy(np.array(array))
        if name in state:
            t = t.to(state[name].dtype)
        tensors[name] = t
    try:
        target.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(
            f"{path}: the stored weights do not fit {type(target).__name__} (saved from "
            f"{header.get('model', {}).get('class')}): {first}"
        ) from err


def _rebuild_model(path: Any, header: dict, weights: dict[str, np.ndarray]) -> nn.Module:
    """Rebuild the saved model without pickle: architecture + stored weights, or the spec."""
    from shapeood.models import create, load_model

    info = header.get("model") or {}
    cfg = header.get("pretrained_cfg") or {}
    arch = info.get("architecture")
    spec = info.get("spec")
    if weights:
        if not arch:
            raise ValueError(
                f"{path} was saved from a plain {info.get('class')} module: rebuild it yourself "
                "and call OODClassifier.load(path, model=module, load_weights=True)"
            )
        classes = int(cfg.get("num_classes") or 0) or None
        if str(arch).startswith(("torchvision:", "timm:", "python:")):
            # an empty network of that architecture; the stored weights are loaded below
            model = load_model(arch, random_weights=True, num_classes=classes)
        elif _is_architecture(arch):
            model = create(arch, num_classes=classes)
        elif spec:
            model = load_model(spec, weights=info.get("weights_spec"), **_options(info))
        else:
            raise ValueError(
                f"{path}: cannot rebuild a {arch} network without pickle: pass "
                "OODClassifier.load(path, model=module, load_weights=True)"
            )
        _load_state(model, weights, header, path)
        if cfg:
            model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), **cfg}
        if isinstance(getattr(model, "pretrained_cfg", None), dict):
            model.pretrained_cfg.pop("random_weights", None)  # the stored weights are loaded
        return model
    if spec:
        return load_model(spec, weights=info.get("weights_spec"), **_options(info))
    raise ValueError(
        f"{path} holds no model weights and no model spec: pass "
        "OODClassifier.load(path, model=the model the detector was fitted with)"
    )


def _is_architecture(name: str) -> bool:
    from shapeood.models.factory import _match_architecture

    return _match_architecture(str(name)) is not None


def _options(info: dict) -> dict[str, Any]:
    """The recorded ``load_model`` options (pickle is never trusted on load)."""
    options = dict(info.get("load_options") or {})
    options.pop("trust_pickle", None)
    return options
