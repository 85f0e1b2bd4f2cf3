"""What is left of a driver's private Ray cluster (``gram_ray.run.session.connect_ray`` without an address)
once the driver is SIGKILLed, and whether it stands in the way of a re-run.

Ray's GCS, raylet, dashboard and log monitor die with the driver (Ray ties them to it with
PR_SET_PDEATHSIG), its workers with the raylet. The raylet's two agents, ``ray::DashboardAgent`` and
``ray::RuntimeEnvAgent``, notice the raylet's death at once but then try for 60 s to report it to the GCS,
which is dead too, and only then exit. They share the driver's process group, so killing the group (what
``timeout``, a job scheduler or ``kill -9 -<pgid>`` does) takes them along at once. A re-run starts a
cluster of its own: it reuses nothing of the old one and nothing of the old one hinders it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
DRIVER = ("import time, ray; from gram_ray.run.session import connect_ray; connect_ray(local_cpus=1); "
          "print(ray.get(ray.remote(lambda: 'ready').remote()), flush=True); time.sleep(600)")


def _start_driver() -> tuple[subprocess.Popen, dict[int, str]]:
    """A driver with its own private cluster, in its own process group, once a task has run on it; with
    its cluster's processes (pid -> command line)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert driver.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30  # the raylet may still be starting its agents
    while True:
        cluster = {p.pid: " ".join(p.cmdline()) for p in psutil.Process(driver.pid).children(recursive=True)}
        if len(_agents(cluster)) == len(AGENTS) or time.monotonic() > deadline:
            return driver, cluster
        time.sleep(0.2)


def _alive(pids) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _wait_gone(pids, seconds: float) -> float:
    """Seconds until none of ``pids`` is alive (at most ``seconds``)."""
    began = time.monotonic()
    while _alive(pids) and time.monotonic() - began < seconds:
        time.sleep(0.2)
    return time.monotonic() - began


def _agents(cluster: dict[int, str]) -> dict[str, int]:
    return {name: pid for pid, cmd in cluster.items() for name in AGENTS if cmd.startswith(name)}


def test_a_sigkilled_drivers_agents_exit_within_about_a_minute_and_a_rerun_starts_its_own_cluster():
    started: list[int] = []
    try:
        first, cluster = _start_driver()
        started += [first.pid, *cluster]
        agents = _agents(cluster)
        assert sorted(agents) == sorted(AGENTS), cluster
        os.kill(first.pid, signal.SIGKILL)  # the driver alone, as `kill -9 <pid>`
        first.wait()
        killed = time.monotonic()
        core = set(cluster) - set(agents.values())
        assert _wait_gone(core, 10) < 10, {p: cluster[p] for p in _alive(core)}  # GCS, raylet, workers: at once

        second, rerun = _start_driver()  # the re-run, while the old agents live on
        started += [second.pid, *rerun]
        assert _alive(agents.values()) == set(agents.values())  # still there when the re-run is ready...
        assert not set(agents.values()) & set(rerun)  # ...and not the re-run's: it has agents of its own
        assert sorted(_agents(rerun)) == sorted(AGENTS)

        assert _wait_gone(agents.values(), 120) < 120, "the killed driver's agents outlived it by 2 minutes"
        lived = time.monotonic() - killed
        assert 50 < lived < 120, lived  # Ray's 60 s report to the dead GCS

        os.killpg(second.pid, signal.SIGKILL)  # the re-run's whole process group
        second.wait()
        assert _wait_gone(rerun, 10) < 10, {p: rerun[p] for p in _alive(rerun)}  # agents included
    finally:
        for pid in _alive(started):  # only the processes this test started
            os.kill(pid, signal.SIGKILL)
