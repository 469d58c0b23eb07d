"""Writing frames to PNG files and an MP4 (imageio + imageio-ffmpeg), shared by ``replay`` and ``demo``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger("nrb.media")


def write_png(path: Path, rgba: np.ndarray) -> None:
    """Save an (H, W, 4) uint8 image as RGB PNG (alpha is always opaque in nrb outputs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(path)


class VideoWriter:
    """H.264 MP4 writer. Frames are padded to even sizes (yuv420p needs them); ``close()`` finishes the file."""

    def __init__(self, path: Path, fps: float) -> None:
        import imageio.v2 as imageio

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer = imageio.get_writer(str(path), fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                          pixelformat="yuv420p", ffmpeg_log_level="error")
        self.frames = 0

    def add(self, rgba: np.ndarray) -> None:
        rgb = rgba[..., :3]
        h, w = rgb.shape[:2]
        if h % 2 or w % 2:
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._writer.append_data(np.ascontiguousarray(rgb))
        self.frames += 1

    def close(self) -> None:
        self._writer.close()


def write_mp4(path: Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write ``frames`` (uint8 RGBA) as an MP4."""
    video = VideoWriter(path, fps)
    try:
        for f in frames:
            video.add(f)
    finally:
        video.close()
    return path
