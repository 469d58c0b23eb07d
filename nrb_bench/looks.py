"""``nrb bench looks``: the game's own lights (issue 15) and styles the model never saw (issue 17), on held-out scenes.

Two fixed held-out sets, rendered here when absent (``REFERENCE_SPP`` samples per pixel, so the metrics measure
rendering error, not the reference's Monte Carlo noise), both with an engine image per frame
(``nrb data generate --engine-image``: raster-style direct light with varied shadows, occlusion, tone curves and
exposure, sent to the renderer as ``hudless_color`` with the camera's ``pre_exposure`` and ``tone_mapping``):

* **lights**: the held-out scenes (every 10th) of the first ``LIGHT_SCENES`` scenes of ``--lighting every``:
  several coloured point, spot and area lights, emissive surfaces, indoors and outdoors, night and day. Per frame
  (style ``identity``, whose target is the path-traced reference through the display transform), FLIP against that
  target of: the neural renderer; the engine image it was given (its linear light through the same display
  transform, so only the lighting differs); the server's deferred shader (which knows only a sun and a sky: its
  figure shows what a renderer without the engine's image loses).
* **corridor**: ``CORRIDOR_SCENES`` scenes of ``--lighting corridor``, a family the generator was *not* designed
  around (a long corridor lit by a row of repeated lamps, thin pillars: ``corridor_scene``), never trained on;
  scored like the lights set and reported on its own line, so a model that only fits the generator's own
  families shows it.
* **styles**: the held-out scenes of the house dataset (sun and sky, the scenes ``bench/renderer.md`` scores). The
  seven presets, ``HELDOUT_LOOKS`` parameter vectors drawn after training with a seed no training run uses, and
  two LUT styles (``bridge/style/looks/nrb_sunset.cube`` and a teal-and-orange ``.cube`` made here), each
  rendered by the neural renderer (the parameters through the style table, exactly as a style a game defines at
  run time reaches it) and by the deferred shader, against the style's target
  (``neural_renderer.data.styles.param_target``; a LUT style's target is its LUT applied to its base's target, by
  the same exact grading stage the server runs after either renderer).

Targets (issue 15): on the lights set, neural FLIP at least 2x lower than the engine image and than the deferred
shader. Issue 17: held-out looks' mean FLIP at most 1.15x the presets' mean; at least 2x lower than the deferred
shader's on the same looks.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nrb_bench.machine import cpu_name

DATA = Path("data")
REFERENCE_SPP = 512
SIZE = (128, 128)
LIGHT_SCENES = 160
CORRIDOR_SCENES = 8
HOUSE_SCENES = 320
HELDOUT_LOOKS = 8
#: Seeds of the held-out looks: far from any training run's generator (training draws from its own ``--seed``).
LOOK_SEED = 20261207


def ensure_data(data: Path = DATA, quick: bool = False) -> tuple[Path, Path, Path]:
    """(held-out lights set, held-out house set, corridor set), rendered when missing."""
    from neural_renderer.data.dataset import MANIFEST, generate, load_manifest

    common: dict[str, Any] = {"size": SIZE, "frames": 2, "seed": 0, "engine_image": True, "only_split": "test"}
    spp = 32 if quick else REFERENCE_SPP
    lights = data / f"heldout-lights-{SIZE[0]}-spp{spp}"
    house = data / f"heldout-engine-{SIZE[0]}-spp{spp}"
    n_light, n_house = (20, 20) if quick else (LIGHT_SCENES, HOUSE_SCENES)
    if not (lights / MANIFEST).exists() or len(load_manifest(lights)["scenes"]) < n_light // 10:
        generate(lights, n_light, spp=spp, lighting="every", **common)
    if not (house / MANIFEST).exists() or len(load_manifest(house)["scenes"]) < n_house // 10:
        generate(house, n_house, spp=spp, **common)
    corridor = data / f"heldout-corridor-{SIZE[0]}-spp{spp}"
    n_corridor = 2 if quick else CORRIDOR_SCENES
    if not (corridor / MANIFEST).exists() or len(load_manifest(corridor)["scenes"]) < n_corridor:
        generate(corridor, n_corridor, spp=spp, lighting="corridor", **common)  # every corridor scene is held out
    return lights, house, corridor


def heldout_looks(n: int = HELDOUT_LOOKS) -> list[dict[str, Any]]:
    """``n`` fixed parameter styles (as a game would define them), drawn from the training distribution with
    :data:`LOOK_SEED`; draws that leave every parameter neutral are skipped."""
    import torch

    from bridge.style.library import SHADING_PARAMS
    from neural_renderer.train import random_look

    neutral = np.asarray(_row({}), np.float32)
    g = torch.Generator().manual_seed(LOOK_SEED)
    looks: list[dict[str, Any]] = []
    while len(looks) < n:
        row = random_look(g).numpy()
        if np.allclose(row, neutral):
            continue
        looks.append({"name": f"heldout_{len(looks)}", "row": [float(v) for v in row],
                      "columns": list(SHADING_PARAMS)})
    return looks


def _row(params: dict[str, Any]) -> list[float]:
    from bridge.style.library import GRADING_START, Style

    return [float(v) for v in Style.define("x", **params).params()[:GRADING_START]]


def _style_from_row(name: str, index: int, row: list[float]) -> Any:
    """A ``Style`` whose shading row is ``row`` (premultiplied columns undone)."""
    from bridge.style.library import Style

    r = row
    paint, metal, toon, outline = r[3], r[7], r[12], r[14]
    kw: dict[str, Any] = {
        "tint": tuple(r[0:3]),
        "paint": paint,
        "paint_color": tuple(min(1.0, v / paint) for v in r[4:7]) if paint > 0 else (1.0, 1.0, 1.0),
        "metal": metal,
        "metal_roughness": r[8] / metal if metal > 0 else 0.3,
        "exposure": r[9],
        "saturation": r[10],
        "contrast": r[11],
        "toon": toon,
        "levels": int(round(r[13] / toon)) if toon > 0 else 4,
        "outline": outline,
        "outline_color": tuple(min(1.0, v / outline) for v in r[15:18]) if outline > 0 else (0.0, 0.0, 0.0),
        "heat": r[18],
    }
    return Style(name, index, "held-out look", **kw)


def teal_orange_lut(size: int = 17) -> Any:
    """A teal-and-orange grade as a 3D LUT (shadows toward teal, highlights toward orange, a little more
    saturation): the second held-out LUT style, made here so that the benchmark needs no file it does not ship."""
    from bridge.style.lut import parse_cube

    lines = ["TITLE \"nrb teal orange\"", f"LUT_3D_SIZE {size}"]
    grid = np.linspace(0.0, 1.0, size)
    for b in grid:  # .cube order: red fastest
        for g in grid:
            for r in grid:
                c = np.array([r, g, b])
                y = float(c @ np.array([0.2126, 0.7152, 0.0722]))
                c = y + (c - y) * 1.15
                c = c + (1 - y) * np.array([-0.04, 0.03, 0.06]) + y * np.array([0.06, 0.01, -0.06])
                c = np.clip(c, 0.0, 1.0)
                lines.append(f"{c[0]:.6f} {c[1]:.6f} {c[2]:.6f}")
    return parse_cube("\n".join(lines) + "\n", "<teal-orange>")


def _library(looks: list[dict[str, Any]]) -> Any:
    """The presets, the held-out looks, and the two LUT styles (sunset on identity, teal-orange on photoreal)."""
    import dataclasses

    from bridge.style.library import DEFAULT_LIBRARY, StyleLibrary
    from bridge.style.lut import load_cube

    styles = list(DEFAULT_LIBRARY)
    for look in looks:
        styles.append(_style_from_row(look["name"], len(styles), look["row"]))
    import bridge.style

    sunset = load_cube(Path(bridge.style.__file__).resolve().parent / "looks" / "nrb_sunset.cube")
    styles.append(dataclasses.replace(DEFAULT_LIBRARY["identity"], name="lut_sunset", index=len(styles),
                                      lut=sunset, description="nrb_sunset.cube over identity"))
    styles.append(dataclasses.replace(DEFAULT_LIBRARY["photoreal"], name="lut_teal_orange", index=len(styles),
                                      lut=teal_orange_lut(), description="teal-orange LUT over photoreal"))
    return StyleLibrary(styles)


def _target(frame: Any, row: np.ndarray) -> np.ndarray:
    """(H, W, 3) display target of the shading ``row`` for one frame."""
    import torch

    from neural_renderer.data.styles import param_target

    a = frame.arrays

    def t(name: str) -> torch.Tensor:
        x = np.asarray(a[name], np.float32)
        x = x[..., None] if x.ndim == 2 else x
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    n = t("normals")
    h, w = n.shape[-2:]
    p = torch.from_numpy(np.array(row, np.float32)).view(1, -1, 1, 1).expand(1, -1, h, w)
    out = param_target(p, t("reference"), n, t("linear_depth"), t("emissive"), n.abs().sum(1, keepdim=True) > 0.1)
    return out[0].permute(1, 2, 0).numpy()


def _as_float(img: np.ndarray) -> np.ndarray:
    return img[..., :3].astype(np.float32) / 255.0 if img.dtype == np.uint8 else np.clip(img[..., :3], 0, 1)


def _graded(image: np.ndarray, style_map: np.ndarray, library: Any, inputs: Any) -> np.ndarray:
    from bridge.style.grading import grade

    return _as_float(grade(image, style_map, library, inputs))


def _to_rgba8(display: np.ndarray) -> np.ndarray:
    out = np.empty(display.shape[:2] + (4,), np.uint8)
    out[..., :3] = (np.clip(display, 0, 1) * 255 + 0.5).astype(np.uint8)
    out[..., 3] = 255
    return out


def scene_light_rows(spec: Any) -> np.ndarray | None:
    """The ``x_lights`` rows (docs/protocol.md 6.1, ``bridge.lights``) of a dataset scene's local lights, so the
    deferred baseline is lit by what lights the reference (issue 15: a fair comparison), as an engine would send
    them: point and spot lights as they are (radiant intensity, the spot's beam and cone angles as the inner and
    outer cone); an ``area`` light as the training data's engine images sample it (``neural_renderer.data.engine``):
    four point samples of ``radiance x area / 4`` at its quadrants, each a spot facing the panel's normal with a
    90-degree cone (the smoothstep stands in for the panel's cosine). No range window: the reference has none.
    None for a scene without local lights (its sun and sky are the lighting constants)."""
    import math

    from bridge.lights import MAX_LIGHTS, Light, encode_lights

    def v3(x: Any) -> tuple[float, float, float]:
        a = np.asarray(x, float)
        return (float(a[0]), float(a[1]), float(a[2]))

    lights: list[Light] = []
    for li in spec.lights:
        rgb = np.asarray(li.rgb, float)
        if li.kind == "point":
            lights.append(Light("point", v3(rgb), v3(li.position)))
        elif li.kind == "spot":
            d = np.asarray(li.direction, float)
            lights.append(Light("spot", v3(rgb), v3(li.position), v3(d / np.linalg.norm(d)),
                                inner=math.radians(li.beam_deg), outer=math.radians(li.cone_deg)))
        else:
            panel = np.asarray(li.panel().to_world, float)
            n = v3(panel[:3, 2] / np.linalg.norm(panel[:3, 2]))
            quarter = v3(rgb * (4 * li.size[0] * li.size[1]) / 4)
            for u in (-0.5, 0.5):
                for v in (-0.5, 0.5):
                    p = panel[:3, 3] + panel[:3, 0] * u + panel[:3, 1] * v
                    lights.append(Light("spot", quarter, v3(p), n, inner=0.0, outer=math.pi / 2))
    return encode_lights(lights[:MAX_LIGHTS]) if lights else None


def deferred_with_lights(frame: Any, smap: np.ndarray, raster_opts: dict[str, Any],
                         rows: np.ndarray | None) -> np.ndarray:
    """The deferred baseline's display sRGB (H, W, 3) for ``frame`` with the scene's ``x_lights`` ``rows``
    (``neural_renderer.evaluate.raster`` plus the light list)."""
    from bridge.lights import X_LIGHTS
    from bridge.protocol import Buffer
    from bridge.renderers.deferred import DeferredRenderer
    from neural_renderer.evaluate import render_inputs

    inputs = render_inputs(frame)
    if rows is not None:
        inputs.buffers[X_LIGHTS] = Buffer.from_array(X_LIGHTS, "rgba32f", rows)
    out = DeferredRenderer(**raster_opts).render(inputs, smap)
    return out[..., :3].astype(np.float32) / 255.0


def lights_quality(root: Path, model: Path | None, raster_opts: dict[str, Any]) -> dict[str, Any]:
    """Per-frame FLIP of neural, engine image and deferred shader against the path-traced target (identity)."""
    import torch

    from bridge.renderers.neural import NeuralRenderer
    from bridge.style.library import DEFAULT_LIBRARY, GRADING_START
    from neural_renderer.data.dataset import load_manifest
    from neural_renderer.data.scene import SceneSpec
    from neural_renderer.data.styles import tonemap
    from neural_renderer.evaluate import flip, load_paths, one_style_map, render_inputs

    identity = DEFAULT_LIBRARY.table()[DEFAULT_LIBRARY.index("identity"), :GRADING_START]
    scenes = load_manifest(root)["scenes"]
    rows: list[dict[str, float]] = []
    for path in load_paths(root, "test"):
        light_rows = scene_light_rows(SceneSpec.from_json(scenes[str(path[0].scene)]["spec"]))
        renderer = NeuralRenderer(model=model, threads=2)
        for frame in path:
            h, w = frame.arrays["linear_depth"].shape
            smap = one_style_map(h, w, "identity")
            target = _target(frame, identity)
            neural = _as_float(renderer.render(render_inputs(frame), smap))
            eng = frame.arrays.get("engine_linear")
            rows.append({
                "scene": frame.scene,
                "neural": flip(target, neural)[0],
                "engine": flip(target, tonemap(torch.from_numpy(np.asarray(eng, np.float32))).numpy())[0]
                if eng is not None else float("nan"),
                "deferred": flip(target, deferred_with_lights(frame, smap, raster_opts, light_rows))[0],
            })
    return _summary(rows, ("neural", "engine", "deferred"))


def _summary(rows: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {"frames": len(rows), **{k: float(np.nanmean([r[k] for r in rows])) for k in keys}}


def styles_quality(root: Path, model: Path | None, raster_opts: dict[str, Any],
                   looks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per style (presets, held-out looks, LUT styles): mean FLIP of neural and deferred against the target."""
    from bridge.renderers.deferred import DeferredRenderer
    from bridge.renderers.neural import NeuralRenderer
    from bridge.style.library import GRADING_START
    from neural_renderer.evaluate import flip, load_paths, render_inputs

    library = _library(looks)
    table = library.table()[:, :GRADING_START]
    deferred = DeferredRenderer(**raster_opts, library=library)
    per: dict[str, dict[str, list[float]]] = {s.name: {"neural": [], "deferred": []} for s in library}
    # a model conditioned on preset weights (the shipped one before issue 17) draws a LUT style as its base preset
    # and cannot draw the held-out looks at all: they are left out of its report
    presets = 7
    base_of = {"lut_sunset": "identity", "lut_teal_orange": "photoreal"}
    params = NeuralRenderer(model=model, threads=2).style_params
    for path in load_paths(root, "test"):
        renderer = NeuralRenderer(model=model, threads=2)
        for style in library:
            if not params and style.index >= presets and style.name not in base_of:
                continue
            renderer.reset()  # each style's camera path starts without history
            for frame in path:
                h, w = frame.arrays["linear_depth"].shape
                smap = np.zeros((h, w, len(library)), np.float32)
                smap[..., style.index] = 1.0
                inputs = render_inputs(frame)
                inputs.style_table = table
                target = _to_rgba8(_target(frame, table[style.index]))
                target_f = _graded(target, smap, library, inputs)
                drawn = smap
                if not params:  # the preset weights it was trained on
                    drawn = np.zeros((h, w, presets), np.float32)
                    drawn[..., library.index(base_of.get(style.name, style.name))] = 1.0
                neural = _graded(renderer.render(inputs, drawn), smap, library, inputs)
                raster = _graded(deferred.render(render_inputs(frame), smap), smap, library, inputs)
                per[style.name]["neural"].append(flip(target_f, neural)[0])
                per[style.name]["deferred"].append(flip(target_f, raster)[0])
    out = {name: {k: float(np.mean(v)) for k, v in d.items()} for name, d in per.items() if d["neural"]}
    names = [s.name for s in library if s.index < presets]
    held = [s.name for s in library if s.index >= presets and s.name in out]
    mean = {g: {k: float(np.mean([out[n][k] for n in group])) for k in ("neural", "deferred")}
            for g, group in (("presets", names), ("heldout", held))}
    return {"per_style": out, "mean": mean, "looks": looks, "style_params": bool(params)}


def run(out_dir: Path, *, quick: bool = False, model: str | None = None, data: Path = DATA) -> dict[str, Any]:
    from neural_renderer.evaluate import raster_options

    lights, house, corridor = ensure_data(data, quick)
    path = Path(model) if model else None
    opts = raster_options()
    looks = heldout_looks(3 if quick else HELDOUT_LOOKS)
    report = {
        "machine": cpu_name(),
        "model": str(path) if path else "shipped (neural_renderer/weights)",
        "sets": {"lights": str(lights), "styles": str(house), "corridor": str(corridor)},
        "lights": _step("lights", lambda: lights_quality(lights, path, opts)),
        "corridor": _step("corridor", lambda: lights_quality(corridor, path, opts)),
        "styles": _step("styles", lambda: styles_quality(house, path, opts, looks)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "looks.json").write_text(json.dumps(report, indent=1))
    (out_dir / "looks.md").write_text(_markdown(report))
    return report


def _step(name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one set's scoring with a line before and after (each set takes minutes on a CPU)."""
    print(f"[looks] {name} ...", flush=True)
    t0 = time.perf_counter()
    out = work()
    print(f"[looks] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def _markdown(rep: dict[str, Any]) -> str:
    li, st = rep["lights"], rep["styles"]
    m = st["mean"]
    lines = [
        "# `nrb bench looks`: the game's own lights (issue 15), styles the model never saw (issue 17)", "",
        f"Machine: {rep['machine']}. Model: {rep['model']}. Held-out sets: {rep['sets']['lights']} (lights), "
        f"{rep['sets']['styles']} (styles), {rep['sets'].get('corridor', '-')} (corridor). Mean LDR FLIP against the path-traced target (lower is better); see "
        "`nrb_bench/looks.py` for the sets and what each figure compares.", "",
        "## Lights: point, spot, area and emissive lights, night and day", "",
        "| set | image | FLIP | neural is lower by |", "|---|---|---|---|",
    ]
    for label, d in (("lights", li), ("corridor (a family the generator was not designed around)",
                                       rep.get("corridor"))):
        if d is None:
            continue
        lines += [
            f"| {label} | neural (given the engine image) | {d['neural']:.4f} | |",
            f"| {label} | the engine image it was given | {d['engine']:.4f} | {d['engine'] / d['neural']:.2f}x |",
            f"| {label} | deferred shader (given the scene's lights, `x_lights`) | {d['deferred']:.4f} | "
            f"{d['deferred'] / d['neural']:.2f}x |",
        ]
    lines += [
        "", f"Frames: {li['frames']} (lights), {rep['corridor']['frames'] if rep.get('corridor') else 0} "
        "(corridor). Target (issue 15): at least 2x lower than both, on each set.", "",
        "## Styles: presets, held-out parameter looks, LUT styles", "",
        "| style | neural FLIP | deferred FLIP | deferred / neural |", "|---|---|---|---|",
    ]
    for name, d in st["per_style"].items():
        lines.append(f"| {name} | {d['neural']:.4f} | {d['deferred']:.4f} | {d['deferred'] / d['neural']:.2f}x |")
    params = st.get("style_params", True)
    if not params:
        lines += ["", "This model is conditioned on preset weights: it draws a LUT style as its base preset and "
                      "cannot draw the held-out looks, which are left out (the ratios below cover the LUT styles)."]
    lines += [
        "", f"Presets mean {m['presets']['neural']:.4f}; held-out {'looks and ' if params else ''}LUT styles mean "
        f"{m['heldout']['neural']:.4f} = **{m['heldout']['neural'] / m['presets']['neural']:.2f}x** the presets "
        f"(target at most 1.15x); deferred on the same looks {m['heldout']['deferred']:.4f} = "
        f"**{m['heldout']['deferred'] / m['heldout']['neural']:.2f}x** the neural (target at least 2x).", "",
        "Held-out looks (shading rows, `bridge.style.library.SHADING_PARAMS` order):", "",
    ]
    for look in st["looks"]:
        lines.append(f"- {look['name']}: " + ", ".join(f"{c}={v:.3g}" for c, v in zip(look["columns"], look["row"],
                                                                                        strict=True)))
    return "\n".join(lines) + "\n"


def register(bench_sub: Any) -> None:
    p = bench_sub.add_parser("looks", help=__doc__.strip().splitlines()[0])
    p.add_argument("--out", default="bench", help="report directory (default bench/)")
    p.add_argument("--quick", action="store_true", help="small, noisy sets (a smoke run)")
    p.add_argument("--model", help="a temporal ONNX graph to score instead of the shipped one")
    p.add_argument("--data", default=str(DATA), help="where the held-out sets live (default data/)")

    def main(args: argparse.Namespace) -> int:
        run(Path(args.out), quick=args.quick, model=args.model, data=Path(args.data))
        return 0

    p.set_defaults(func=main)

