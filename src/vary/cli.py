"""The `vary` command line: one entry point, one sub-command per stage of the pipeline.

Each stage module exposes `register(subparsers)`, which adds its parser and sets `func`, a
callable taking the parsed arguments and returning an exit code. Errors the user can fix
(a bad config key, a missing file) are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from vary.config import ConfigError
from vary.reporting import get_logger, setup_logging

# Sub-command modules, in pipeline order: data -> train -> eval / ocr / chat / serve, convert.
COMMAND_MODULES = (
    "vary.data.cli",
    "vary.training.cli",
    "vary.evaluation.cli",
    "vary.inference.cli",
    "vary.convert.cli",
)


class UserError(Exception):
    """An error caused by the user's input, reported as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vary", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UserError, FileNotFoundError) as err:
        get_logger().error("%s", err)
        return 2
    except KeyboardInterrupt:
        get_logger().error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
