"""CPU time and memory of this process and all its descendants (Ray's raylet and workers too),
sampled from ``/proc`` by a background thread.

Ray started from the driver (``ray.init`` without an address) spawns its raylet, which forks the
workers and actors, so every process that works for a job is a descendant of the driver. CPU time
is summed over every process seen (a process that exits between two samples loses at most its
last interval); memory is the peak over samples of the tree's summed RSS and PSS (PSS divides
shared pages, such as Ray's object store, among the processes that map them).
"""

from __future__ import annotations

import os
import threading
import time

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds (user + system), start time in ticks) of ``pid``, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, int(fields[19])


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in bytes (0, 0 when it is gone)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def tree(root: int) -> dict[int, tuple[float, int]]:
    """{pid: (CPU seconds, start ticks)} of ``root`` and its descendants."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = _stat(int(name))
            if s is not None:
                stats[int(name)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out[pid] = stats[pid][1:]
        todo.extend(children.get(pid, ()))
    return out


def _uptime_ticks() -> float:
    """Now, in clock ticks since boot (the unit of a process's start time in /proc/PID/stat)."""
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) * _TICK
    except OSError:
        return 0.0


class TreeSampler:
    """``with TreeSampler() as s: ...`` then ``s.wall_s``, ``s.cpu_s``, ``s.cores_busy``,
    ``s.peak_rss_mib``, ``s.peak_pss_mib`` for the work inside the block.

    Without ``/proc`` (not Linux) the CPU and memory figures are None.
    """

    def __init__(self, interval_s: float = 0.5, root: int | None = None):
        self.interval_s = interval_s
        self.root = root or os.getpid()
        self.available = os.path.exists(f"/proc/{self.root}/stat")
        self._stop = threading.Event()
        self._start: dict[tuple[int, int], float] = {}  # (pid, start ticks) -> CPU s when first seen
        self._last: dict[tuple[int, int], float] = {}
        self.peak_rss = self.peak_pss = 0
        self.processes = 0  # the most processes seen in the tree at once
        self.wall_s = 0.0
        self._t0_ticks = 0.0

    def _sample(self, first: bool = False) -> None:
        rss = pss = 0
        procs = tree(self.root)
        self.processes = max(self.processes, len(procs))
        for pid, (cpu, started) in procs.items():
            key = (pid, started)
            # A process born during the block counts from zero; one that was alive before it (even if
            # first seen later: a sample may miss it) counts from when it was first seen.
            born_inside = not first and started >= self._t0_ticks
            self._start.setdefault(key, 0.0 if born_inside else cpu)
            self._last[key] = cpu
            r, p = _memory(pid)
            rss, pss = rss + r, pss + p
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> TreeSampler:
        self._t0_ticks = _uptime_ticks()
        if self.available:
            self._sample(first=True)
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._t0
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()

    @property
    def cpu_s(self) -> float | None:
        """CPU seconds the tree spent inside the block."""
        if not self.available:
            return None
        return sum(self._last[k] - self._start[k] for k in self._last)

    @property
    def cores_busy(self) -> float | None:
        """Mean number of cores busy: CPU seconds / wall seconds."""
        return None if self.cpu_s is None else self.cpu_s / max(self.wall_s, 1e-9)

    @property
    def peak_rss_mib(self) -> float | None:
        """Peak summed RSS of the tree, MiB (shared pages counted in every process)."""
        return self.peak_rss / 2**20 if self.available else None

    @property
    def peak_pss_mib(self) -> float | None:
        """Peak summed PSS of the tree, MiB (shared pages split among their processes)."""
        return self.peak_pss / 2**20 if self.available else None


def actor_startup(since: float) -> dict[str, dict[str, float]]:
    """Per actor pool of the pipeline run that began at ``since`` (``time.time()``): when its
    first actor began and finished ``__init__`` and when its first call began, in seconds from
    ``since``, read from Ray's task timeline (``ray.timeline``). Empty when Ray keeps no events."""
    import json
    import tempfile
    from pathlib import Path

    import ray

    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        ray.timeline(filename=f.name)
        events = json.loads(Path(f.name).read_text())
    pools: dict[str, dict[str, float]] = {}
    for e in events:
        name = e.get("cat", "").removeprefix("task::")  # e.g. MapWorker(MapBatches(ModelStage)).submit
        if e.get("ph") != "X" or not name.startswith("MapWorker(") or e["ts"] / 1e6 < since:
            continue
        pool = name[len("MapWorker("):name.rindex(")")].replace("MapBatches(", "").replace(")", "")
        start, end = e["ts"] / 1e6 - since, (e["ts"] + e["dur"]) / 1e6 - since
        p = pools.setdefault(pool, {})
        if name.endswith(".__init__"):
            p["init_start_s"] = min(p.get("init_start_s", start), start)
            p["init_end_s"] = min(p.get("init_end_s", end), end)
        elif name.endswith(".submit"):
            p["first_call_s"] = min(p.get("first_call_s", start), start)
    return pools
