"""``gram-ray serve`` in a child process, for notebooks, benchmarks and tests that need a live server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(cfg: Mapping[str, Any], folder: str | Path, env: Mapping[str, str] | None = None,
            start_timeout_s: float = 600.0, extra_args: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """(URL, process) of a server run with ``cfg`` (a ServeConfig as a dict; ``port`` 0 or unset = a free
    one) once ``/health`` answers 200; the server is stopped on exit. Its log is ``folder/serve.log``."""
    import httpx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"host": "127.0.0.1", **cfg}
    if not cfg.get("port"):
        cfg["port"] = free_port()
    path = folder / "serve.yaml"
    path.write_text(yaml.safe_dump(dict(cfg)))
    log_path = folder / "serve.log"
    with log_path.open("w") as log:
        # its own process group: stopping it also stops vLLM's engine-core children, even mid-start
        proc = subprocess.Popen([sys.executable, "-m", "gram_ray.cli", "serve", "--config", str(path), *extra_args],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                start_new_session=True)
        url = f"http://{cfg['host']}:{cfg['port']}"
        deadline = time.monotonic() + start_timeout_s
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not healthy after {start_timeout_s} s: {log_path.read_text()[-3000:]}")
                time.sleep(1)
            yield url, proc
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGTERM to the server's process group (a clean engine shutdown), SIGKILL to what is left after it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    deadline = time.monotonic() + 10
    with contextlib.suppress(ProcessLookupError):
        while time.monotonic() < deadline:  # the group outlives the server while an engine core winds down
            os.killpg(proc.pid, 0)
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
