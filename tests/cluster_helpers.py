"""A real two-node Ray cluster on this machine, for the `cluster`-marked tests.

Each node is a ``ray start --block`` process of this virtual environment with its own ``--temp-dir``
and its own ports, so it runs beside any other Ray on the machine. Token authentication is on
(``RAY_AUTH_MODE=token``) with a token made for this cluster (``RAY_AUTH_TOKEN_PATH``), so
``~/.ray/auth_token`` is neither read nor written. Stopping sends SIGTERM to the two ``ray start``
processes (each then kills the processes of its node) and kills, by pid, whatever process is left
whose command line names this cluster's folder: never ``ray stop``, which stops every Ray on the
machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Variables of the caller's shell that would point the CLI at another cluster or another token.
_FOREIGN_RAY_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli() -> str:
    """The `ray` command of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise RuntimeError("no `ray` command beside the interpreter or on PATH")
    return found


def wait_until(check, timeout_s: float, what: str, interval_s: float = 1.0):
    """Poll ``check()`` until it returns a truthy value; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


class LocalRayCluster:
    """Head (``head_cpus``) and one worker node (``worker_cpus``) under ``base``; a context manager."""

    def __init__(self, base: Path, head_cpus: int = 1, worker_cpus: int = 2, start_timeout_s: float = 180):
        self.base = Path(base)
        self.head_cpus, self.worker_cpus, self.start_timeout_s = head_cpus, worker_cpus, start_timeout_s
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.token = secrets.token_hex(32)
        self.token_path = self.base / "auth_token"
        self.env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_RAY_VARS}
        self.env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(self.token_path),
            # SIGTERM to `ray start --block` first drains the node for up to 30 s; nothing to drain here.
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
            RAY_USAGE_STATS_ENABLED="0",
            # Job drivers run `python ...`: this environment's interpreter, with fv2es installed.
            PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        )
        self._procs: list[tuple[str, subprocess.Popen, Path]] = []

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.token_path.write_text(self.token)
        self.token_path.chmod(0o600)
        self._spawn("head", ["--head", f"--port={self.gcs_port}", f"--num-cpus={self.head_cpus}",
                             "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                             f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}"])
        wait_until(lambda: self._alive() and self._api("/api/version", ok_only=True), self.start_timeout_s,
                   "the head node's dashboard")
        self._spawn("worker", [f"--address=127.0.0.1:{self.gcs_port}", f"--num-cpus={self.worker_cpus}"])
        wait_until(lambda: self._alive() and len(self.alive_nodes()) == 2, self.start_timeout_s,
                   "both nodes to join")

    def _spawn(self, name: str, args: list[str]) -> None:
        # Two nodes on one machine: each its own temp folder and agent port (the default, 52365, is fixed);
        # the other ports Ray picks at random. Ray resolves 127.0.0.1 to the machine's address.
        args = [*args, "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--num-gpus=0",
                "--object-store-memory=300000000", "--min-worker-port=0", "--max-worker-port=0",
                f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={self.base / name}"]
        log = self.base / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([ray_cli(), "start", *args],
                                    stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self._procs.append((name, proc, log))

    def _alive(self) -> bool:
        for name, proc, _ in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"`ray start` of the {name} node exited ({proc.returncode}):\n{self.logs()}")
        return True

    def stop(self, timeout_s: float = 60) -> None:
        for _, proc, _ in reversed(self._procs):  # the worker first, then the head
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    _kill_group(proc.pid)
                    proc.wait(timeout=10)
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """SIGKILL, by pid, any process still running from this cluster's folder (a killed node's orphans)."""
        for pid in self.leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def leftover_pids(self) -> list[int]:
        """Processes whose command line names this cluster's folder (Linux /proc; empty elsewhere)."""
        marker = str(self.base).encode()
        pids = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (entry / "cmdline").read_bytes() and int(entry.name) != os.getpid():
                    pids.append(int(entry.name))
            except OSError:
                pass
        return pids

    # -- talking to the cluster ------------------------------------------------------------------------

    def _api(self, path: str, token: str | None = "", ok_only: bool = False):
        """GET the dashboard's ``path`` (with this cluster's token unless ``token`` is None): (status, body)."""
        request = urllib.request.Request(self.dashboard_url + path)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token or self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError):
            return None if ok_only else (None, "")
        if ok_only:
            return body if status == 200 else None
        return status, body

    def get(self, path: str, token: str | None = ""):
        return self._api(path, token)

    def get_json(self, path: str):
        status, body = self._api(path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body[:500]}")
        return json.loads(body)

    def alive_nodes(self) -> list[dict]:
        body = self._api("/api/v0/nodes?detail=1&limit=100", ok_only=True)
        if not body:
            return []
        nodes = json.loads(body)["data"]["result"]["result"]
        return [n for n in nodes if n.get("state") == "ALIVE"]

    def cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """Run ``ray ARGS`` against this cluster (its token, no foreign RAY_* variables)."""
        return subprocess.run([ray_cli(), *args], env=self.env, capture_output=True, text=True, timeout=timeout_s)

    def job_status(self, submission_id: str) -> dict:
        return self.get_json(f"/api/jobs/{submission_id}")

    def job_logs(self, submission_id: str) -> str:
        try:
            return self.get_json(f"/api/jobs/{submission_id}/logs").get("logs", "")
        except (RuntimeError, ValueError) as exc:
            return f"(no job logs: {exc})"

    def logs(self, tail_lines: int = 40) -> str:
        parts = []
        for name, _, log in self._procs:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            parts.append(f"--- `ray start` of the {name} node (last {tail_lines} lines) ---\n"
                         + "\n".join(lines[-tail_lines:]))
        return "\n".join(parts)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
