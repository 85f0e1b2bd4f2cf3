"""Writing so that readers never see half a file or half a folder, and fingerprinting what was written.

``atomic_write`` writes under a temporary name in the target's folder (names starting with "." and
ending in ".tmp", which every reader here skips), syncs the bytes to disk and renames, so a killed
process leaves either the old file or the new one. ``replace_folder`` does the same for a whole output
folder. ``fingerprint`` is the one identity of a file or folder that resume decisions compare: size and
SHA-256 of every file, so a rewritten file counts as changed even where size and time would not tell.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temp_path)``, then move the synced temp file to ``path``; on failure remove it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def replace_folder(tmp: Path, out_dir: Path) -> None:
    """Rename folder ``tmp`` to ``out_dir``; an older ``out_dir`` is moved aside first and removed after."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old)


def visible_files(path: Path) -> list[Path]:
    """``path`` itself, or every file under folder ``path`` whose name does not start with "."."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: Path) -> dict[str, dict]:
    """Relative file name -> size and SHA-256, for every visible file of a file or folder."""
    root = path if path.is_dir() else path.parent
    return {str(p.relative_to(root)): {"bytes": p.stat().st_size, "sha256": file_digest(p)}
            for p in visible_files(path)}
