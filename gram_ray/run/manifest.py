"""Run folder and manifest: what makes a re-run of the same command resume instead of redo.

A stage counts as finished only once its entry is in ``manifest.json``, written atomically after its
outputs are complete. The entry records the stage's config hash and, for every output file, its size
and SHA-256, so a later run skips the stage only if the files on disk are exactly the ones recorded:
a half-written, truncated or corrupted file sends the stage back to work instead of being trusted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gram_ray.data.files import atomic_write_text, fingerprint, visible_files
from gram_ray.data.io import parquet_rows

MANIFEST = "manifest.json"


class ConfigChangedError(RuntimeError):
    """A finished stage is asked to run again with different settings."""


class CorruptOutputError(RuntimeError):
    """A finished stage's recorded output no longer matches what is on disk."""


@dataclass(frozen=True)
class StageResult:
    name: str
    outputs: dict[str, str]  # output name -> path (file or folder)
    rows: dict[str, int]  # output name -> row count (Parquet outputs)
    info: dict  # anything the stage returns for reports (counts per reason, accuracy, ...)
    seconds: float
    skipped: bool


def _parquet_rows(path: Path) -> int | None:
    files = [p for p in visible_files(path) if p.suffix == ".parquet"]
    if not files:
        return None
    return parquet_rows(files)


class RunDir:
    """``runs/<name>/``: stage outputs in sub-folders and the manifest that records finished stages."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()  # Ray workers run elsewhere: every recorded path is absolute
        self._lock = threading.Lock()  # independent stages may finish at once (pipelines run branches in threads)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            return {"stages": {}}
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (ValueError, OSError) as exc:  # written atomically, so this is outside damage: do not guess
            raise CorruptOutputError(f"{self.manifest_path} is unreadable ({exc}); restore it, or move the run "
                                     f"folder aside to start the run over") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
            raise CorruptOutputError(f"{self.manifest_path} is not a gram-ray manifest (no 'stages' object)")
        return manifest

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def finished(self, name: str) -> dict | None:
        return self.manifest()["stages"].get(name)

    def verify(self, name: str) -> None:
        """Raise CorruptOutputError unless every recorded output file is on disk, byte for byte."""
        entry = self.finished(name)
        if entry is None:
            raise CorruptOutputError(f"stage {name!r} is not recorded as finished")
        for out_name, rec in entry["outputs"].items():
            path = Path(rec["path"])
            if not path.exists():
                raise CorruptOutputError(f"stage {name!r}: output {out_name} missing at {path}")
            if fingerprint(path) != rec["files"]:
                raise CorruptOutputError(f"stage {name!r}: output {out_name} at {path} differs from the manifest")

    def record(self, name: str, config_hash: str, outputs: dict[str, str], info: dict, seconds: float) -> StageResult:
        out_rec, rows = {}, {}
        for out_name, p in outputs.items():
            path = Path(p)
            if not path.exists():
                raise FileNotFoundError(f"stage {name!r} reported output {out_name} at {path}, which does not exist")
            n = _parquet_rows(path)
            out_rec[out_name] = {"path": str(path), "rows": n, "files": fingerprint(path)}
            if n is not None:
                rows[out_name] = n
        self.adopt(name, {
            "config_hash": config_hash,
            "outputs": out_rec,
            "info": info,
            "seconds": round(seconds, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        return StageResult(name, dict(outputs), rows, info, seconds, skipped=False)

    def adopt(self, name: str, entry: dict) -> None:
        """Record ``entry`` as stage ``name``'s: one this run made, or another run's finished entry as it is,
        its outputs where that run keeps them."""
        with self._lock:
            manifest = self.manifest()
            manifest["stages"][name] = entry
            atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    def forget(self, name: str) -> None:
        with self._lock:
            manifest = self.manifest()
            if manifest["stages"].pop(name, None) is not None:
                atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    def run_stage(
        self,
        name: str,
        config_hash: str,
        fn: Callable[[], tuple[dict[str, str], dict]],
        redo: bool = False,
    ) -> StageResult:
        """Run ``fn`` unless the stage is finished with the same config and intact outputs.

        ``fn`` returns (outputs, info). A changed config for a finished stage is refused unless
        ``redo``; a finished stage whose files changed on disk is run again, with a warning.
        """
        entry = self.finished(name)
        if entry is not None and not redo:
            if entry["config_hash"] != config_hash:
                raise ConfigChangedError(
                    f"stage {name!r} already finished in {self.root} with other settings "
                    f"(config hash {entry['config_hash']} != {config_hash}); pass --redo {name} to run it "
                    f"again, or use a new run name"
                )
            try:
                self.verify(name)
            except CorruptOutputError as exc:
                print(f"[gram-ray] {exc}; running stage {name!r} again")
            else:
                outputs = {k: v["path"] for k, v in entry["outputs"].items()}
                rows = {k: v["rows"] for k, v in entry["outputs"].items() if v["rows"] is not None}
                print(f"[gram-ray] stage {name}: already finished, skipped")
                return StageResult(name, outputs, rows, entry["info"], entry["seconds"], skipped=True)
        self.forget(name)
        print(f"[gram-ray] stage {name}: running")
        start = time.monotonic()
        outputs, info = fn()
        result = self.record(name, config_hash, outputs, info, time.monotonic() - start)
        print(f"[gram-ray] stage {name}: done in {result.seconds:.1f}s {result.rows or ''}")
        return result
