"""Run ``nrb serve`` as a real subprocess on a fixed loopback port (so it can be killed and restarted on the same
endpoint while the game keeps running: the client reconnects by itself)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m bridge.cli serve --renderer R [--hooks F] --port P``; ``start()`` waits for "listening on"."""

    def __init__(self, renderer: str = "neural", hooks: str | Path | None = None, port: int | None = None,
                 log_path: str | Path | None = None, extra_args: list[str] | None = None,
                 python: str = sys.executable, metrics: bool = False) -> None:
        """``metrics``: also serve Prometheus metrics (``--metrics``, on a free port: :attr:`metrics_url` once
        started), which the demo reads to split the server's time per frame into the model and the rest."""
        self.renderer = renderer
        self.metrics = metrics
        self.metrics_url: str | None = None
        self.hooks = str(hooks) if hooks else None
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else None
        self.extra_args = list(extra_args or [])
        self.python = python
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "bridge.cli", "serve", "--renderer", self.renderer, "--port", str(self.port),
               "--no-status", *self.extra_args]
        if self.metrics:
            cmd += ["--metrics", "0"]
        if self.hooks:
            cmd += ["--hooks", self.hooks]
        return cmd

    def start(self, timeout: float = 120.0) -> str:
        """Start the server and wait until it listens; ``RuntimeError`` (with its log) if it exits or hangs."""
        if self.proc is not None and self.proc.poll() is None:
            return self.endpoint
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            err = open(self.log_path, "a")  # noqa: SIM115 - the child owns it
        else:
            err = subprocess.DEVNULL  # type: ignore[assignment]
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        if err is not subprocess.DEVNULL:
            err.close()  # type: ignore[union-attr]
        self.starts += 1
        ready = threading.Event()
        out: list[str] = []

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                out.append(line)
                if "listening on" in line:
                    found = re.search(r"metrics (http://\S+/metrics)", line)
                    self.metrics_url = found.group(1) if found else None
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None:
                log = self.log_path.read_text()[-3000:] if self.log_path and self.log_path.exists() else ""
                raise RuntimeError(f"nrb serve --renderer {self.renderer} exited with {self.proc.returncode}: "
                                   f"{''.join(out)}{log}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nrb serve did not start within {timeout:.0f} s")
        return self.endpoint

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system, every thread) the server process has used so far; None where ``/proc`` cannot
        say (not Linux, or not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, utime/stime 14/15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server dies mid-run without a BYE (what the fallback test does)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT (clean shutdown), SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
