"""What every benchmark report states about the machine it ran on, and a free loopback port for its servers."""

from __future__ import annotations

import platform
import socket
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (the reports compare runs only on the same machine)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
