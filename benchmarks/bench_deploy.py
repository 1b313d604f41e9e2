"""Cost of the OOD decision at inference: ``OODClassifier.predict`` against the plain ``model(x)``.

For each kit model (ResNet-20 on CIFAR-10 images, MobileNetV2 on ImageNet sample images), batch
size (1 and 64) and method (SCALE, ASH-S, ASH-B, Energy by default), the same transformed batch
is run alternately through the plain classifier ``model(x)`` (eager, float32, inference mode)
and through ``clf.predict(x)`` (features + logits in one pass, detector score, threshold,
softmax), then through the exported ONNX graph in onnxruntime (``image -> logits, score,
is_ood``). Each round times the three once (in alternating order); a ratio is the median over
rounds of ``t(candidate) / t(plain)`` within the round, so a busy machine slows both sides of a
ratio alike. Times are medians in milliseconds. Target: ``predict / plain <= 1.05`` at batch 64.
``dec.`` times the decision alone on the same batch (``predict_features(h, z)``: detector score,
threshold, softmax, from the features and logits of that batch), ``dec./x`` its paired ratio
to the plain forward: the part of the overhead that is not forward-pass noise.

Both runtimes get the same number of CPU threads (``--threads``, default 1: on a shared
machine more threads mostly measure contention).

    python benchmarks/bench_deploy.py [--rounds 15] [--batches 1 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from shapeood.data import ArrayDataset
from shapeood.deploy import OODClassifier
from shapeood.paths import data_root

MODELS = {  # kit model -> (image archive, fit rows)
    "resnet20_cifar10": "cifar10_test.npz",
    "mobilenet_v2_imagenet": "imagenet_sample_224.npz",
}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _median_ratio(candidate: list[float], plain: list[float]) -> float:
    return statistics.median(c / p for c, p in zip(candidate, plain, strict=True))


def _batch(clf: OODClassifier, archive: Path, size: int) -> torch.Tensor:
    with np.load(archive, allow_pickle=False) as z:
        images = z["images"][:size]
    return torch.stack([clf.transform(torch.from_numpy(i).permute(2, 0, 1)) for i in images])


def run(args: argparse.Namespace) -> list[dict]:
    import onnxruntime as ort

    root = data_root()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_deploy_"))
    for model_name in args.models:
        archive = root / MODELS[model_name]
        fit_set = ArrayDataset(archive, indices=np.arange(0, 64))
        base = OODClassifier(model_name, method="energy", device="cpu")
        net = base.model
        for method in args.methods:
            clf = OODClassifier(net, method=method).fit(fit_set, batch_size=32)
            onnx_path = clf.export_onnx(tmp / f"{model_name}_{method}.onnx")
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = ort.InferenceSession(str(onnx_path), options,
                                           providers=["CPUExecutionProvider"])  # fmt: skip
            for size in args.batches:
                x = _batch(clf, archive, size)
                feed = {"image": x.numpy()}

                def plain(x=x, net=net) -> None:
                    with torch.inference_mode():
                        net(x)

                def predict(x=x, clf=clf) -> None:
                    clf.predict(x)

                def onnx(feed=feed, session=session) -> None:
                    session.run(None, feed)

                h, z = clf._forward(x)

                def decision(h=h, z=z, clf=clf) -> None:
                    clf.predict_features(h, z)

                for fn in (plain, predict, onnx, decision):  # warm-up
                    fn()
                t_plain, t_pred, t_onnx, t_decision = [], [], [], []
                for i in range(args.rounds):
                    if i % 2:  # alternate the order: no side always runs first
                        t_onnx.append(_timed(onnx))
                        t_pred.append(_timed(predict))
                        t_plain.append(_timed(plain))
                    else:
                        t_plain.append(_timed(plain))
                        t_pred.append(_timed(predict))
                        t_onnx.append(_timed(onnx))
                    t_decision.append(_timed(decision))
                rows.append({
                    "model": model_name, "batch": size, "method": method,
                    "plain_ms": 1e3 * statistics.median(t_plain),
                    "predict_ms": 1e3 * statistics.median(t_pred),
                    "onnx_ms": 1e3 * statistics.median(t_onnx),
                    "predict_x": _median_ratio(t_pred, t_plain),
                    "onnx_x": _median_ratio(t_onnx, t_plain),
                    "decision_ms": 1e3 * statistics.median(t_decision),
                    "decision_x": _median_ratio(t_decision, t_plain),
                })  # fmt: skip
                r = rows[-1]
                print(
                    f"{model_name:22s} {size:5d} {method:8s} {r['plain_ms']:9.2f} "
                    f"{r['predict_ms']:9.2f} {r['onnx_ms']:9.2f} {r['predict_x']:8.3f} "
                    f"{r['onnx_x']:8.3f} {r['decision_ms']:8.3f} {r['decision_x']:8.4f}",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=["scale", "ash_s", "ash_b", "energy"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch and onnxruntime alike (default 1)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, "
          f"load average {load:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"{'model':22s} {'batch':>5s} {'method':8s} {'plain ms':>9s} {'predict':>9s} "
          f"{'onnx ms':>9s} {'pred/x':>8s} {'onnx/x':>8s} {'dec. ms':>8s} {'dec./x':>8s}")
    run(args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end {load:.1f}")


if __name__ == "__main__":
    main()
