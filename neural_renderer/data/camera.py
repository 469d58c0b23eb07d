"""Camera math shared by the data generator, the temporal path and the tests.

Conventions (protocol §3, §6.1, §8): pixel (0, 0) is the top-left pixel and its centre is at (0.5, 0.5); x
grows right, y grows down. ``linear_depth`` is the view-space distance along the camera's forward axis. Motion
vectors point from the current pixel to where the same surface point was in the previous frame, in pixels
(``mv_scale`` = (1, 1)), x right, y down. Hardware ``depth`` is D3D-style: 0 at ``near``, 1 at ``far``.
"""

from __future__ import annotations

import math

import numpy as np

from neural_renderer.data.scene import Camera


def basis(cam: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, up, forward) unit vectors of a look-at camera."""
    f = np.asarray(cam.target, float) - np.asarray(cam.origin, float)
    f /= np.linalg.norm(f)
    r = np.cross(f, np.asarray(cam.up, float))
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    return r, u, f


def project(cam: Camera, points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """World points (..., 3) -> (pixel coordinates (..., 2) in continuous pixel units, view depth (...))."""
    r, u, f = basis(cam)
    d = points - np.asarray(cam.origin, float)
    z = d @ f
    t = math.tan(cam.fov_y / 2)
    aspect = width / height
    with np.errstate(divide="ignore", invalid="ignore"):
        px = (d @ r) / z / (t * aspect)
        py = (d @ u) / z / t
    pix = np.stack([(px * 0.5 + 0.5) * width, (0.5 - py * 0.5) * height], -1)
    return pix, z


def pixel_centers(width: int, height: int) -> np.ndarray:
    """(H, W, 2) pixel-centre coordinates (x, y)."""
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack([xs, ys], -1)


def motion_vectors(prev: Camera, position: np.ndarray) -> np.ndarray:
    """(H, W, 2) current->previous screen motion in pixels for a static scene seen by ``prev`` last frame.

    ``position`` is the current frame's world position G-buffer (H, W, 3). For background pixels the renderer
    stores a point far along the pixel's ray, so sky pixels get the (rotation-only) motion of the sky and
    reproject sensibly too, as an engine's skybox would.
    """
    h, w = position.shape[:2]
    pix, _ = project(prev, position, w, h)
    return (pix - pixel_centers(w, h)).astype(np.float32)


def hardware_depth(linear: np.ndarray, near: float, far: float) -> np.ndarray:
    """D3D depth in [0, 1] from view depth (standard, not reversed, finite far plane)."""
    z = np.clip(linear, near, far)
    return ((far / (far - near)) * (1.0 - near / z)).astype(np.float32)
