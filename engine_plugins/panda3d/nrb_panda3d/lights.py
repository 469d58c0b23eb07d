"""The scene's sun and ambient light as the protocol's lighting constants (docs/protocol.md §6.1).

A neural renderer cannot see lights in the G-buffers: the sun's direction and strength decide where shadows fall
and how bright lit surfaces are, and without them it can only assume the light it was trained under. So each frame
the plugin sends the lights the scene is lit by (the ``LightAttrib`` on the scene root, what ``setLight`` turned
on) as three 1×1 ``rgba32f`` buffers:

* ``x_sun_direction``: unit vector towards the strongest ``DirectionalLight``, protocol world space (+Y up);
* ``x_sun_irradiance``: its irradiance, linear RGB. Panda3D's Lambert term is ``albedo · colour · n·l`` while a
  surface under irradiance E reflects ``albedo · E / π · n·l``, so E = π · colour;
* ``x_sky_radiance``: the summed ``AmbientLight`` colours (an ambient term ``albedo · L`` is a uniform sky of
  radiance L).

A scene without a directional light sends no sun, one without ambient light no sky; the renderer then assumes
its own defaults.
"""

from __future__ import annotations

import math

import numpy as np
from panda3d.core import AmbientLight, DirectionalLight, LightAttrib, NodePath

from bridge._native import BUFFER_X_SKY_RADIANCE, BUFFER_X_SUN_DIRECTION, BUFFER_X_SUN_IRRADIANCE
from bridge.protocol import LIGHTING_CONSTANTS
from nrb_panda3d.camera import PANDA_TO_WORLD

#: The buffers :func:`scene_lighting` may return: name → format.
LIGHTING_FORMATS: dict[str, str] = {name: "rgba32f" for name in LIGHTING_CONSTANTS}


def _constant(v: np.ndarray) -> np.ndarray:
    out = np.zeros((1, 1, 4), np.float32)
    out[0, 0, :3] = v
    return out


def scene_lighting(scene: NodePath) -> dict[str, tuple[str, np.ndarray]]:
    """The lights on ``scene`` as wire buffers ``{name: (format, (1, 1, 4) float32)}`` (see the module
    docstring)."""
    attrib = scene.getAttrib(LightAttrib)
    if attrib is None:
        return {}
    sun: tuple[float, np.ndarray, np.ndarray] | None = None
    sky = np.zeros(3)
    for i in range(attrib.getNumOnLights()):
        np_ = attrib.getOnLight(i)
        light = np_.node()
        color = np.array(light.getColor())[:3]
        if isinstance(light, AmbientLight):
            sky += color
        elif isinstance(light, DirectionalLight):
            # the light shines along its direction (local space); the protocol wants the way towards it
            shine = np.array(np_.getMat(scene).xformVec(light.getDirection()))
            norm = float(np.linalg.norm(shine))
            if norm == 0.0:
                continue
            towards = PANDA_TO_WORLD @ (-shine / norm)
            strength = float(color.mean())
            if sun is None or strength > sun[0]:
                sun = (strength, towards, color * math.pi)
    out: dict[str, tuple[str, np.ndarray]] = {}
    if sun is not None:
        out[BUFFER_X_SUN_DIRECTION] = ("rgba32f", _constant(sun[1]))
        out[BUFFER_X_SUN_IRRADIANCE] = ("rgba32f", _constant(sun[2]))
    if sky.any():
        out[BUFFER_X_SKY_RADIANCE] = ("rgba32f", _constant(sky))
    return out
