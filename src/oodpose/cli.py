"""Command line: ``python -m oodpose {synthesize,prepare,train,fetch-weights,evaluate}``.

The workflow's scripts call the same library functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from oodpose.errors import InputError


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oodpose", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synthesize", help="write the synthetic Horse-30 dataset in Horse-10's layout")
    s.add_argument("out")
    s.add_argument("--individuals", type=int, default=30)
    s.add_argument("--frames", type=int, default=8100, help="total frames over all individuals")
    s.add_argument("--width", type=int, default=288)
    s.add_argument("--height", type=int, default=162)
    s.add_argument("--train-individuals", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("prepare", help="read, split and decode a dataset into a cache")
    s.add_argument("dataset")
    s.add_argument("out")
    s.add_argument("--fractions", type=_int_list, default=[5, 50])
    s.add_argument("--scale-bodyparts", nargs=2, default=["Nose", "Eye"])
    s.add_argument("--splits", type=int, default=3, help="splits to generate when there are no official ones")
    s.add_argument("--train-individuals", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("train", help="train one cell")
    s.add_argument("cache")
    s.add_argument("out")
    s.add_argument("--backbone", required=True)
    s.add_argument("--init", choices=["imagenet", "scratch"], default="imagenet")
    s.add_argument("--split", type=int, default=1)
    s.add_argument("--fraction", type=int, default=50)
    s.add_argument("--iterations", type=int, default=30000)
    s.add_argument("--ilr", type=float)
    s.add_argument("--dt", type=float)
    s.add_argument("--cycles", type=int)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--snapshot-every", type=int, default=5000)
    s.add_argument("--curve-iterations", type=_int_list, default=[])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int)
    s.add_argument("--workers", type=int)
    s.add_argument("--no-amp", dest="amp", action="store_false", help="full precision on CUDA")
    s.add_argument("--compile", action="store_true", help="torch.compile the network (slow warm-up)")
    s.add_argument("--weights", help="a .pth/.safetensors file of ImageNet weights for the backbone")
    s.add_argument("--backbones-table", help="the backbone table (default config/backbones.tsv)")

    s = sub.add_parser("fetch-weights", help="download a backbone's timm weights to a file (needs internet)")
    s.add_argument("backbone")
    s.add_argument("out")
    s.add_argument("--backbones-table", help="the backbone table (default config/backbones.tsv)")

    s = sub.add_parser("evaluate", help="evaluate one trained cell")
    s.add_argument("train_dir")
    s.add_argument("cache")
    s.add_argument("--predictions", required=True)
    s.add_argument("--metrics", required=True)
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int)
    s.add_argument("--batch-size", type=int, default=32)
    return p


def run(args: argparse.Namespace) -> None:
    if args.command == "synthesize":
        from oodpose.data.synthetic import generate

        generate(
            args.out,
            args.individuals,
            args.frames,
            (args.width, args.height),
            n_train_individuals=args.train_individuals,
            seed=args.seed,
        )
    elif args.command == "prepare":
        from oodpose.data.cache import DatasetSettings, prepare_cache

        prepare_cache(
            args.dataset,
            args.out,
            DatasetSettings(
                fractions=tuple(args.fractions),
                scale_bodyparts=tuple(args.scale_bodyparts),
                n_splits=args.splits,
                n_train_individuals=args.train_individuals,
                seed=args.seed,
            ),
        )
    elif args.command == "train":
        from oodpose.train import TrainConfig, train

        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        options = {k: v for k, v in vars(args).items() if k in fields and v is not None}
        train(TrainConfig(**options))
    elif args.command == "fetch-weights":
        from oodpose.backbones import DEFAULT_TABLE, get_backbone
        from oodpose.models import fetch_weights

        fetch_weights(get_backbone(args.backbone, args.backbones_table or DEFAULT_TABLE), args.out)
    elif args.command == "evaluate":
        from oodpose.evaluate import evaluate

        evaluate(args.train_dir, args.cache, args.predictions, args.metrics, args.device, args.threads, args.batch_size)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        run(args)
    except InputError as err:
        print(f"oodpose {args.command}: error: {err}", file=sys.stderr)
        sys.exit(2)
