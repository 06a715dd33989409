"""`vary data ...`: the data engines on the command line.

    vary data pdf SRC... --out DIR [--split train|heldout] [--unit page|region]
    vary data charts --n N --lang en,zh --out DIR
    vary data latex --n N --lang en,zh --out DIR
    vary data natural IMG_DIR --out DIR
    vary data lines --n N --out DIR [--split train|heldout]
    vary data qa SRC... --out DIR [--format shards|llava]
    vary data export-eval SHARDS... --out SET.jsonl

Every engine takes the same run options (--workers, --shard i/N, --shard-size, --image-format),
an optional YAML file (--config, sections `engine` and the engine's own, see configs/data/) and
`--set section.key=value` overrides; explicit flags win over both.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from vary.config import ConfigError, apply_override, from_dict
from vary.data.config import ChartConfig, EngineConfig, LatexConfig, NaturalConfig, PdfConfig
from vary.data.engine import Job, run_job
from vary.data.splits import SPLITS


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="build training shards from PDFs, charts, LaTeX, photos")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="SOURCE")

    pdf = _engine_parser(commands, "pdf", "real PDF pages: page image + extracted text", cmd_pdf)
    pdf.add_argument("sources", nargs="+", help="PDF files or folders (searched recursively)")
    pdf.add_argument(
        "--split", choices=SPLITS, help="train (default) skips reserved files; heldout takes only them"
    )
    pdf.add_argument("--unit", choices=("page", "region"), help="whole pages (default) or small text regions")

    charts = _engine_parser(commands, "charts", "synthetic charts: image + data as a Python dict", cmd_charts)
    _generator_args(charts)

    latex = _engine_parser(commands, "latex", "generated LaTeX pages: image + markdown/LaTeX", cmd_latex)
    _generator_args(latex)

    lines = _engine_parser(commands, "lines", "rendered words / short lines for small models", cmd_lines)
    lines.add_argument("--n", type=int, help="how many samples to render")
    lines.add_argument("--seed", type=int, help="random seed (the same seed gives the same data)")
    lines.add_argument("--split", choices=("train", "heldout"), help="which part of the text corpus")

    natural = _engine_parser(commands, "natural", "natural-image negatives (empty target text)", cmd_natural)
    natural.add_argument("sources", nargs="+", help="image files or folders")

    qa = _engine_parser(commands, "qa", "Vary-base conversations from shards or LLaVA JSON", cmd_qa)
    qa.add_argument("sources", nargs="+", help="shard folders / .tar shards / LLaVA .json files")
    qa.add_argument("--format", choices=("shards", "llava"), default="shards", help="output layout")

    export = commands.add_parser("export-eval", help="shards -> JSONL + images for the evaluation harness")
    export.add_argument("sources", nargs="+", help="shard folders or .tar shards")
    export.add_argument("--out", required=True, help="the JSONL file to write (images go beside it)")
    export.add_argument("--limit", type=int, help="at most this many samples")
    export.add_argument("--lang", help="keep one language (en / zh)")
    export.add_argument(
        "--every", type=int, default=1, help="keep one sample in N (spreads a set over all documents)"
    )
    export.set_defaults(func=cmd_export_eval)


def cmd_pdf(args: argparse.Namespace) -> int:
    from vary.data.pdf import pdf_job

    engine, cfg = _load(args, "pdf", PdfConfig, {"split": args.split, "unit": args.unit})
    return _run(pdf_job(args.sources, cfg, engine), engine)


def cmd_charts(args: argparse.Namespace) -> int:
    from vary.data.charts import chart_job

    engine, cfg = _load(args, "charts", ChartConfig, _generator_overrides(args))
    return _run(chart_job(cfg, engine), engine)


def cmd_latex(args: argparse.Namespace) -> int:
    from vary.data.latex import latex_job

    engine, cfg = _load(args, "latex", LatexConfig, _generator_overrides(args))
    return _run(latex_job(cfg, engine), engine)


def cmd_lines(args: argparse.Namespace) -> int:
    from vary.data.lines import LinesConfig, lines_job

    engine, cfg = _load(args, "lines", LinesConfig, {"n": args.n, "seed": args.seed, "split": args.split})
    return _run(lines_job(cfg, engine), engine)


def cmd_natural(args: argparse.Namespace) -> int:
    from vary.data.natural import natural_job

    engine, cfg = _load(args, "natural", NaturalConfig, {})
    return _run(natural_job(args.sources, cfg, engine), engine)


def cmd_qa(args: argparse.Namespace) -> int:
    from vary.data.qa import qa_job, write_llava

    engine, _ = _load(args, "qa", None, {})
    if args.format == "llava":
        write_llava(args.sources, Path(engine.out))
        return 0
    return _run(qa_job(args.sources, engine), engine)


def cmd_export_eval(args: argparse.Namespace) -> int:
    from vary.cli import UserError
    from vary.data.export import export_eval

    if args.every < 1:
        raise UserError(f"--every must be >= 1 (got {args.every})")
    export_eval(args.sources, Path(args.out), limit=args.limit, lang=args.lang, every=args.every)
    return 0


def _engine_parser(commands: Any, name: str, help: str, func: Callable[[argparse.Namespace], int]):
    parser = commands.add_parser(name, help=help, description=help)
    parser.add_argument("--out", help="output folder (default: out/data)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument("--shard", help="i/N: take the i-th of N deterministic slices of the work")
    parser.add_argument("--shard-size", type=int, help="samples per output shard (default 1000)")
    parser.add_argument("--image-format", choices=("png", "jpg"), help="image encoding (default jpg)")
    parser.add_argument("--config", type=Path, help="YAML with `engine:` and per-engine sections")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override")
    parser.set_defaults(func=func)
    return parser


def _generator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, help="how many samples to generate")
    parser.add_argument("--lang", help="comma-separated languages, e.g. en,zh")
    parser.add_argument("--seed", type=int, help="random seed (the same seed gives the same data)")


def _generator_overrides(args: argparse.Namespace) -> dict[str, Any]:
    langs = [x.strip() for x in args.lang.split(",") if x.strip()] if args.lang else None
    return {"n": args.n, "langs": langs, "seed": args.seed}


def _load(
    args: argparse.Namespace, section: str, cls: type | None, flags: dict[str, Any]
) -> tuple[EngineConfig, Any]:
    """Engine + source config from --config, then --set, then explicit flags (None = not given).

    `cls` is the source's config dataclass (None for sources without settings).
    """
    source = str(args.config) if args.config else "<command line>"
    raw: dict[str, Any] = {}
    if args.config:
        raw = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict) or not set(raw) <= {"engine", section}:
            raise ConfigError(f"{source}: top level may only hold the sections 'engine' and {section!r}")
    for item in args.set:
        apply_override(raw, item, source="--set")
    engine_flags = {
        "out": args.out,
        "workers": args.workers,
        "shard": args.shard,
        "shard_size": args.shard_size,
        "image_format": args.image_format,
    }
    for name, flag_values in (("engine", engine_flags), (section, flags)):
        raw.setdefault(name, {}).update({k: v for k, v in flag_values.items() if v is not None})
    engine = from_dict(EngineConfig, raw["engine"], source, "engine")
    return engine, from_dict(cls, raw[section], source, section) if cls else None


def _run(job: Job, engine: EngineConfig) -> int:
    summary = run_job(job, engine)
    return 0 if summary["samples"] or not job.units else 1
