"""`gram-ray` command line: thin subcommands that parse arguments, load a config and call one function.

Each subcommand's implementation lives with its stage; heavy imports (ray, vllm, torch) happen inside
the handlers so that `gram-ray --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

Handler = Callable[[argparse.Namespace], int | None]


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (dotted key, YAML value); repeatable")


def _cmd_tinykit(args: argparse.Namespace) -> int:
    from gram_ray.tinykit import build_kit

    kit = build_kit(args.out, seed=args.seed, small=args.small, layers=args.layers)
    print(f"tiny kit written to {kit.root}: model {kit.model_dir}, data {kit.labeled.parent}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from gram_ray.config import ValidationConfig, load_config, parse_config, parse_overrides
    from gram_ray.data.convert import convert_file

    overrides = parse_overrides(args.overrides)
    validation = (load_config(args.config, ValidationConfig, overrides) if args.config
                  else parse_config(overrides, ValidationConfig, origin="--set"))
    summary = convert_file(args.input, args.output, fmt=args.format, seed=args.seed, validation=validation)
    print(summary)
    return 0


def _cmd_rounds(args: argparse.Namespace) -> int:
    from gram_ray.data.rounds import split_rounds

    split = split_rounds(args.pool, args.out, args.round_size, args.rounds, exclude=args.exclude)
    for path, rows in zip(split.rounds, split.rows, strict=True):
        print(f"{path}: {rows} pairs")
    left = f"{split.leftover} left over for later rounds ({Path(args.out) / 'leftover.parquet'})"
    print(f"dropped {split.duplicates} repeated and {split.excluded} excluded pairs; "
          f"{left if split.leftover else 'none left over'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from gram_ray.config import TrainConfig, load_config, parse_overrides
    from gram_ray.train import train

    cfg = load_config(args.config, TrainConfig, parse_overrides(args.overrides))
    print(f"model exported to {train(cfg)}")
    return 0


def _apply_config(args: argparse.Namespace):
    from gram_ray.config import ApplyConfig, load_config, parse_overrides

    return load_config(args.config, ApplyConfig, parse_overrides(args.overrides))


def _cmd_rank(args: argparse.Namespace) -> int:
    from gram_ray.apply.rank_file import rank_file
    from gram_ray.apply.ray_judge import judge_backend

    cfg = _apply_config(args)
    judge = judge_backend(cfg.backend, cfg.engine, cfg.kind, cfg.judge)
    print(rank_file(judge, args.input, args.output, args.method, cfg.both_orders, args.best_only))
    return 0


def _cmd_eval_score(args: argparse.Namespace) -> int:
    from gram_ray.eval.harness import check_benchmark, score_results
    from gram_ray.eval.judgebench_outputs import score_judge_outputs
    from gram_ray.eval.report import markdown_table, write_report

    check_benchmark(args.benchmark)
    single = True if args.single_game else None
    if args.file.endswith(".parquet"):
        import pyarrow.parquet as pq

        score = score_results(pq.read_table(args.file), single)
    elif args.benchmark == "judgebench":
        score = score_judge_outputs(args.file, single)
    else:
        raise ValueError(f"{args.benchmark}: score a results Parquet written by `gram-ray eval run`")
    if score.benchmark != args.benchmark:
        raise ValueError(f"{args.file} holds {score.benchmark} results, not {args.benchmark}")
    print(markdown_table([score]))
    if args.out:
        write_report([score], args.out, title=args.benchmark)
    return 0


def _cmd_eval_run(args: argparse.Namespace) -> int:
    from gram_ray.apply.ray_judge import judge_backend
    from gram_ray.eval.harness import load_eval_pairs, run_eval, sample_pairs
    from gram_ray.eval.report import markdown_table

    cfg = _apply_config(args)
    pairs = load_eval_pairs(args.benchmark, args.data, hub=args.hub, seed=args.seed)
    if args.limit:
        pairs = pairs.slice(0, args.limit)
    if args.sample:
        pairs = sample_pairs(pairs, args.sample, args.seed)
    judge = judge_backend(cfg.backend, cfg.engine, cfg.kind, cfg.judge)
    score, paths = run_eval(judge, args.benchmark, pairs, args.out, single_game=not cfg.both_orders)
    print(markdown_table([score]))
    print(f"per-example results: {paths['results']}; quarantined pairs: {paths['rejects']}; "
          f"report: {paths['markdown']}, {paths['json']}")
    return 0


def _cmd_stage(args: argparse.Namespace) -> int:
    """label / prove / score / denoise: Parquet in, a folder of Parquet out; exit 1 if incomplete."""
    from gram_ray import stages
    from gram_ray.config import StageJobConfig, load_config, parse_overrides

    cfg = load_config(args.config, StageJobConfig, parse_overrides(args.overrides))
    if args.command != "denoise" and cfg.engine is None:
        raise ValueError(f"{args.config}: `gram-ray {args.command}` needs an engine section")
    if args.command == "label":
        summary = stages.label_pairs(args.input, args.output, cfg.engine, cfg.judge, round=args.round)
    elif args.command == "prove":
        summary = stages.prove_pairs(args.input, args.output, cfg.engine, cfg.prover, round=args.round)
    elif args.command == "score":
        summary = stages.gram_score(args.input, args.output, cfg.engine, cfg.judge)
    else:
        summary = stages.denoise(args.input, args.output, cfg.filters)
    return 0 if summary.complete else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    from gram_ray.apply.server import serve
    from gram_ray.config import ServeConfig, load_config, parse_overrides

    serve(load_config(args.config, ServeConfig, parse_overrides(args.overrides)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gram-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tinykit", help="build the tiny model, tokenizer and synthetic task data (offline)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true", help="tens of rows per split (tests) instead of the demo's sizes")
    p.add_argument("--layers", type=int, default=2, help="decoder layers of the tiny Llama")
    p.set_defaults(func=_cmd_tinykit)

    p = sub.add_parser("convert", help="read any supported preference format, validate, write pair Parquet")
    p.add_argument("input")
    p.add_argument("output", help="output Parquet file; rejects go next to it")
    p.add_argument("--format", default="auto", help="record format: auto (sniffed), ab, rationale, "
                   "chosen_rejected, hh_rlhf, judgebench, rm_bench, hhh; the file kind (Parquet, JSON lines, "
                   "gzip, JSON array) is always detected")
    p.add_argument("--config", help="ValidationConfig YAML (max_tokens, tokenizer, require_label)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a validation setting (YAML value); repeatable")
    p.add_argument("--seed", type=int, default=0, help="seed for placing chosen on a random side")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("rounds", help="deal an unlabeled pool into self-training rounds: no pair twice, none "
                       "of the labeled or held-out sets (the files for the pipeline's data.unlabeled)")
    p.add_argument("pool", nargs="+", help="pair Parquet files or folders (from gram-ray convert)")
    p.add_argument("--out", required=True, help="folder for round_01.parquet, round_02.parquet, ...")
    p.add_argument("--round-size", type=int, required=True, help="pairs per round (the paper: 500000)")
    p.add_argument("--rounds", type=int, required=True, help="round files to write (the paper: 2)")
    p.add_argument("--exclude", nargs="*", default=[], help="pair Parquet whose ids must not appear in any round "
                   "(the labeled and held-out sets); put it after the pool files")
    p.set_defaults(func=_cmd_rounds)

    p = sub.add_parser("train", help="train on Ray Train + DeepSpeed (SFT, GRAM stage 1/2); export a HF model")
    _add_config_args(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("rank", help="rank each row's responses (or pick the best) with a generative RM")
    _add_config_args(p)
    p.add_argument("input", help="JSONL or Parquet rows: prompt, responses (list), optional reference and id")
    p.add_argument("output", help="output Parquet; rejects go next to it")
    p.add_argument("--method", default="knockout", choices=["reference", "knockout", "scan"],
                   help="reference: eq. 3 reward against each row's reference; knockout: ceil(log2 n) rounds; "
                   "scan: linear scan")
    p.add_argument("--best-only", action="store_true", help="best-of-n only (knockout winner, one linear scan)")
    p.set_defaults(func=_cmd_rank)

    p = sub.add_parser("eval", help="benchmark a reward model or score judge outputs by the official rules")
    eval_sub = p.add_subparsers(dest="eval_command", required=True)
    q = eval_sub.add_parser("run", help="judge a benchmark, write per-example Parquet and a score table")
    _add_config_args(q)
    q.add_argument("--benchmark", required=True, choices=["judgebench", "rm_bench", "hhh", "rewardbench"])
    q.add_argument("--data", help="benchmarks folder (SOURCES.md layout) or one file of the benchmark")
    q.add_argument("--hub", action="store_true", help="load from the Hugging Face hub (needs `datasets`)")
    q.add_argument("--out", required=True, help="output folder")
    subset = q.add_mutually_exclusive_group()
    subset.add_argument("--limit", type=int, default=0, help="first N pairs only (smoke runs)")
    subset.add_argument("--sample", type=int, default=0, help="N pairs drawn at random by --seed, in file order "
                        "(a documented subset that spans the benchmark's groups)")
    q.add_argument("--seed", type=int, default=0, help="seed for placing chosen responses on a side and for --sample")
    q.set_defaults(func=_cmd_eval_run)
    q = eval_sub.add_parser("score", help="score a results Parquet, or a JudgeBench judge-output JSONL")
    q.add_argument("file")
    q.add_argument("--benchmark", required=True, choices=["judgebench", "rm_bench", "hhh", "rewardbench"])
    q.add_argument("--single-game", action="store_true", help="JudgeBench: first game only (--single_game)")
    q.add_argument("--out", help="also write scores.md and scores.json here")
    q.set_defaults(func=_cmd_eval_score)

    for name, help_text in (
        ("label", "judge unlabeled pairs: k votes per order, confidence, consistency (engine, judge sections)"),
        ("prove", "write rationales for labelled pairs, keep the most specific proof (engine, prover sections)"),
        ("score", "GRAM eq. 3 reward of response_a against response_b (engine, judge sections)"),
        ("denoise", "drop weak labels and unsupported rationales, with reasons (filters section)"),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_config_args(p)
        p.add_argument("input", help="Parquet file or folder")
        p.add_argument("output", help="output folder (replaced atomically): Parquet folders + summary.json")
        if name in ("label", "prove"):
            p.add_argument("--round", type=int, default=0, help="self-training round recorded in the rows")
        p.set_defaults(func=_cmd_stage)

    p = sub.add_parser("serve", help="reward server (OpenRLHF /get_reward, /rationale, /health) on vLLM")
    _add_config_args(p)
    p.set_defaults(func=_cmd_serve)

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
