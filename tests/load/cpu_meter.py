"""Where a capacity run's CPU goes (tests/load/bench.py): the seconds each part of the stack
spent while one route was measured, so that a route's rate can be read against what the whole
machine spent on each of its requests.

The parts are process trees: the portal's gunicorn, the yardstick's, the RQ workers, the fake
gateway, every PostgreSQL server (postmaster and backends) and Redis, each counted with the
children it has waited for; and locust, a child of the bench, by the bench's own children's
usage (`RUSAGE_CHILDREN` grows when `subprocess.run` has waited for it).
"""

import resource
import time
from dataclasses import dataclass

import psutil

# Process names counted wherever they run: the machine's shared servers are idle meanwhile.
SERVERS = {"PostgreSQL": "postgres", "Redis": "redis-server"}
LOCUST = "locust"


@dataclass(frozen=True)
class Spent:
    """CPU seconds per part over `seconds` of wall time."""

    seconds: float
    parts: dict[str, float]

    def per_request_ms(self, requests: int) -> dict[str, float]:
        return {part: spent / requests * 1000 for part, spent in self.parts.items()}

    def busy(self) -> float:
        """The share of the machine's cores the parts kept busy."""
        return sum(self.parts.values()) / (self.seconds * psutil.cpu_count())


class Meter:
    """`Meter({"portal": [pid], ...})`; `start()` before a run, `spent()` after it."""

    def __init__(self, trees: dict[str, list[int]]):
        self.trees = trees
        self._before: dict[str, float] = {}
        self._started = 0.0

    def start(self) -> None:
        self._before = self._now()
        self._started = time.monotonic()

    def spent(self) -> Spent:
        after = self._now()
        parts = {part: after[part] - self._before.get(part, 0.0) for part in after}
        return Spent(time.monotonic() - self._started, parts)

    def _now(self) -> dict[str, float]:
        totals = {part: sum(_tree_cpu(pid) for pid in pids) for part, pids in self.trees.items()}
        for part, name in SERVERS.items():
            totals[part] = sum(_tree_cpu(process.pid) for process in _roots_named(name))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        totals[LOCUST] = children.ru_utime + children.ru_stime
        return totals


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live descendants and the children it has waited for."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _roots_named(name: str) -> list[psutil.Process]:
    """The processes of that name whose parent is not one too (each server's first process)."""
    roots = []
    for process in psutil.process_iter(["name"]):
        try:
            parent = process.parent()
            if process.info["name"] == name and (parent is None or parent.name() != name):
                roots.append(process)
        except psutil.NoSuchProcess:
            continue
    return roots
