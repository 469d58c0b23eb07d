"""Camera constants (docs/protocol.md section 8) from Panda3D's camera, in the protocol's conventions.

Conventions:

* **World**: the protocol's world is right-handed and **+Y up** (like the training data of the neural renderer).
  Panda3D's world is right-handed and +Z up; a Panda point ``(x, y, z)`` is ``(x, z, -y)`` in protocol world. The
  G-buffer shader applies the same conversion to the normals it writes, so normals, camera vectors and matrices all
  live in one space.
* **View**: right-handed, x right, y up, the camera looks down **-Z** (``linear_depth`` is the distance along -Z).
* **Clip**: ``clip = view_to_clip · view`` (column vectors, row-major storage) with depth in **[0, 1]**:
  ``depth = clip.z / clip.w`` is exactly the hardware ``depth`` buffer value (0 at ``near``, 1 at ``far``; OpenGL's
  window depth equals this for the default depth range), no reversed Z, finite far plane.
* **Motion vectors**: current pixel → where the surface was in the previous frame, in pixels, x right, y down
  (``mv_scale`` = (1, 1)), camera motion included, not jittered, 2D.

The functions here are plain numpy so that they can be tested without a graphics pipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Panda3D world (Z-up) → protocol world (Y-up), column-vector 3×3.
PANDA_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def panda_mat_to_np(mat: object) -> np.ndarray:
    """A Panda3D ``LMatrix4`` (row-vector convention) as a 4×4 float64 array in the same layout."""
    return np.array([[mat.getCell(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)  # type: ignore[attr-defined]


def perspective(fov_y: float, aspect: float, near: float, far: float) -> np.ndarray:
    """Right-handed perspective, view looks down -Z, depth 0 at near and 1 at far (column vectors)."""
    if not (0.0 < fov_y < math.pi) or aspect <= 0 or near <= 0 or far <= near:
        raise ValueError(f"bad projection fov_y={fov_y} aspect={aspect} near={near} far={far}")
    f = 1.0 / math.tan(fov_y / 2.0)
    return np.array([
        [f / aspect, 0.0, 0.0, 0.0],
        [0.0, f, 0.0, 0.0],
        [0.0, 0.0, far / (near - far), near * far / (near - far)],
        [0.0, 0.0, -1.0, 0.0],
    ])


@dataclass
class CameraPose:
    """A camera in protocol world space: position and unit right/up/forward vectors."""

    position: np.ndarray
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray

    @classmethod
    def from_panda_matrix(cls, cam_to_world: np.ndarray) -> CameraPose:
        """From Panda3D's camera-to-world matrix (``camera.getMat(render)`` as numpy, row-vector layout: rows 0, 1,
        2 are the camera's x (right), y (forward), z (up) axes, row 3 its position)."""
        m = np.asarray(cam_to_world, np.float64)

        def unit(v: np.ndarray) -> np.ndarray:
            return v / max(float(np.linalg.norm(v)), 1e-12)

        right = unit(PANDA_TO_WORLD @ m[0, :3])
        forward = unit(PANDA_TO_WORLD @ m[1, :3])
        up = unit(PANDA_TO_WORLD @ m[2, :3])
        return cls(PANDA_TO_WORLD @ m[3, :3], right, up, forward)

    def world_to_view(self) -> np.ndarray:
        """4×4 view matrix (column vectors): rows right, up, -forward."""
        r = np.stack([self.right, self.up, -self.forward])
        out = np.eye(4)
        out[:3, :3] = r
        out[:3, 3] = -r @ self.position
        return out


@dataclass
class CameraConstants:
    """Everything ``nrb_camera`` carries, filled for one frame."""

    view_to_clip: np.ndarray
    clip_to_view: np.ndarray
    clip_to_prev_clip: np.ndarray
    prev_clip_to_clip: np.ndarray
    world_to_view: np.ndarray
    position: np.ndarray
    up: np.ndarray
    right: np.ndarray
    forward: np.ndarray
    near: float
    far: float
    fov_y: float
    aspect: float
    render_size: tuple[int, int]
    output_size: tuple[int, int]
    jitter: tuple[float, float] = (0.0, 0.0)
    mv_scale: tuple[float, float] = (1.0, 1.0)
    reset: bool = False
    extras: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """Keyword form for ``Client.set_camera`` (matrices as row-major lists of 16 floats)."""
        def m(a: np.ndarray) -> list[float]:
            return [float(x) for x in np.asarray(a, np.float64).reshape(16)]

        def v(a: np.ndarray) -> list[float]:
            return [float(x) for x in a]

        return {
            "view_to_clip": m(self.view_to_clip), "clip_to_view": m(self.clip_to_view),
            "clip_to_prev_clip": m(self.clip_to_prev_clip), "prev_clip_to_clip": m(self.prev_clip_to_clip),
            "world_to_view": m(self.world_to_view), "position": v(self.position), "up": v(self.up),
            "right": v(self.right), "forward": v(self.forward), "near": float(self.near), "far": float(self.far),
            "fov_y": float(self.fov_y), "aspect": float(self.aspect), "jitter": list(self.jitter),
            "mv_scale": list(self.mv_scale), "depth_inverted": False, "depth_infinite": False, "mv_jittered": False,
            "mv_3d": False, "mv_dilated": False, "camera_motion_included": True, "orthographic": False,
            "reset": bool(self.reset), "render_size": list(self.render_size), "output_size": list(self.output_size),
        }


class CameraTracker:
    """Keeps the previous frame's view-projection so that each frame gets its reprojection matrices."""

    def __init__(self) -> None:
        self._prev_view_proj: np.ndarray | None = None

    def reset(self) -> None:
        self._prev_view_proj = None

    def update(self, cam_to_world_panda: np.ndarray, fov_y: float, aspect: float, near: float, far: float,
               render_size: tuple[int, int], output_size: tuple[int, int] | None = None) -> CameraConstants:
        pose = CameraPose.from_panda_matrix(cam_to_world_panda)
        proj = perspective(fov_y, aspect, near, far)
        view = pose.world_to_view()
        view_proj = proj @ view
        reset = self._prev_view_proj is None
        prev = view_proj if self._prev_view_proj is None else self._prev_view_proj
        # clip -> world -> previous clip
        clip_to_prev = prev @ np.linalg.inv(view_proj)
        self._prev_view_proj = view_proj
        return CameraConstants(
            view_to_clip=proj, clip_to_view=np.linalg.inv(proj), clip_to_prev_clip=clip_to_prev,
            prev_clip_to_clip=np.linalg.inv(clip_to_prev), world_to_view=view, position=pose.position, up=pose.up,
            right=pose.right, forward=pose.forward, near=near, far=far, fov_y=fov_y, aspect=aspect,
            render_size=render_size, output_size=output_size or render_size, reset=reset,
        )


def linear_to_hardware_depth(z: np.ndarray, near: float, far: float) -> np.ndarray:
    """View distance → [0, 1] depth of :func:`perspective` (for tests)."""
    return (far / (far - near)) * (1.0 - near / np.asarray(z, np.float64))
