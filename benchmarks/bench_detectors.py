"""Time every post-hoc detector on cached-feature-sized inputs, against a per-sample baseline.

Features are ``relu`` of a seeded Gaussian (N x D, default 50,000 x 2,048) and the head has
1,000 classes. Each detector is fitted once (on the same features; HIMPLoS with labels i mod C)
and scoring is timed as the best of ``--repeats`` calls, twice: ``score s`` from the features
alone (``score(features)``) and ``cached s`` with the plain logits cached next to them
(``score(features, plain_logits=logits)``, as evaluation does with a ``FeatureSet``), which
MSP/MaxLogit/Energy/ODIN/SCALE use instead of the head matmul and HIMPLoS for its prediction;
``cached diff`` is the largest difference of the two scores relative to max |score|. The
baseline computes the
same formula one sample at a time in numpy, as the upstream code did: ASH with the pre-2022
per-row ``np.percentile`` threshold, LHAct with a Python function per element
(``Tensor.apply_``), every other method with a per-sample loop. Baselines run on a subset of rows
and are extrapolated linearly to N (the table says on how many rows). ``max |diff|`` compares the
two scores on that subset (ASH baselines threshold by interpolated percentile, so ties and
interpolation may differ slightly). The first row is the floor shared by every detector that
computes logits: one ``h @ W.T + b``; every timing is paired with a floor timed right before it,
and each ``x floor`` is the median over ``--repeats`` pairs of (seconds / floor seconds), which
stays meaningful on a busy machine; ``best x`` is the fastest call over the fastest floor, the
steadier figure where the machine's speed drifts between calls (load only adds time).
Targets (issue 13, at 2 threads): ASH-P/B/S and SCALE <= 1.5x the floor, HIMPLoS <= 2.2x,
every other detector <= 1.2x (``score s`` column).

``--pytorch-ood PATH`` adds pytorch-ood's implementation of every shared method, timed in the
same pairs on the same features (install it only for the benchmark, never as a dependency:
``pip install --no-deps --target PATH pytorch-ood==0.4.0``): ``pood x floor`` and ``ours/pood``
(median of per-pair ratios; < 1 means shapeood is faster). pytorch-ood's DICE builds an
N x C x D tensor, so it runs on ``--baseline-rows`` rows and is extrapolated.

    python benchmarks/bench_detectors.py [--rows 50000] [--dim 2048] [--classes 1000]
        [--threads 2] [--pytorch-ood PATH]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

# The per-sample baselines are single-threaded numpy (BLAS threads would only spin on a
# matrix-vector product); torch keeps its own thread pool for the vectorised detectors.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch

from shapeood import LinearHead
from shapeood.detectors import Detector, create_detector, list_detectors

# ----------------------------------------------------------------- per-sample baselines


def _logsumexp(z: np.ndarray) -> float:
    top = z.max()
    return float(top + np.log(np.exp(z - top).sum()))


def _energy_of(weight: np.ndarray, bias: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda y: _logsumexp(weight @ y + bias)


def _percentile_prune(x: np.ndarray, p: float) -> tuple[np.ndarray, float, float]:
    """Pre-2022 ASH: keep entries >= the row's p-th percentile; returns (mask, S1, S2)."""
    keep = x >= np.percentile(x, p)
    return keep, float(x.sum()), float(x[keep].sum())


def make_baselines(
    det_by_name: dict[str, Detector], weight: np.ndarray, bias: np.ndarray
) -> dict[str, Callable[[np.ndarray], float]]:
    """One function per method mapping ONE sample (D,) to its score."""
    energy = _energy_of(weight, bias)

    def msp(x: np.ndarray) -> float:
        z = weight @ x + bias
        return float(1.0 / np.exp(z - z.max()).sum())

    def odin(x: np.ndarray) -> float:
        z = (weight @ x + bias) / float(det_by_name["odin"].temperature)
        return float(1.0 / np.exp(z - z.max()).sum())

    def react(x: np.ndarray) -> float:
        return energy(np.minimum(x, det_by_name["react"].threshold_))

    dice_weight = (weight * det_by_name["dice"].mask_.numpy()).astype(np.float32)

    def dice(x: np.ndarray) -> float:
        return _logsumexp(dice_weight @ x + bias)

    def ash_p(x: np.ndarray) -> float:
        keep, _, _ = _percentile_prune(x, det_by_name["ash_p"].percentile)
        return energy(np.where(keep, x, 0).astype(np.float32))

    def ash_b(x: np.ndarray) -> float:
        keep, s1, _ = _percentile_prune(x, det_by_name["ash_b"].percentile)
        return energy(np.where(keep, s1 / keep.sum(), 0).astype(np.float32))

    def ash_s(x: np.ndarray) -> float:
        keep, s1, s2 = _percentile_prune(x, det_by_name["ash_s"].percentile)
        return energy(np.where(keep, x * math.exp(s1 / s2), 0).astype(np.float32))

    def scale(x: np.ndarray) -> float:
        _, s1, s2 = _percentile_prune(x, det_by_name["scale"].percentile)
        return energy((x * math.exp(s1 / s2)).astype(np.float32))

    lh = det_by_name["lhact"]

    def rectify(v: float) -> float:
        u = max(v, lh.tl_)
        return u if u < lh.th_ else u / math.sqrt(1 + (u / lh.th_) ** 4) + lh.tl_

    def lhact(x: np.ndarray) -> float:
        return energy(torch.from_numpy(x.copy()).apply_(rectify).numpy())

    hp = det_by_name["himplos"]
    mask, protos = hp.mask_.numpy(), hp.prototypes_.numpy()

    def himplos(x: np.ndarray) -> float:
        c = int(np.argmax(weight @ x + bias))
        clipped = np.minimum(x * mask[c], hp.threshold).astype(np.float32)
        cosine = x @ protos[c] / max(np.linalg.norm(x) * np.linalg.norm(protos[c]), 1e-8)
        return _logsumexp(cosine * (weight @ clipped + bias))

    return {
        "msp": msp,
        "max_logit": lambda x: float((weight @ x + bias).max()),
        "energy": energy,
        "odin": odin,
        "dice": dice,
        "react": react,
        "ash_p": ash_p,
        "ash_b": ash_b,
        "ash_s": ash_s,
        "scale": scale,
        "lhact": lhact,
        "himplos": himplos,
    }


# ----------------------------------------------------------------- timing


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(
    fns: dict[str, Callable[[], object]], floor: Callable[[], object], repeats: int
) -> dict[str, tuple[float, float, float]]:
    """``{name: (median seconds, median of seconds / floor seconds, best ratio)}`` over
    ``repeats`` rounds; the best ratio is the fastest call over the fastest of its floors.

    In each round every function runs right after its own floor timing, so a burst of load
    from other processes hits both sides of a ratio. Load only ever adds time, so on a machine
    whose speed drifts between calls the best ratio is the steadier estimate of the work. A
    function with an ``extrapolate`` attribute ran on a subset: its seconds are multiplied by
    that factor.
    """
    for fn in fns.values():  # warm-up (allocations, first-call dispatch)
        fn()
    times: dict[str, list[float]] = {n: [] for n in fns}
    floors: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            floors[name].append(_seconds(floor))
            times[name].append(_seconds(fn) * getattr(fn, "extrapolate", 1.0))
    return {
        n: (
            statistics.median(times[n]),
            statistics.median(t / b for t, b in zip(times[n], floors[n], strict=True)),
            min(times[n]) / min(floors[n]),
        )
        for n in fns
    }


def pytorch_ood_scores(
    path: str, detectors: dict[str, Detector], head: LinearHead, features: torch.Tensor,
    dice_rows: int,
) -> dict[str, Callable[[], object]]:
    """pytorch-ood 0.4.0 scoring of the shared methods on the same features and head."""
    sys.path.insert(0, path)
    from pytorch_ood import detector as pood  # optional, benchmark only

    maps = features[:, :, None, None]  # pytorch-ood's ASH/SCALE/ReAct take feature maps

    def pood_head(x: torch.Tensor) -> torch.Tensor:
        return head(x.flatten(1))

    out: dict[str, Callable[[], object]] = {}
    for name, variant in (("ash_p", "ash-p"), ("ash_b", "ash-b"), ("ash_s", "ash-s")):
        frac = float(detectors[name].percentile) / 100
        ash = pood.ASH(backbone=None, head=pood_head, variant=variant, percentile=frac)
        out[name] = lambda ash=ash: ash.predict_feature_maps(maps)
    scale = pood.SCALE(
        backbone=None, head=pood_head, percentile=float(detectors["scale"].percentile) / 100
    )
    out["scale"] = lambda: scale.predict_feature_maps(maps)
    react = pood.ReAct(backbone=None, head=pood_head, threshold=detectors["react"].threshold_)
    out["react"] = lambda: react.predict_feature_maps(maps)
    out["energy"] = lambda: pood.EnergyBased.score(head(features))
    out["msp"] = lambda: pood.MaxSoftmax.score(head(features))
    out["max_logit"] = lambda: pood.MaxLogit.score(head(features))
    dice = pood.DICE(None, w=head.weight, b=head.bias, p=float(detectors["dice"].percentile) / 100)
    fit_rows = features[:5000]
    dice.fit_features(fit_rows, torch.zeros(len(fit_rows), dtype=torch.int64))
    subset = features[:dice_rows]

    def dice_full() -> None:  # timed on the subset, scaled to all rows by ``extrapolate``
        dice.predict_features(subset)

    dice_full.extrapolate = len(features) / dice_rows  # type: ignore[attr-defined]
    out["dice"] = dice_full
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="feature rows N")
    parser.add_argument("--dim", type=int, default=2_048, help="feature width D")
    parser.add_argument("--classes", type=int, default=1_000, help="head classes C")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per detector")
    parser.add_argument("--baseline-rows", type=int, default=500, help="rows the baseline runs")
    parser.add_argument("--lhact-rows", type=int, default=10, help="rows of the per-element one")
    parser.add_argument("--only", nargs="*", default=None, help="detector names to run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument(
        "--pytorch-ood", default=None, metavar="PATH",
        help="folder with pytorch-ood 0.4.0 (pip install --no-deps --target PATH ...)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    features = torch.relu(torch.randn(args.rows, args.dim, generator=gen))
    weight = torch.randn(args.classes, args.dim, generator=gen) / math.sqrt(args.dim)
    bias = torch.randn(args.classes, generator=gen) * 0.01
    labels = torch.arange(args.rows) % args.classes  # every class present
    head = LinearHead(weight, bias)
    names = [n for n in list_detectors() if args.only is None or n in args.only]

    print(
        f"features {args.rows} x {args.dim} (relu of a seeded Gaussian), head {args.classes} "
        f"classes, torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s); "
        f"best of {args.repeats} calls"
    )
    floor = best_time(lambda: head(features), args.repeats)
    plain_logits = head(features)  # what a FeatureSet caches with the features

    detectors: dict[str, Detector] = {}
    fit_s: dict[str, float] = {}
    for name in list_detectors():
        det = create_detector(name, **({"noise": 0.0} if name == "odin" else {}))
        start = time.perf_counter()
        det.fit(head, features, labels)
        fit_s[name] = time.perf_counter() - start
        detectors[name] = det
    baselines = make_baselines(detectors, weight.numpy(), bias.numpy())

    floor_fn = lambda: head(features)  # noqa: E731
    ours = {n: (lambda det=detectors[n]: det.score(features)) for n in names}
    cached_fns = {
        n: (lambda det=detectors[n]: det.score(features, plain_logits=plain_logits)) for n in names
    }
    pood_fns: dict[str, Callable[[], object]] = {}
    if args.pytorch_ood:
        shared = pytorch_ood_scores(
            args.pytorch_ood, detectors, head, features, args.baseline_rows
        )
        pood_fns = {n: f for n, f in shared.items() if n in names}
    print(f"load average before timing: {os.getloadavg()[0]:.2f}")
    fns = {
        **{("score", n): f for n, f in ours.items()},
        **{("cached", n): f for n, f in cached_fns.items()},
        **{("pood", n): f for n, f in pood_fns.items()},
    }
    timed = paired({f"{k[0]}:{k[1]}": f for k, f in fns.items()}, floor_fn, args.repeats)
    pair_ratio: dict[str, float] = {}
    if pood_fns:  # ours/pood per pair, each pair back to back
        for n in pood_fns:
            got = paired({"ours": ours[n], "pood": pood_fns[n]}, lambda: None, args.repeats)
            pair_ratio[n] = got["ours"][0] / got["pood"][0]
    print(f"load average after timing: {os.getloadavg()[0]:.2f}")

    header = (
        f"{'detector':<22}{'fit s':>8}{'score s':>10}{'x floor':>9}{'best x':>8}{'cached s':>10}"
        f"{'x floor':>9}{'cached diff':>13}{'per-sample s':>14}{'(rows)':>8}{'speed-up':>10}"
        f"{'max |diff|':>12}"
        + (f"{'pood s':>9}{'pood x floor':>14}{'ours/pood':>11}{'best':>7}" if pood_fns else "")
    )
    print(header)
    print("-" * len(header))
    print(f"{'head matmul (floor)':<22}{'':>8}{floor:>10.3f}{1:>9.2f}")
    for name in names:
        det = detectors[name]
        seconds, ratio, best = timed[f"score:{name}"]
        cached, cached_ratio, _ = timed[f"cached:{name}"]
        from_features = det.score(features)
        from_cache = det.score(features, plain_logits=plain_logits)
        cached_diff = float((from_cache - from_features).abs().max()) / max(
            float(from_features.abs().max()), 1e-30
        )
        n_base = min(args.rows, args.lhact_rows if name == "lhact" else args.baseline_rows)
        subset = features[:n_base].numpy()
        start = time.perf_counter()
        reference = np.array([baselines[name](row) for row in subset])
        base_full = (time.perf_counter() - start) * args.rows / n_base
        ours_sub = det.score(features[:n_base]).double().numpy()
        diff = float(np.abs(ours_sub - reference).max())
        label = f"{name} (noise=0)" if name == "odin" else name
        line = (
            f"{label:<22}{fit_s[name]:>8.3f}{seconds:>10.3f}{ratio:>9.2f}{best:>8.2f}"
            f"{cached:>10.3f}{cached_ratio:>9.2f}{cached_diff:>13.1e}"
            f"{base_full:>14.1f}{n_base:>8}{base_full / min(seconds, cached):>9.0f}x{diff:>12.2e}"
        )
        if name in pood_fns:
            pood_s, pood_ratio, pood_best = timed[f"pood:{name}"]
            line += f"{pood_s:>9.3f}{pood_ratio:>14.2f}{pair_ratio[name]:>11.2f}"
            line += f"{best / pood_best:>7.2f}"
        print(line)
    print(
        "per-sample s: the baseline timed on (rows) rows and extrapolated linearly to "
        f"{args.rows} rows (single-threaded numpy); speed-up = per-sample s / the faster of "
        "score s and cached s. best x: the fastest call over the fastest floor; best (ours/pood):"
        " best x over pood's best x."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
