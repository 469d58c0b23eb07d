"""The ``nrb`` command line: commands are registered, and ``nrb demo`` runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bridge.capture import CaptureReader
from bridge.cli import build_parser


def test_every_server_command_is_registered() -> None:
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"serve", "record", "replay", "inspect", "demo"} <= set(choices)


def test_demo_runs_a_real_server_and_writes_frames_video_timing_and_a_capture(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "bridge.cli", "-q", "demo", "--frames", "6", "--size", "64x48",
                           "--out", str(out)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "frames").glob("*.png"))) == 6 and (out / "demo.mp4").stat().st_size > 0
    timing = json.loads((out / "timing.json").read_text())
    assert timing["frames"] == 6 and timing["server_exit"] == 0 and timing["rtt_ms"]["p50"] > 0
    assert "demo.mp4" in proc.stdout
    with CaptureReader(out / "demo.nrbcap") as cap:
        assert not cap.recovered and len(cap.frames()) == 6  # the server closed its capture cleanly
