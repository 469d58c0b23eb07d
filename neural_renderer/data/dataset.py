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
import os
import time
from collections.abc import Callable, Iterator
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
) -> dict[str, Any]:
    """Render scenes ``0..scenes-1`` into ``root`` (skipping those already done); returns the manifest.

    ``size`` is (width, height). Settings must match an existing manifest's (else ``ValueError``): resuming
    with other settings would silently mix two datasets. ``scenes`` may grow on a rerun to extend a dataset.
    ``only_split`` renders just the scenes of that split (e.g. the benchmark's held-out scenes, identical to
    those of a full dataset with the same settings).
    """
    from neural_renderer.data.render import render_scene, select_variant
    from neural_renderer.data.scene import random_scene

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
    for i in range(scenes):
        if str(i) in done or (only_split is not None and split_of(i, holdout_every) != only_split):
            if progress:
                progress(i + 1, scenes)
            continue
        t0 = time.perf_counter()
        spec = random_scene(scene_seed(seed, i), frames=frames)
        out = render_scene(spec, size[0], size[1], spp, seed=i)
        files = []
        for k, fr in enumerate(out):
            arrays = {n: fr[n].astype(STORE_DTYPES[n]) for n in STORE_DTYPES}
            if keep_position:
                arrays["position"] = fr["position"]
            name = f"scene_{i:05d}_f{k}.npz"
            _atomic_savez(root / name, arrays)
            files.append(name)
        done[str(i)] = {
            "split": split_of(i, holdout_every),
            "files": files,
            "spec": spec.to_json(),
            "seconds": round(time.perf_counter() - t0, 3),
            "variant": variant,
        }
        _atomic_write_json(mpath, manifest)
        if progress:
            progress(i + 1, scenes)
    return manifest  # type: ignore[no-any-return]


@dataclass
class Frame:
    """One loaded frame: protocol-named arrays (H, W[, C]) plus where it came from."""

    scene: int
    index: int
    arrays: dict[str, np.ndarray]


def iter_frames(root: Path, split: str | None = None, limit: int | None = None) -> Iterator[list[Frame]]:
    """Yield each scene's frames (a camera path, in order) of ``split`` ("train", "test" or None = all)."""
    manifest = load_manifest(root)
    n = 0
    for key in sorted(manifest["scenes"], key=int):
        entry = manifest["scenes"][key]
        if split is not None and entry["split"] != split:
            continue
        frames = []
        for k, fname in enumerate(entry["files"]):
            with np.load(Path(root) / fname) as z:
                frames.append(Frame(int(key), k, {n_: z[n_] for n_ in z.files}))
        yield frames
        n += 1
        if limit is not None and n >= limit:
            return
