"""`nrb bench serve`'s GPU part: what a user with or without a GPU gets from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def _summary(fallbacks: list[float], small_shares: list[list[float]]) -> dict[str, Any]:
    """A serve summary with the given 1-session fallbacks and 4-session small-session shares, one entry a repeat."""
    one_rounds = [{"fallback_pct": f, "shown_vs_closed_loop": 1.0, "p50_vs_closed_loop_round_trip": 1.1}
                  for f in fallbacks]
    four = [{"size": "320x180", "rounds": [{"of_fair_share": sh[i], "p99_vs_render": 2.0, "shown_fps": 5.0}
                                           for sh in small_shares]} for i in range(3)]
    four.append({"size": "1280x720", "rounds": [{"of_fair_share": 0.0, "p99_vs_render": 0.0, "shown_fps": 0.0}
                                                for _ in small_shares]})
    return {"one_session": {"rounds": one_rounds}, "four_sessions": four}


def test_serve_targets_are_met_only_when_every_repeat_meets_them_and_unjudged_when_repeats_straddle() -> None:
    from nrb_bench.serve import _verdicts

    v = {x["target"]: x for x in _verdicts(_summary([1.2, 5.5, 19.0], [[1.0, 1.1, 0.9]] * 3))}
    assert v["1 session: fallbacks (%)"]["verdict"] == "no verdict"  # 1.2 % meets < 2 %, the others do not
    assert v["1 session: fallbacks (%)"]["rounds"] == [1.2, 5.5, 19.0]
    assert v["1 session: shown / closed-loop rate"]["verdict"] == "met"
    assert v["4 sessions: each 320x180 session's share of its fair share"]["verdict"] == "met"
    # a session never shown (the 1280x720 one, skipped as hopeless) has no latency to judge
    assert v["4 sessions: p99 / render time alone, sessions shown a frame"]["verdict"] == "met"

    v = {x["target"]: x for x in _verdicts(_summary([3.0, 4.0, 6.0], [[1.0, 0.7, 1.0], [0.9, 1.2, 0.75]]))}
    assert v["1 session: fallbacks (%)"]["verdict"] == "not met"
    # each repeat's worst small session decides: 0.7 and 0.75, both under 0.8
    shares = v["4 sessions: each 320x180 session's share of its fair share"]
    assert shares["rounds"] == [0.7, 0.75] and shares["verdict"] == "not met"


def test_a_repeat_that_showed_no_frame_does_not_meet_the_latency_target_with_its_zero_p50() -> None:
    from nrb_bench.serve import _one_session_round, _verdicts

    closed = {"fresh_fps": 20.0, "p50_ms": 40.0}
    shown = _one_session_round({"fallback_pct": 3.0, "fresh_fps": 22.0, "p50_ms": 60.0}, closed)
    blank = _one_session_round({"fallback_pct": 100.0, "fresh_fps": 0.0, "p50_ms": 0.0}, closed)
    summary = {"one_session": {"rounds": [shown, blank]}, "four_sessions": []}
    (p50,) = [v for v in _verdicts(summary) if v["target"] == "1 session: p50 / closed-loop round trip"]
    assert p50["rounds"] == [1.5] and p50["verdict"] == "not met"
