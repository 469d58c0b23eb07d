"""On-disk synthetic dataset: one ``.npz`` per rendered frame plus ``manifest.json``; and its torch loader.

Layout of ``<root>``::

    manifest.json                      # settings + one entry per finished scene (spec, split, files)
    scene_00012_f1.npz                 # frame 1 of scene 12 (protocol buffer names, see render.render_scene)

Resumable: a scene is done when the manifest lists it; an interrupted run re-renders at most the scene it was
on (every file is written to a temporary name and renamed). Deterministic: scene ``i`` is drawn from
``seed * 100003 + i`` and rendered with sampler seed ``i``, so a rerun reproduces the same dataset on the same
Mitsuba variant. Split: scene ``i`` is held out (``"test"``) when ``i % holdout_every == holdout_every - 1``;
the trainer never reads test scenes.

``lighting`` picks the scene regime (:data:`neural_renderer.data.scene.LIGHTINGS`): ``house`` (the default, what
the shipped model was trained on), ``every`` (point, spot and area lights, night, indoors), ``corridor`` (the
held-out family: every scene is a test scene). ``engine_image`` adds ``hudless_color`` to every frame (the engine
image, :mod:`neural_renderer.data.engine`) and the scene's engine look to its manifest entry (``engine``: tone
mapping, ``pre_exposure``, shadows, ...). Neither is written into the settings while at its default, so house-lit
datasets (and their manifests) are exactly what they were before these options existed, and resume as before.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
#: Settings that appear in a manifest only when they differ from these defaults (see the module docstring).
OPTIONAL_SETTINGS: dict[str, Any] = {"lighting": "house", "engine_image": False}
#: Tag of the per-scene generator that draws the engine look (independent of the scene's own draws).
_LOOK_STREAM = 0xE9
#: Stored dtypes: float16 where the protocol's usual format is 8/16-bit anyway, float32 for geometry.
STORE_DTYPES: dict[str, Any] = {
    "albedo": np.float16,
    "normals": np.float16,
    "emissive": np.float16,
    "roughness": np.float16,
    "metallic": np.float16,
    "reference": np.float16,
    "linear_depth": np.float32,
    "depth": np.float32,
    "motion_vectors": np.float32,
    "material_id": np.uint16,
    "object_id": np.uint16,
}
#: Stored only with ``engine_image``: display-linear (or, for tone mapping ``none``, pre-exposed HDR) values.
ENGINE_DTYPES: dict[str, Any] = {"hudless_color": np.float16}


def _atomic_write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def scene_seed(seed: int, index: int) -> int:
    return seed * 100003 + index


def split_of(index: int, holdout_every: int, lighting: str = "house") -> str:
    if lighting == "corridor":  # the held-out family is never trained on
        return "test"
    return "test" if holdout_every > 0 and index % holdout_every == holdout_every - 1 else "train"


def load_manifest(root: Path) -> dict[str, Any]:
    return json.loads((Path(root) / MANIFEST).read_text())  # type: ignore[no-any-return]


def generate(
    root: Path,
    scenes: int,
    size: tuple[int, int],
    *,
    spp: int = 128,
    frames: int = 2,
    seed: int = 0,
    holdout_every: int = 10,
    keep_position: bool = False,
    only_split: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    threads: int | None = None,
    lighting: str = "house",
    engine_image: bool = False,
) -> dict[str, Any]:
    """Render scenes ``0..scenes-1`` into ``root`` (skipping those already done); returns the manifest.

    ``size`` is (width, height). Settings must match an existing manifest's (else ``ValueError``): resuming
    with other settings would silently mix two datasets. ``scenes`` may grow on a rerun to extend a dataset.
    ``only_split`` renders just the scenes of that split (e.g. the benchmark's held-out scenes, identical to
    those of a full dataset with the same settings). ``workers`` > 1 renders that many scenes at once in
    worker processes, each with ``threads`` render threads (default: the CPU count over the workers).
    ``lighting`` and ``engine_image``: see the module docstring.
    """
    from neural_renderer.data.render import select_variant
    from neural_renderer.data.scene import LIGHTINGS

    if lighting not in LIGHTINGS:
        raise ValueError(f"unknown lighting {lighting!r}: expected one of {', '.join(LIGHTINGS)}")

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "width": size[0],
        "height": size[1],
        "spp": spp,
        "frames": frames,
        "seed": seed,
        "holdout_every": holdout_every,
    }
    chosen = {"lighting": lighting, "engine_image": engine_image}
    settings |= {k: v for k, v in chosen.items() if v != OPTIONAL_SETTINGS[k]}
    mpath = root / MANIFEST
    if mpath.exists():
        manifest = json.loads(mpath.read_text())
        want = OPTIONAL_SETTINGS | settings
        old = {k: manifest["settings"].get(k, OPTIONAL_SETTINGS.get(k)) for k in want}
        if old != want:
            raise ValueError(f"{root} holds a dataset made with {old}; refusing to resume with {settings}")
    else:
        manifest = {"settings": settings, "variant": None, "scenes": {}}
    variant = select_variant()
    manifest["variant"] = manifest["variant"] or variant
    done = manifest["scenes"]
    todo = [
        i
        for i in range(scenes)
        if str(i) not in done and (only_split is None or split_of(i, holdout_every, lighting) == only_split)
    ]
    finished = scenes - len(todo)
    if progress and finished:
        progress(finished, scenes)
    job = _SceneJob(root, size, spp, frames, seed, holdout_every, keep_position, lighting, engine_image)
    if workers <= 1 or len(todo) <= 1:
        results: Iterator[tuple[int, dict[str, Any]]] = (job(i) for i in todo)
        _record(manifest, mpath, results, scenes, finished, progress)
        return manifest  # type: ignore[no-any-return]
    # Worker processes, not threads: Mitsuba's scalar variant renders one scene on few cores, and a render
    # holds the GIL in places. "spawn" because Dr.Jit's LLVM backend starts threads that a fork would copy
    # half-initialised. Each worker renders whole scenes (deterministic per scene, so the dataset is the same
    # whatever the worker count); only this process writes the manifest.
    ctx = multiprocessing.get_context("spawn")
    per_worker = threads or max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(per_worker,)) as ex:
        futures = [ex.submit(job, i) for i in todo]
        _record(manifest, mpath, (f.result() for f in as_completed(futures)), scenes, finished, progress)
    return manifest  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _SceneJob:
    """Renders one scene into ``root`` and returns its manifest entry (picklable: runs in worker processes)."""

    root: Path
    size: tuple[int, int]
    spp: int
    frames: int
    seed: int
    holdout_every: int
    keep_position: bool
    lighting: str = "house"
    engine_image: bool = False

    def __call__(self, i: int) -> tuple[int, dict[str, Any]]:
        from neural_renderer.data.engine import random_look
        from neural_renderer.data.render import render_scene, render_with_engine, select_variant
        from neural_renderer.data.scene import scene_for

        variant = select_variant()
        t0 = time.perf_counter()
        spec = scene_for(self.lighting, scene_seed(self.seed, i), frames=self.frames)
        extra: dict[str, Any] = {}
        dtypes = dict(STORE_DTYPES)
        if self.engine_image:
            look = random_look(np.random.default_rng([scene_seed(self.seed, i), _LOOK_STREAM]))
            out, look = render_with_engine(spec, self.size[0], self.size[1], self.spp, look, seed=i)
            extra["engine"] = look.to_json()
            dtypes |= ENGINE_DTYPES
        else:
            out = render_scene(spec, self.size[0], self.size[1], self.spp, seed=i)
        files = []
        for k, fr in enumerate(out):
            arrays = {n: fr[n].astype(dtypes[n]) for n in dtypes}
            if self.keep_position:
                arrays["position"] = fr["position"]
            name = f"scene_{i:05d}_f{k}.npz"
            _atomic_savez(self.root / name, arrays)
            files.append(name)
        return i, {
            "split": split_of(i, self.holdout_every, self.lighting),
            "files": files,
            "spec": spec.to_json(),
            **extra,
            "seconds": round(time.perf_counter() - t0, 3),
            "variant": variant,
        }


def _worker_init(threads: int) -> None:
    os.environ["NRB_THREADS"] = str(threads)  # read by render.select_variant


def _record(
    manifest: dict[str, Any],
    mpath: Path,
    results: Iterable[tuple[int, dict[str, Any]]],
    scenes: int,
    finished: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Add each finished scene to the manifest and write it at once, so an interrupted run loses at most the
    scenes still rendering."""
    done = manifest["scenes"]
    for i, entry in results:
        done[str(i)] = entry
        manifest["scenes"] = dict(sorted(done.items(), key=lambda kv: int(kv[0])))
        done = manifest["scenes"]
        _atomic_write_json(mpath, manifest)
        finished += 1
        if progress:
            progress(finished, scenes)


@dataclass
class Frame:
    """One loaded frame: protocol-named arrays (H, W[, C]) plus where it came from."""

    scene: int
    index: int
    arrays: dict[str, np.ndarray]


def scene_lighting(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """A scene's lights as the per-frame constants an engine sends (``x_sun_direction``, ``x_sun_irradiance``,
    ``x_sky_radiance``: (3,) float32, see docs/protocol.md 6.1), from its manifest spec."""
    return {
        "x_sun_direction": np.asarray(spec["sun_direction"], np.float32),
        "x_sun_irradiance": np.asarray(spec["sun_irradiance"], np.float32),
        "x_sky_radiance": np.asarray(spec["sky_radiance"], np.float32),
    }


def engine_constants(entry: dict[str, Any]) -> dict[str, Any]:
    """How a scene's ``hudless_color`` was made, as the camera constants an engine states (``pre_exposure``
    and the proposed ``tone_mapping``), from its manifest entry; empty without an engine image."""
    look = entry.get("engine")
    if not look:
        return {}
    return {"pre_exposure": float(look["pre_exposure"]), "tone_mapping": str(look["tone_mapping"])}


def iter_frames(root: Path, split: str | None = None, limit: int | None = None) -> Iterator[list[Frame]]:
    """Yield each scene's frames (a camera path, in order) of ``split`` ("train", "test" or None = all). Frames
    with an engine image also get ``engine_linear``: that image taken back to linear light with the scene's
    exposure and tone mapping (``bridge.tonemap.engine_linear``), as the ``neural`` renderer does for a live
    engine."""
    from bridge.tonemap import engine_linear

    manifest = load_manifest(root)
    n = 0
    for key in sorted(manifest["scenes"], key=int):
        entry = manifest["scenes"][key]
        if split is not None and entry["split"] != split:
            continue
        lighting = scene_lighting(entry["spec"]) if "spec" in entry else {}
        look = engine_constants(entry)
        frames = []
        for k, fname in enumerate(entry["files"]):
            with np.load(Path(root) / fname) as z:
                arrays = {n_: z[n_] for n_ in z.files} | lighting
            if look and "hudless_color" in arrays:  # what the renderer makes of it with the camera constants
                arrays["engine_linear"] = engine_linear(
                    arrays["hudless_color"].astype(np.float32), look["pre_exposure"], look["tone_mapping"]
                )
            frames.append(Frame(int(key), k, arrays))
        yield frames
        n += 1
        if limit is not None and n >= limit:
            return
