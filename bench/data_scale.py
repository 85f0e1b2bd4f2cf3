"""Paper-scale data plumbing without a model: rows/s and peak memory of each step, at two sizes.

    .venv/bin/python bench/data_scale.py                 # 1.5M unlabeled + 1M labeled rows (and a 1/10 run)
    .venv/bin/python bench/data_scale.py --scale 0.1     # quicker

Steps, each in a fresh process so its peak RSS is its own: generate synthetic pairs (JSONL for the
labeled set, Parquet for the unlabeled pool) -> read + validate + hash ids + write (``convert_file``)
-> split the pool into rounds of 0.5M, excluding labeled ids, never reusing a row (``split_rounds``)
-> stream the merged training set (labeled + every round) once. Memory must not grow with rows: the
last line compares the peak RSS at both sizes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path

WORDS = ("the a response question model answer better worse because clear helpful wrong right step").split()  # noqa: SIM905


def _text(i: int, k: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3 + k) % len(WORDS)] for j in range(12 + (i + k) % 20)) + f" #{i}.{k}"


def generate(folder: str, labeled: int, unlabeled: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gram_ray.data.schemas import PAIR_SCHEMA, pair_id

    root = Path(folder)
    with (root / "labeled.jsonl").open("w") as fh:
        for i in range(labeled):
            fh.write(json.dumps({"prompt": _text(i, 0), "chosen": _text(i, 1), "rejected": _text(i, 2)}) + "\n")
    writer = pq.ParquetWriter(root / "pool.parquet", PAIR_SCHEMA)
    chunk = 100_000
    for start in range(0, unlabeled, chunk):
        rows = []
        for i in range(start, min(start + chunk, unlabeled)):
            j = i + labeled if i % 50 else i  # every 50th pool row repeats a labeled pair: must be excluded
            p, a, b = _text(j, 0), _text(j, 1), _text(j, 2)
            rows.append({"id": pair_id(p, a, b), "prompt": p, "response_a": a, "response_b": b, "label": None,
                         "source": "bench", "meta": "{}"})
        writer.write_table(pa.Table.from_pylist(rows, schema=PAIR_SCHEMA))
    writer.close()
    return {"rows": labeled + unlabeled}


def convert(folder: str) -> dict:
    from gram_ray.data.convert import convert_file

    root = Path(folder)
    summary = convert_file(root / "labeled.jsonl", root / "labeled.parquet", fmt="chosen_rejected")
    return {"rows": summary.records, "written": summary.written, "rejected": summary.rejected}


def split(folder: str, round_size: int, rounds: int) -> dict:
    from gram_ray.data.rounds import split_rounds

    root = Path(folder)
    result = split_rounds([root / "pool.parquet"], root / "rounds", round_size, rounds,
                          exclude=[root / "labeled.parquet"])
    return {"rows_out": sum(result.rows), "excluded": result.excluded, "duplicates": result.duplicates,
            "leftover": result.leftover, "buckets": result.buckets, "largest_bucket": result.largest_bucket}


def merge(folder: str) -> dict:
    """One pass over the labeled set and every round, a row group at a time (``ParquetFile.iter_batches``;
    a pyarrow dataset scan would read files ahead of the consumer, 1.9 GiB at full scale)."""
    import pyarrow.parquet as pq

    from gram_ray.data.io import parquet_files

    root = Path(folder)
    rows = 0
    for path in parquet_files([root / "labeled.parquet", *sorted((root / "rounds").glob("round_*.parquet"))]):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
            rows += batch.num_rows
    return {"rows": rows}


def _child(fn_name: str, args: tuple, queue: mp.Queue) -> None:
    start = time.perf_counter()
    out = globals()[fn_name](*args)
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(out)


def step(fn_name: str, *args: object) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn_name, args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"{fn_name} failed with exit code {proc.exitcode}")
    return out


def run_scale(scale: float) -> dict:
    labeled, unlabeled = int(1_000_000 * scale), int(1_500_000 * scale)
    round_size = int(500_000 * scale)
    folder = tempfile.mkdtemp(prefix="gram-ray-scale-")
    try:
        results = {"generate": step("generate", folder, labeled, unlabeled)}
        results["convert"] = step("convert", folder)
        results["split"] = step("split", folder, round_size, 2)
        results["split"]["rows"] = unlabeled
        results["merge"] = step("merge", folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nscale {scale}: {labeled:,} labeled + {unlabeled:,} unlabeled rows")
    print("| step | rows | seconds | rows/s | peak RSS MiB |\n|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | "
              f"{r['peak_rss_mib']:.0f} |")
    print(f"split: excluded {results['split']['excluded']:,} labeled repeats, "
          f"dropped {results['split']['duplicates']:,} duplicates, leftover {results['split']['leftover']:,}; "
          f"{results['split']['buckets']} buckets, the largest {results['split']['largest_bucket']:,} rows")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1.5M unlabeled + 1M labeled rows")
    args = parser.parse_args()
    small, full = run_scale(args.scale / 10), run_scale(args.scale)
    growth = {k: full[k]["peak_rss_mib"] / small[k]["peak_rss_mib"] for k in ("convert", "split", "merge")}
    print("peak_rss_ratio_10x_rows " + " ".join(f"{k}={v:.2f}" for k, v in growth.items()))


if __name__ == "__main__":
    main()
