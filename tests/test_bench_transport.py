"""``nrb bench transport`` at a tiny size: every mode runs against real servers and the report says which path
each took (the numbers themselves are for ``make bench``, not for assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("bridge._native")

from bridge.bench import transport  # noqa: E402


def test_the_transport_bench_runs_every_mode_and_reports_the_doorbell_and_the_kernel_floor(tmp_path: Path) -> None:
    res = transport.run(tmp_path, quick=True, sizes=((64, 32),), log=lambda _: None)
    entry = res["sizes"]["64x32"]
    failed = {k: v["error"] for k, v in entry["modes"].items() if "error" in v}
    assert failed == {}
    assert entry["modes"]["libnrb shm"]["shm"] and entry["modes"]["libnrb shm"]["doorbell"]
    ipc_headers = entry["modes"]["libnrb shm, headers on ZeroMQ"]
    assert ipc_headers["shm"] and not ipc_headers["doorbell"]
    assert entry["modes"]["libnrb tcp"]["bytes_sent_per_frame"] > 64 * 32 * 4  # pixels inline on tcp
    assert entry["modes"]["libnrb shm"]["bytes_sent_per_frame"] < 4096  # headers only
    assert entry["tcp_socket_floor"]["ms"] > 0
    assert json.loads((tmp_path / "transport.json").read_text())["sizes"]["64x32"]["modes"].keys() == \
        entry["modes"].keys()
    md = (tmp_path / "transport.md").read_text()
    assert "Kernel floor for tcp" in md and "notification overhead under 0.3 ms" in md
