"""Row-level resume of inference stages: settled engine rows are kept in ``<out_dir>.partial/`` as they
stream, and a re-run sends the engine only the requests that no earlier attempt settled.

Why not Ray Data's checkpointing (``DataContext.checkpoint_config``): it filters *input* rows by a unique
id column in a read -> map -> write plan. Here one pair expands into several requests (votes, orders,
proofs), a stage may run two engine passes, and pairs are aggregated in the driver after a sort, so a
pair id is neither unique per engine row nor "done" when one of its rows is. Every engine row is keyed
instead by (``id``, ``sub``), and the requests are anti-joined against what was written.

Layout: ``resume.json`` (a fingerprint of the stage's inputs, settings, model files and the gram-ray
version, since the engine rows' layout is the code's; a folder with another fingerprint is discarded
rather than mixed in) and one sub-folder per engine pass holding
``a<attempt>-<chunk>.parquet`` files of SETTLED_SCHEMA rows plus ``_complete`` once the pass finished.
The driver writes each file atomically (``data.files.atomic_write``), so a killed driver leaves whole
files only. On load an unreadable file is dropped (its rows are computed again) and rows that an earlier
attempt already holds are dropped from later files, so no (id, sub) is counted twice; several rows with
one key inside one attempt are genuine duplicate inputs and are kept for the runner to reject.

The runner asks a ``Checkpoint`` three things per engine pass, in this order: which requests are still
``pending``, to ``keep`` the rows the engine settled for them, and the ``files`` holding all of the pass's
rows.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gram_ray import __version__
from gram_ray.config import EngineConfig, config_hash
from gram_ray.data.files import atomic_write, atomic_write_text, fingerprint
from gram_ray.stages.rows import SETTLED_SCHEMA, settled_batches

if TYPE_CHECKING:
    from ray.data import Dataset

RESUME = "resume.json"
COMPLETE = "_complete"
CHUNK_ROWS = 4096  # settled rows per checkpoint file at most ...
CHUNK_SECONDS = 30.0  # ... and at most this many seconds of engine work lost to a kill
_CHUNK = re.compile(r"a(\d+)-(\d+)\.parquet")


def _keys(table: pa.Table) -> pa.Array:
    """One string per row: ``id`` and ``sub`` joined by a separator neither contains."""
    return pc.binary_join_element_wise(table.column("id"), table.column("sub"), "\x1f").combine_chunks()


def _unsettled(batch: pa.Table, done: pa.Array) -> pa.Table:
    return batch.filter(pc.invert(pc.is_in(_keys(batch), value_set=done)))


def _write_table(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


class Checkpoint:
    """The partial folder of one stage run (see the module docstring); ``open`` it, pass it to
    ``runner.generate`` for every engine pass and to ``outputs.write_stage``, which clears it."""

    def __init__(self, folder: Path, stage: str, attempt: int):
        self.folder, self.stage, self.attempt = folder, stage, attempt
        self.resumed: dict[str, int] = {}  # engine pass -> rows taken from earlier attempts
        self.sent: dict[str, int] = {}  # engine pass -> rows settled by the engine in this attempt
        self._files: dict[str, list[Path]] = {}  # engine pass -> its chunk files so far

    @classmethod
    def open(cls, out_dir: str | Path, stage: str, source: str | Path | Dataset, engine: EngineConfig, settings: object
             ) -> Checkpoint | None:
        """The checkpoint for writing ``out_dir`` from ``source`` (a Parquet path; a Ray Dataset has no
        stable identity, so it gets none) with ``engine`` and the stage's other ``settings``."""
        if not isinstance(source, (str, Path)):
            return None
        out_dir = Path(out_dir)
        folder = out_dir.with_name(f"{out_dir.name}.partial")
        model = Path(engine.model)
        identity = config_hash({"stage": stage, "inputs": fingerprint(Path(source).resolve()), "engine": engine,
                                "model": fingerprint(model) if model.exists() else engine.model,
                                "settings": settings, "gram_ray": __version__})
        previous = cls._state(folder)
        if previous.get("fingerprint") != identity:
            if folder.exists():
                print(f"[{stage}] discarding {folder}: written for other inputs or settings", flush=True)
                shutil.rmtree(folder)
            previous = {}
        attempt = previous.get("attempts", 0) + 1
        atomic_write_text(folder / RESUME, json.dumps({"fingerprint": identity, "attempts": attempt}) + "\n")
        return cls(folder, stage, attempt)

    @staticmethod
    def _state(folder: Path) -> dict:
        try:
            return json.loads((folder / RESUME).read_text())
        except (OSError, ValueError):
            return {}

    def pending(self, name: str, requests: Dataset) -> Dataset | None:
        """The requests of engine pass ``name`` that no earlier attempt settled, or None
        when an earlier attempt finished the pass."""
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        files, done = self._load(folder)
        self._files[name] = files
        self.resumed[name], self.sent[name] = len(done), 0
        if (folder / COMPLETE).exists():
            print(f"[{self.stage}] {name}: all {len(done)} engine rows were settled by an earlier attempt", flush=True)
            return None
        if not len(done):
            return requests
        print(f"[{self.stage}] {name}: resuming, {len(done)} engine rows settled by an earlier attempt; "
              "sending only the others to the engine", flush=True)
        return requests.map_batches(_unsettled, batch_format="pyarrow", fn_kwargs={"done": done})

    def keep(self, name: str, settled: Dataset) -> None:
        """Stream ``settled`` into chunk files of this attempt: the first rows as soon as they
        settle, then every CHUNK_ROWS rows or CHUNK_SECONDS, whichever comes first; then mark the pass
        complete."""
        folder = self.folder / name
        written: list[Path] = []
        buffer: list[pa.Table] = []
        last = float("-inf")

        def flush() -> None:
            path = folder / f"a{self.attempt:04d}-{len(written):05d}.parquet"
            table = pa.concat_tables(buffer)
            _write_table(table, path)
            written.append(path)
            buffer.clear()
            self.sent[name] += table.num_rows
            print(f"[{self.stage}] {name}: {self.sent[name]} engine rows settled and checkpointed", flush=True)

        for batch in settled_batches(settled):
            buffer.append(batch)
            if sum(t.num_rows for t in buffer) >= CHUNK_ROWS or time.monotonic() - last >= CHUNK_SECONDS:
                flush()
                last = time.monotonic()
        if buffer:
            flush()
        self._files[name] += written
        (folder / COMPLETE).touch()

    def files(self, name: str) -> list[Path]:
        """The files holding every settled row of engine pass ``name``, earlier attempts' and this one's."""
        return list(self._files[name])

    def _load(self, folder: Path) -> tuple[list[Path], pa.Array]:
        """(the pass's intact chunk files, the keys of their rows), after dropping unreadable files,
        temp files of killed writes and rows an earlier attempt already holds."""
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink()
        chunks: dict[int, list[Path]] = {}
        for path in sorted(folder.glob("*.parquet")):
            match = _CHUNK.fullmatch(path.name)
            if match:
                chunks.setdefault(int(match.group(1)), []).append(path)
        files, keys = [], []
        for attempt in sorted(chunks):
            earlier = pa.concat_arrays(keys) if keys else None
            for path in chunks[attempt]:
                try:
                    table = pq.read_table(path, schema=SETTLED_SCHEMA)
                except (pa.ArrowException, OSError) as exc:  # truncated or corrupt: its rows are computed again
                    print(f"[{self.stage}] dropping unreadable checkpoint file {path.name}: {exc}", flush=True)
                    path.unlink()
                    (folder / COMPLETE).unlink(missing_ok=True)  # its rows must go to the engine again
                    continue
                if earlier is not None:
                    fresh = table.filter(pc.invert(pc.is_in(_keys(table), value_set=earlier)))
                    if fresh.num_rows < table.num_rows:
                        print(f"[{self.stage}] {path.name}: dropping {table.num_rows - fresh.num_rows} rows an "
                              "earlier attempt already settled", flush=True)
                        table = fresh
                        if table.num_rows:
                            _write_table(table, path)
                        else:
                            path.unlink()
                if table.num_rows:
                    files.append(path)
                    keys.append(_keys(table))
        return files, (pa.concat_arrays(keys) if keys else pa.array([], pa.string()))

    def clear(self) -> None:
        """Forget the partial rows once the stage's outputs are in place."""
        shutil.rmtree(self.folder, ignore_errors=True)
