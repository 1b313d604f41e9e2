"""Accepted-ID and rejected-OOD rates of ``OODClassifier`` thresholds on the offline kit.

ResNet-20 (CIFAR-10). The threshold is fitted at ``--target-tpr`` (default 0.95) on the kit's
CIFAR-10 val split (every 10th image per class of ``cifar10_test.npz``, 1000 images); the
accepted-ID rate is then measured on the other 9000 CIFAR-10 test images (held out), and the
rejection rate (``is_ood``) on MNIST (10000) and TinyImageNet (10000, 32x32). Features are
extracted once (cached) and every method reuses them through ``predict_features``. DICE and
HIMPLoS learn from the kit's CIFAR-10 training subset (``fit_data``).

    python benchmarks/deploy_rates.py [--methods scale energy ash_s react] [--max-samples N]
"""

from __future__ import annotations

import argparse

import numpy as np

import shapeood as so
from shapeood.data import ArrayDataset, holdout_rows
from shapeood.deploy import OODClassifier
from shapeood.paths import kit_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20_cifar10")
    parser.add_argument("--methods", nargs="+", default=["scale", "energy", "ash_s", "react",
                                                          "msp", "dice", "himplos"])  # fmt: skip
    parser.add_argument("--target-tpr", type=float, default=0.95)
    parser.add_argument("--max-samples", type=int, help="at most N evenly spaced images per set")
    args = parser.parse_args()

    cifar = kit_file("cifar10_test.npz")
    with np.load(cifar, allow_pickle=False) as z:
        val, test = holdout_rows(z["labels"])

    def rows(n: int, subset: np.ndarray | None = None) -> np.ndarray:
        base = np.arange(n) if subset is None else subset
        if args.max_samples and len(base) > args.max_samples:
            base = base[np.linspace(0, len(base) - 1, args.max_samples).round().astype(int)]
        return base

    sets = {
        "cifar10_val": ArrayDataset(cifar, indices=val, name="cifar10_val"),
        "cifar10_test": ArrayDataset(cifar, indices=rows(0, test), name="cifar10_heldout"),
        "mnist": ArrayDataset(kit_file("mnist_test.npz"), indices=rows(10000)),
        "tin": ArrayDataset(kit_file("tinyimagenet_val_32.npz"), indices=rows(10000)),
        "train": ArrayDataset(kit_file("cifar10_train_subset.npz"), indices=rows(10000)),
    }
    net = so.models.load_model(args.model)
    features = {name: so.extract(net, ds, progress=True) for name, ds in sets.items()}
    print(f"{args.model}, threshold at target TPR {args.target_tpr} on {len(val)} CIFAR-10 val")
    print(f"{'method':10s} {'threshold':>10s} {'ID val acc.':>11s} {'ID held-out acc.':>16s} "
          f"{'MNIST rej.':>10s} {'TIN rej.':>9s}   (n = {len(features['cifar10_test'])}, "
          f"{len(features['mnist'])}, {len(features['tin'])})")  # fmt: skip
    for method in args.methods:
        clf = OODClassifier(net, method=method)
        clf.fit(features["cifar10_val"], target_tpr=args.target_tpr, fit_data=features["train"])

        def flagged(name: str, clf: OODClassifier = clf) -> float:
            fs = features[name]
            return float(clf.predict_features(fs.features, fs.logits).is_ood.double().mean())

        print(f"{method:10s} {clf.threshold_:10.4g} {100 * clf.id_accepted_rate_:10.2f}% "
              f"{100 * (1 - flagged('cifar10_test')):15.2f}% {100 * flagged('mnist'):9.2f}% "
              f"{100 * flagged('tin'):8.2f}%")  # fmt: skip


if __name__ == "__main__":
    main()
