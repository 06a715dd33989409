"""`vary convert`: a released Vary / GOT-OCR2 checkpoint folder -> a Vary model folder."""

from __future__ import annotations

import argparse

import torch

from vary.convert.official import FORMATS, convert_checkpoint

DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert official Vary / GOT-OCR2 weights into a Vary model folder",
        description=__doc__,
    )
    parser.add_argument("source", help="the downloaded checkpoint folder (weights, config.json, tokenizer)")
    parser.add_argument("--out", required=True, help="output model folder (for vary ocr --model, training)")
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", *FORMATS],
        help="release layout (default: from key names)",
    )
    parser.add_argument(
        "--dtype", default="auto", choices=list(DTYPES), help="weights dtype (default: the checkpoint's)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    convert_checkpoint(args.source, args.out, args.format, DTYPES[args.dtype])
    return 0
