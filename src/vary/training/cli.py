"""`vary train CONFIG.yaml [key=value ...] [--resume]`: the same command on one CPU or many GPUs.

vary train configs/quickstart.yaml
vary train configs/train/vary-tiny.yaml optim.max_steps=20000 --resume
accelerate launch --config_file configs/accelerate/ddp.yaml -m vary.cli train configs/train/vary-tiny.yaml
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train Vary-tiny (a new vision vocabulary) or the Vary-base stages",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("config", help="training YAML (see configs/train/ and docs/training.md)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=1e-4 data.num_workers=4"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the output folder's last checkpoint"
    )
    parser.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from vary.training.config import load_train_config
    from vary.training.trainer import train

    train(load_train_config(args.config, args.overrides), resume=args.resume)
    return 0
