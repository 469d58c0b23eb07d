"""Grading stage cost: the exact post-renderer grading (parameters, .cube LUT) and the intensity / mask blend at
640x360, as ratios to the deferred renderer's own frame time measured interleaved in the same run.

Cases, each timed once per round, rounds interleaved so that a noisy neighbour hits every case alike:

* ``deferred render`` — the baseline, the deferred renderer on the synthetic scene (preset ``identity``);
* ``preset (stage skipped)`` — ``grade`` + ``post_process`` on a preset map: what every shipped look pays;
* ``parameter style, full frame`` — ``poison`` of ``bridge/style/looks/demo.toml`` (hue, white balance, lift/gamma/
  gain) on every pixel;
* ``LUT style, full frame`` — ``sunset`` (17-point ``.cube`` LUT, white balance, depth fog) on every pixel;
* ``LUT style, one object`` — ``sunset`` on the weapon object only (the stage touches only its pixels);
* ``intensity 0.5`` / ``one object masked`` — ``post_process`` against the engine's ``hudless_color``;
* ``neural_mask, all 0`` / ``neural_mask, a quarter at 255`` — the engine's per-pixel mask buffer (protocol 6.1):
  sent but empty (what an engine that always sends one pays), and a quarter of the frame kept, with the soft edge;
* ``redefine a style (check)`` — ``StylePipeline.check`` of a FRAME whose stylecmd redefines a run-time style with
  a new parameter set (protocol 5.3), as a game animating its own look by redefining it every frame pays.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import bridge.style
from bridge.protocol import Buffer, Frame, StyleCommand
from bridge.renderer import RenderInputs
from bridge.renderers.deferred import DeferredRenderer
from bridge.scene import WEAPON_OBJECT, SyntheticScene
from bridge.session import StylePipeline
from bridge.style.defined import StyleSource
from bridge.style.grading import grade, post_process
from bridge.style.library import DEFAULT_LIBRARY
from bridge.style.state import StyleState
from bridge.style.stylemap import build_style_map
from nrb_bench.machine import cpu_name

DEMO_STYLES = Path(bridge.style.__file__).resolve().parent / "looks" / "demo.toml"


def run(out_dir: Path, *, quick: bool = False) -> dict[str, Any]:
    w, h = (320, 180) if quick else (640, 360)
    rounds = 5 if quick else 15
    lib = StyleSource(DEFAULT_LIBRARY, DEMO_STYLES).library
    bufs, cam = SyntheticScene(w, h, animate=False).buffers(0.0)
    engine = (np.random.default_rng(0).random((h, w, 4)) * 255).astype(np.uint8)
    bufs = [*bufs, Buffer.from_array("hudless_color", "rgba8_srgb", engine)]
    renderer = DeferredRenderer()
    ids = {b.name: b.array() for b in bufs}

    def inputs() -> RenderInputs:
        return RenderInputs({b.name: b for b in bufs}, size=(w, h), camera=cam)

    def state_with(style: str, obj: int | None = None) -> StyleState:
        s = StyleState(lib)
        if obj is None:
            s.set(style)
        else:
            s.set(style, object=obj)
        return s

    def style_map(s: StyleState) -> np.ndarray:
        return build_style_map(s.snapshot(), (w, h), ids["material_id"], ids["object_id"])

    base_state = state_with("identity")
    base_map = style_map(base_state)
    image = renderer.render(inputs(), lib.renderer_map(base_map))

    def staged(s: StyleState) -> Callable[[], object]:
        sm = style_map(s)

        def f() -> object:
            inp = inputs()
            return post_process(grade(image, sm, lib, inp), inp, s)
        return f

    dim = state_with("identity")
    dim.set_intensity(0.5)
    masked = state_with("identity")
    masked.exclude(object=WEAPON_OBJECT, feather=2)
    empty_mask = np.zeros((h, w, 1), np.uint8)
    quarter = empty_mask.copy()
    quarter[: h // 2, : w // 2] = 255

    def with_mask(mask: np.ndarray) -> Callable[[], object]:
        mbufs = [*bufs, Buffer.from_array("neural_mask", "r8", mask)]

        def f() -> object:
            inp = RenderInputs({b.name: b for b in mbufs}, size=(w, h), camera=cam)
            return post_process(grade(image, base_map, lib, inp), inp, base_state)
        return f

    pipeline = StylePipeline(1, lib)
    hue = [0.0]

    def redefine() -> object:
        hue[0] = (hue[0] + 1.0) % 180.0
        frame = Frame(1, 1, 0, 0.0, 10.0, styles=[StyleCommand("animated", 1.0, 0.0, params={
            "hue": hue[0], "saturation": 0.8, "gain": (0.9, 1.0, 1.1), "fog": 0.05})])
        pipeline.check(frame)
        return frame

    cases: dict[str, Callable[[], object]] = {
        "deferred render": lambda: renderer.render(inputs(), lib.renderer_map(base_map)),
        "preset (stage skipped)": staged(base_state),
        "parameter style, full frame": staged(state_with("poison")),
        "LUT style, full frame": staged(state_with("sunset")),
        "LUT style, one object": staged(state_with("sunset", WEAPON_OBJECT)),
        "intensity 0.5": staged(dim),
        "one object masked": staged(masked),
        "neural_mask, all 0": with_mask(empty_mask),
        "neural_mask, a quarter at 255": with_mask(quarter),
        "redefine a style (check)": redefine,
    }
    for f in cases.values():  # warm up (tables, caches)
        f()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, f in cases.items():
            t0 = time.perf_counter()
            f()
            times[name].append((time.perf_counter() - t0) * 1e3)
    base = statistics.median(times["deferred render"])
    rows = [{"case": k, "median_ms": round(statistics.median(v), 3), "min_ms": round(min(v), 3),
             "ratio_to_deferred": round(statistics.median(v) / base, 4)} for k, v in times.items()]
    report = {"size": [w, h], "rounds": rounds, "cpu": cpu_name(), "python": platform.python_version(),
              "note": "medians over interleaved rounds; ratios are to the deferred render median of the same run",
              "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "grading.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Grading stage cost", "",
        f"{w}x{h}, {rounds} interleaved rounds, {cpu_name()}, Python {platform.python_version()}. "
        "Generated by `nrb bench grading`; ratios are to the deferred renderer's median frame time in the same run "
        "(absolute times on a shared machine are noisy, ratios less so).", "",
        "| case | median ms | min ms | × deferred render |", "|---|---:|---:|---:|",
        *(f"| {r['case']} | {r['median_ms']:.3f} | {r['min_ms']:.3f} | {r['ratio_to_deferred']:.3f} |"
          for r in rows), "",
    ]
    (out_dir / "grading.md").write_text("\n".join(lines))
    return report
