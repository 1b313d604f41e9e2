"""``shapeood train``: fine-tune a classifier with ISH or plain cross-entropy (resumable)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from shapeood.cli._options import add_model_options, add_options, model_from_args

if TYPE_CHECKING:
    from shapeood.train.loop import TrainConfig

DESCRIPTION = """\
Fine-tune a classifier with ISH (or plain cross-entropy). A recipe names the model, the data
and the settings; the flags below override it. Run the same command again to resume a killed
run from its last epoch checkpoint; torchrun starts one process per GPU.
"""

EPILOG = """\
examples:
  shapeood train --list
  shapeood train --recipe cifar10_densenet_ish --out runs/cifar10_densenet_ish
  shapeood train --model resnet20_cifar10 --data kit:cifar10_train_subset.npz --ish \\
      --epochs 1 --max-steps-per-epoch 2 --out runs/r20_ish
  torchrun --nproc_per_node 4 --no-python shapeood train --recipe imagenet_resnet50_ish \\
      --data train_imagenet.txt --data-root images_largescale --out runs/r50_ish
"""

# Command-line flag -> TrainConfig field, for the settings a recipe may be overridden with.
_OVERRIDES = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "min_lr": "min_lr",
    "weight_decay": "weight_decay",
    "head_weight_decay": "head_weight_decay",
    "ish": "ish",
    "ish_percentile": "ish_percentile",
    "ish_layers": "ish_layers",
    "amp": "amp",
    "seed": "seed",
    "workers": "num_workers",
    "device": "device",
    "channels_last": "channels_last",
    "max_steps_per_epoch": "max_steps_per_epoch",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune a classifier with ISH (or plain cross-entropy); resumable, torchrun-ready",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", help="named recipe (see --list); flags below override it")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.add_argument("--out", help="output folder: checkpoint.pt, log.jsonl, model.pt")
    add_model_options(p, required=False)
    p.add_argument("--data", help="kit:FILE.npz, an .npz, an image folder or an image list")
    add_options(p, "data_root")
    p.add_argument(
        "--augment",
        choices=["cifar", "imagenet"],
        help="training augmentation (default: the recipe's; else by input size)",
    )
    p.add_argument("--head", help="module name of the classifier head (default: found by adapt)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per process")
    p.add_argument("--lr", type=float)
    p.add_argument("--min-lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--head-weight-decay", type=float)
    p.add_argument("--ish", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--ish-percentile", type=float, help="percent in [0, 100), e.g. 85")
    p.add_argument("--ish-layers", help="'head', 'all' or comma-separated module names")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int)
    add_options(
        p, "workers", "device",
        help={"workers": "DataLoader worker processes (default: the recipe's, else 0)"},
        aliases={"workers": ("--num-workers",)}, defaults={"workers": None},
    )  # fmt: skip
    p.add_argument("--max-steps-per-epoch", type=int, help="cap the iterations of each epoch")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a checkpoint")
    add_options(p, "quiet", "debug", aliases={"quiet": ("--no-progress",)})
    p.set_defaults(func=run)


def _config(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    changes: dict[str, Any] = {}
    for flag, name in _OVERRIDES.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if name == "ish_layers" and value not in ("head", "all"):
            value = [v.strip() for v in value.split(",") if v.strip()]
        changes[name] = value
    if args.quiet:
        changes["progress"] = False
    return base.replace(**changes)


def run(args: argparse.Namespace) -> int:
    from shapeood.train.recipes import get_recipe, list_recipes

    if args.list:
        for name, recipe in list_recipes().items():
            print(f"{name}: {recipe.description}")
        return 0
    recipe = get_recipe(args.recipe) if args.recipe else None
    model_spec = args.model or (recipe.model if recipe else None)
    data_source = args.data or (recipe.data if recipe else None)
    if model_spec is None or data_source is None:
        raise ValueError("name the model and the data: --recipe NAME, or --model and --data")
    if args.out is None:
        raise ValueError("--out FOLDER is required (checkpoints and the trained weights go there)")
    from shapeood.train.loop import TrainConfig

    config = _config(args, recipe.config if recipe else TrainConfig())
    return _train(args, recipe, model_spec, data_source, config)


def _augmentation(args: argparse.Namespace, recipe: Any, model: Any) -> str:
    if args.augment:
        return args.augment
    if recipe is not None:
        return recipe.augmentation
    size = int(model.pretrained_cfg["input_size"][-1])
    return "cifar" if size <= 64 else "imagenet"


def _train(args, recipe, model_spec: str, data_source: str, config: TrainConfig) -> int:
    from shapeood.train.loop import fit_model
    from shapeood.train.recipes import AUGMENTATIONS, training_data

    weights = args.weights or (recipe.weights if recipe and model_spec == recipe.model else None)
    model = model_from_args(args, spec=model_spec, weights=weights, training=True)
    augment = AUGMENTATIONS[_augmentation(args, recipe, model)](model)
    dataset = training_data(data_source, augment, imglist_root=args.data_root)
    result = fit_model(
        model,
        dataset,
        config,
        out_dir=args.out,
        resume=not args.no_resume,
        head_name=args.head,
    )
    if result.weights is not None:
        last = result.history[-1] if result.history else {}
        summary = {
            "weights": str(result.weights),
            "model": model_spec,
            "epochs": len(result.history),
            "loss": last.get("loss"),
            "accuracy": last.get("accuracy"),
        }
        print(json.dumps(summary))
    return 0
