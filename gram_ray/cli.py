"""`gram-ray` command line: thin subcommands that parse arguments, load a config and call one function.

Each subcommand's implementation lives with its stage; heavy imports (ray, vllm, torch) happen inside
the handlers so that `gram-ray --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int | None]


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (dotted key, YAML value); repeatable")


def _cmd_tinykit(args: argparse.Namespace) -> int:
    from gram_ray.tinykit import build_kit

    paths = build_kit(args.out, seed=args.seed)
    print(f"tiny kit written to {args.out}: {paths}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from gram_ray.data.convert import convert_file

    summary = convert_file(args.input, args.output, fmt=args.format, seed=args.seed)
    print(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gram-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tinykit", help="build the tiny model, tokenizer and synthetic task data (offline)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_tinykit)

    p = sub.add_parser("convert", help="read any supported preference format, validate, write pair Parquet")
    p.add_argument("input")
    p.add_argument("output", help="output Parquet file; rejects go next to it")
    p.add_argument("--format", default="auto", help="auto, parquet, jsonl, chosen_rejected, hh_rlhf, "
                   "judgebench, rm_bench, hhh")
    p.add_argument("--seed", type=int, default=0, help="seed for placing chosen on a random side")
    p.set_defaults(func=_cmd_convert)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # config and input errors: message, no traceback
        print(f"gram-ray {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
