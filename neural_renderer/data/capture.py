"""Engine captures (``nrb record``, ``bridge.capture``) as a training dataset.

A game team records sessions of its own game and fine-tunes on them::

    nrb record game.nrbcap --renderer deferred ...        # engine sends hudless_color among its buffers
    nrb train --data game.nrbcap data/synth --out runs/game

Per captured FRAME the loader returns the same protocol-named arrays as the synthetic dataset (``albedo``
linear,
``normals``, ``linear_depth`` via ``RenderInputs.linear_depth()``, ``roughness``, ``metallic``, ``emissive``,
``motion_vectors`` in pixels, ``object_id``, and the lighting constants ``x_sun_direction`` /
``x_sun_irradiance`` / ``x_sky_radiance`` (3,) when the engine sent them) plus ``target``: the image to learn,
display sRGB in [0, 1]:

* ``hudless_color`` when the engine sent it (the game's own final look, no UI): the usual case; else
* the RESULT's ``output`` pixels (distilling whatever renderer served the session, e.g. a slow high-quality
  one).

A capture only shows one look, so its frames teach the neutral styles (``identity`` / ``photoreal``); the
other styles keep coming from the synthetic data. Split: consecutive frames of a session form paths of up to
``PATH_LEN``; every 10th path is held out (``"test"``), so held-out frames are never next to training frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bridge.capture import CaptureReader
from bridge.protocol import LIGHTING_CONSTANTS, Frame, Result
from bridge.renderer import RenderInputs, linear_to_srgb

PATH_LEN = 8
HOLDOUT_EVERY = 10


def _frame_arrays(frame: Frame, result: Result | None) -> dict[str, np.ndarray] | None:
    bufs = {b.name: b for b in frame.buffers}
    if not bufs:
        return None
    first = bufs.get("albedo", next(iter(bufs.values())))
    inp = RenderInputs(bufs, size=(first.width, first.height), camera=frame.camera)
    if "hudless_color" in inp:
        target = linear_to_srgb(inp["hudless_color"][..., :3])  # RenderInputs decoded it to linear
    elif result is not None and result.output is not None and result.output.data is not None:
        out = RenderInputs({"output": result.output}, size=(result.output.width, result.output.height))
        target = linear_to_srgb(out["output"][..., :3])
    else:
        return None
    if not all(n in inp for n in ("albedo", "normals")) or not ("depth" in inp or "linear_depth" in inp):
        return None
    h, w = target.shape[:2]

    def get(name: str, ch: int, default: float) -> np.ndarray:
        a = inp[name][..., :ch] if name in inp else np.full((h, w, ch), default, np.float32)
        return a[..., 0] if ch == 1 else a

    mv = get("motion_vectors", 2, 0.0)
    if "motion_vectors" in inp and frame.camera is not None and frame.camera.mv_scale is not None:
        mv = mv * np.asarray(frame.camera.mv_scale[:2], np.float32)
    ids = inp.ids("object_id")
    lighting = {}
    for name in LIGHTING_CONSTANTS:
        try:
            value = inp.constant(name, 3)
        except ValueError:  # the renderer refused this frame's constant too; train it on the defaults
            value = None
        if value is not None:
            lighting[name] = value
    return lighting | {
        "albedo": inp["albedo"][..., :3],
        "normals": inp["normals"][..., :3],
        "linear_depth": inp.linear_depth(),
        "roughness": get("roughness", 1, 0.5),
        "metallic": get("metallic", 1, 0.0),
        "emissive": get("emissive", 3, 0.0),
        "motion_vectors": mv,
        "object_id": (ids if ids is not None else np.zeros((h, w))).astype(np.uint16),
        "target": np.asarray(target, np.float32),
    }


def capture_files(root: Path) -> list[Path]:
    root = Path(root)
    return [root] if root.is_file() else sorted(root.glob("*.nrbcap"))


def iter_capture_paths(root: Path, split: str | None = "train") -> Iterator[list[dict[str, np.ndarray]]]:
    """Camera paths (lists of consecutive frames' arrays) from a capture file or a directory of them."""
    k = 0
    for path in capture_files(root):
        with CaptureReader(path) as reader:
            cur: list[dict[str, np.ndarray]] = []
            last: tuple[int, int] | None = None
            for cf in reader.frames():
                if cf.style_only:
                    continue
                frame = cf.decode()
                res = cf.decode_result()
                arrays = _frame_arrays(frame, res if isinstance(res, Result) else None)
                reset = frame.camera is not None and bool(frame.camera.reset)
                contiguous = last is not None and last == (cf.session, cf.frame - 1) and not reset
                if cur and (not contiguous or len(cur) >= PATH_LEN or arrays is None):
                    if split is None or _split(k) == split:
                        yield cur
                    k += 1
                    cur = []
                if arrays is not None:
                    if cur and arrays["target"].shape != cur[-1]["target"].shape:
                        cur = []
                    cur.append(arrays)
                last = (cf.session, cf.frame)
            if cur:
                if split is None or _split(k) == split:
                    yield cur
                k += 1


def _split(path_index: int) -> str:
    return "test" if path_index % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 else "train"
