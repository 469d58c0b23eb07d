"""`nrb bench serve`'s GPU part: what a user with or without a GPU gets from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.renderers.ort_session import available_providers, cuda_device_count
from nrb_bench.serve import measure_outputs, run_gpu

X2 = Path(__file__).resolve().parents[1] / "neural_renderer" / "weights" / "default_x2_temporal.onnx"


def test_gpu_part_without_a_gpu_says_nothing_was_measured_and_why(tmp_path: Path) -> None:
    if "CUDAExecutionProvider" in available_providers() and cuda_device_count() > 0:
        pytest.skip("this machine has a GPU: the GPU part measures it")
    report = run_gpu(tmp_path)
    assert report["available"] is False and report["rows"] == []
    assert json.loads((tmp_path / "serve_gpu.json").read_text())["device"] == "cpu"
    md = (tmp_path / "serve_gpu.md").read_text()
    assert "No GPU here, so nothing was measured" in md
    assert "no CUDA execution provider" in md  # the reason, from the server's own device rule


def test_gpu_part_measures_an_upscaled_output_through_nrb_serve(tmp_path: Path) -> None:
    """The method the GPU rows use (nrb serve --device, a libnrb session with an output twice its G-buffers, the
    2x model), run on this machine's CPU at a small size: the answered image has the output size."""
    cases = {"128x72 from 64x36": ((64, 36), (128, 72), ["-o", f"model={X2}"])}
    (row,) = measure_outputs("cpu", cases, seconds=1.5, warmup=1.0, repeat=1)
    assert row["result_size"] == "128x72"  # the 1x model would answer 64x36 (protocol 5.2 `output`)
    assert row["closed_loop_fps"] > 0 and row["game_loop_shown_fps"] > 0
    assert row["server_ms"] > 0


def test_cpu_report_states_its_own_run_length_with_no_template_left_unfilled() -> None:
    """The committed bench/serve.json rendered again: every figure is filled in (the header once printed its
    template, ``{rep['seconds_per_run']:g}``, instead of the seconds per run)."""
    from nrb_bench.serve import _markdown

    rep = json.loads((Path(__file__).resolve().parents[1] / "bench" / "serve.json").read_text())
    md = _markdown(rep)
    assert f"{rep['seconds_per_run']:g} s per run after" in md
    assert "{" not in md and "}" not in md
