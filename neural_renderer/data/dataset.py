"""On-disk synthetic dataset: one ``.npz`` per rendered frame plus ``manifest.json``; and its torch loader.

Layout of ``<root>``::

    manifest.json                      # settings + one entry per finished scene (spec, split, files)
    scene_00012_f1.npz                 # frame 1 of scene 12 (protocol buffer names, see render.render_scene)

Resumable: a scene is done when the manifest lists it; an interrupted run re-renders at most the scene it was
on (every file is written to a temporary name and renamed). Deterministic: scene ``i`` is drawn from
``seed * 100003 + i`` and rendered with sampler seed ``i``, so a rerun reproduces the same dataset on the same
Mitsuba variant. Split: scene ``i`` is held out (``"test"``) when ``i % holdout_every == holdout_every - 1``;
the trainer never reads test scenes.
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


def split_of(index: int, holdout_every: int) -> str:
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
) -> dict[str, Any]:
    """Render scenes ``0..scenes-1`` into ``root`` (skipping those already done); returns the manifest.

    ``size`` is (width, height). Settings must match an existing manifest's (else ``ValueError``): resuming
    with other settings would silently mix two datasets. ``scenes`` may grow on a rerun to extend a dataset.
    ``only_split`` renders just the scenes of that split (e.g. the benchmark's held-out scenes, identical to
    those of a full dataset with the same settings). ``workers`` > 1 renders that many scenes at once in
    worker processes, each with ``threads`` render threads (default: the CPU count over the workers).
    """
    from neural_renderer.data.render import select_variant

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    settings = {
        "format": FORMAT_VERSION,
        "width": size[0],
        "height": size[1],
        "spp": spp,
        "frames": frames,
        "seed": seed,
        "holdout_every": holdout_every,
    }
    mpath = root / MANIFEST
    if mpath.exists():
        manifest = json.loads(mpath.read_text())
        old = {k: manifest["settings"].get(k) for k in settings}
        if old != settings:
            raise ValueError(f"{root} holds a dataset made with {old}; refusing to resume with {settings}")
    else:
        manifest = {"settings": settings, "variant": None, "scenes": {}}
    variant = select_variant()
    manifest["variant"] = manifest["variant"] or variant
    done = manifest["scenes"]
    todo = [
        i
        for i in range(scenes)
        if str(i) not in done and (only_split is None or split_of(i, holdout_every) == only_split)
    ]
    finished = scenes - len(todo)
    if progress and finished:
        progress(finished, scenes)
    job = _SceneJob(root, size, spp, frames, seed, holdout_every, keep_position)
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

    def __call__(self, i: int) -> tuple[int, dict[str, Any]]:
        from neural_renderer.data.render import render_scene, select_variant
        from neural_renderer.data.scene import random_scene

        variant = select_variant()
        t0 = time.perf_counter()
        spec = random_scene(scene_seed(self.seed, i), frames=self.frames)
        out = render_scene(spec, self.size[0], self.size[1], self.spp, seed=i)
        files = []
        for k, fr in enumerate(out):
            arrays = {n: fr[n].astype(STORE_DTYPES[n]) for n in STORE_DTYPES}
            if self.keep_position:
                arrays["position"] = fr["position"]
            name = f"scene_{i:05d}_f{k}.npz"
            _atomic_savez(self.root / name, arrays)
            files.append(name)
        return i, {
            "split": split_of(i, self.holdout_every),
            "files": files,
            "spec": spec.to_json(),
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


def iter_frames(root: Path, split: str | None = None, limit: int | None = None) -> Iterator[list[Frame]]:
    """Yield each scene's frames (a camera path, in order) of ``split`` ("train", "test" or None = all)."""
    manifest = load_manifest(root)
    n = 0
    for key in sorted(manifest["scenes"], key=int):
        entry = manifest["scenes"][key]
        if split is not None and entry["split"] != split:
            continue
        lighting = scene_lighting(entry["spec"]) if "spec" in entry else {}
        frames = []
        for k, fname in enumerate(entry["files"]):
            with np.load(Path(root) / fname) as z:
                frames.append(Frame(int(key), k, {n_: z[n_] for n_ in z.files} | lighting))
        yield frames
        n += 1
        if limit is not None and n >= limit:
            return
