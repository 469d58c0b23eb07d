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

The scene's other lights go out as the light list ``x_lights`` (protocol §6.1) through libnrb
(:func:`scene_light_list` gives the dicts ``Client.set_lights`` takes, nrb.h ``nrb_frame_set_lights``): every
``PointLight``, ``Spotlight`` and ``DirectionalLight`` that some node's ``setLight`` turns on, except the sun above.
Panda3D's conventions become the protocol's so:

* **Position, direction**: protocol world space (+Y up) of the light node; a ``Spotlight`` shines along its node's
  forward axis (+Y, what ``lookAt`` aims), a ``DirectionalLight`` along its ``getDirection()``.
* **Colour and falloff**: Panda3D lights a surface with ``albedo · colour · n·l / (c + l·d + q·d²)`` (attenuation
  ``(c, l, q)``), where the protocol's point light gives ``albedo · I / (π d²) · n·l``. Inverse square cannot follow
  Panda3D's constant and linear terms at every distance, so the two are matched at a reference distance ``d_r``
  (``reference_distance``, 2 world units by default: the few metres at which a game's lamps light what is around
  them): ``I = π · colour · d_r² / (c + l·d_r + q·d_r²)``; a purely quadratic light (``c = l = 0``) matches at every
  distance, ``I = π · colour / q``. A light's ``max_distance``, when finite, is its range. A ``DirectionalLight``'s
  irradiance is ``π · colour``, as for the sun.
* **Spot cone**: Panda3D cuts a ``Spotlight`` off at half its lens's field of view and fades it by ``cos^exponent``
  inside; the protocol's cone fades by a smoothstep between two angles. The outer angle is the cut-off; the inner
  one is where ``cos^exponent`` has fallen to a half (no further in than 85 % of the outer angle, so a narrow
  bright spot keeps a soft but short edge).

Light linking (``setLightOff`` on a subtree, lights on one subtree only) has no per-pixel form in the protocol, so
the plugin sends the lights of the **zone the camera is in**: the deepest node with its own ``setLight`` /
``setLightOff`` whose bounds contain the camera (:func:`lighting_zone`; the scene root when none does), whose net
light state (what Panda3D lights that subtree with) gives the sun, the sky and the list. Inside the demo's crypt
that is the torches, the blue spot and the crypt's faint ambient, without the arena's sun; a zone lit without a
directional light sends a zero ``x_sun_irradiance`` (the lighting constants' "no sun", as the training data's
night scenes have), so a renderer does not fall back to its own default sun.
"""

from __future__ import annotations

import math

import numpy as np
from panda3d.core import (
    AmbientLight,
    DirectionalLight,
    LightAttrib,
    NodePath,
    Point3,
    PointLight,
    Spotlight,
    Vec3,
)

from bridge._native import (
    BUFFER_X_LIGHTS,
    BUFFER_X_SKY_RADIANCE,
    BUFFER_X_SUN_DIRECTION,
    BUFFER_X_SUN_IRRADIANCE,
    MAX_LIGHTS,
)
from bridge.protocol import LIGHTING_CONSTANTS
from nrb_panda3d.camera import PANDA_TO_WORLD

#: The lighting buffers the plugin offers: :func:`scene_lighting`'s constants and the light list: name → format.
LIGHTING_FORMATS: dict[str, str] = {**{name: "rgba32f" for name in LIGHTING_CONSTANTS}, BUFFER_X_LIGHTS: "rgba32f"}
#: Where a light's Panda3D attenuation and the protocol's inverse square agree (world units; module docstring).
REFERENCE_DISTANCE = 2.0


def _constant(v: np.ndarray) -> np.ndarray:
    out = np.zeros((1, 1, 4), np.float32)
    out[0, 0, :3] = v
    return out


def _shine(np_: NodePath, scene: NodePath, local: object) -> np.ndarray | None:
    """The unit protocol-world direction of ``local`` (a vector in ``np_``'s space), or None for a zero one."""
    v = np.array(np_.getMat(scene).xformVec(local))
    norm = float(np.linalg.norm(v))
    return None if norm == 0.0 else PANDA_TO_WORLD @ (v / norm)


def _zone_attrib(scene: NodePath, zone: NodePath | None) -> LightAttrib | None:
    """The lights ``zone`` is lit with (its net light state), or ``scene``'s own ``setLight`` without a zone."""
    if zone is None or zone == scene:
        return scene.getAttrib(LightAttrib)
    attrib = zone.getNetState().getAttrib(LightAttrib)
    return attrib if attrib is not None else scene.getAttrib(LightAttrib)


def lighting_zone(scene: NodePath, viewpoint: NodePath) -> NodePath:
    """The node whose lights light where ``viewpoint`` (the camera) is: the deepest node under ``scene`` with a
    light state of its own (``setLight`` / ``setLightOff``) whose bounds contain the viewpoint; ``scene`` when none
    does (module docstring)."""
    best, depth = scene, -1
    for node in scene.findAllMatches("**"):
        if node == scene or node.node().getAttrib(LightAttrib) is None or node.node().isGeomNode():
            continue
        bounds = node.getBounds()
        if bounds.isEmpty() or bounds.isInfinite():
            continue
        if bounds.contains(node.getRelativePoint(viewpoint, Point3(0, 0, 0))) and node.getNumNodes() > depth:
            best, depth = node, node.getNumNodes()
    return best


def _sun(scene: NodePath, zone: NodePath | None = None) -> tuple[NodePath, np.ndarray, np.ndarray] | None:
    """The strongest ``DirectionalLight`` turned on at ``scene`` (or lighting ``zone``): (node, unit vector towards
    it, irradiance)."""
    attrib = _zone_attrib(scene, zone)
    if attrib is None:
        return None
    best: tuple[float, NodePath, np.ndarray, np.ndarray] | None = None
    for i in range(attrib.getNumOnLights()):
        np_ = attrib.getOnLight(i)
        light = np_.node()
        if not isinstance(light, DirectionalLight):
            continue
        shine = _shine(np_, scene, light.getDirection())  # it shines along its direction; the protocol wants the
        if shine is None:                                   # way towards it
            continue
        color = np.array(light.getColor())[:3]
        strength = float(color.mean())
        if best is None or strength > best[0]:
            best = (strength, np_, -shine, color * math.pi)
    return None if best is None else best[1:]


def scene_lighting(scene: NodePath, zone: NodePath | None = None) -> dict[str, tuple[str, np.ndarray]]:
    """The lights on ``scene`` (or lighting ``zone``, :func:`lighting_zone`) as wire buffers ``{name: (format,
    (1, 1, 4) float32)}`` (see the module docstring)."""
    attrib = _zone_attrib(scene, zone)
    if attrib is None:
        return {}
    sky = np.zeros(3)
    for i in range(attrib.getNumOnLights()):
        light = attrib.getOnLight(i).node()
        if isinstance(light, AmbientLight):
            sky += np.array(light.getColor())[:3]
    out: dict[str, tuple[str, np.ndarray]] = {}
    if (sun := _sun(scene, zone)) is not None:
        out[BUFFER_X_SUN_DIRECTION] = ("rgba32f", _constant(sun[1]))
        out[BUFFER_X_SUN_IRRADIANCE] = ("rgba32f", _constant(sun[2]))
    elif zone is not None and zone != scene and attrib.getNumOnLights() > 0:  # a zone lit without a sun: say so
        out[BUFFER_X_SUN_DIRECTION] = ("rgba32f", _constant(np.array([0.0, 1.0, 0.0])))
        out[BUFFER_X_SUN_IRRADIANCE] = ("rgba32f", _constant(np.zeros(3)))
    if sky.any():
        out[BUFFER_X_SKY_RADIANCE] = ("rgba32f", _constant(sky))
    return out


def _lights_turned_on(scene: NodePath) -> list[NodePath]:
    """Every light some node under ``scene`` (``scene`` included) turns on with ``setLight``, once each, in the order
    found."""
    seen: dict[NodePath, None] = {}
    for node in [scene, *scene.findAllMatches("**")]:
        attrib = node.node().getAttrib(LightAttrib)
        if attrib is None:
            continue
        for i in range(attrib.getNumOnLights()):
            seen.setdefault(attrib.getOnLight(i))
    return list(seen)


def _intensity(color: np.ndarray, attenuation: object, reference_distance: float) -> np.ndarray | None:
    """Radiant intensity I matching Panda3D's ``colour / (c + l d + q d²)`` (module docstring), or None when the
    attenuation gives no light."""
    c, lin, q = (float(x) for x in attenuation)  # type: ignore[attr-defined]
    if c == 0.0 and lin == 0.0 and q > 0.0:
        return color * math.pi / q
    d = reference_distance
    denom = c + lin * d + q * d * d
    return None if denom <= 0.0 else color * math.pi * d * d / denom


def _cone(spot: Spotlight) -> tuple[float, float]:
    """(inner, outer) cone half-angles in radians for a ``Spotlight`` (module docstring)."""
    outer = math.radians(float(spot.getLens().getFov()[0]) / 2.0)
    exponent = float(spot.getExponent())
    half = math.acos(0.5 ** (1.0 / exponent)) if exponent > 0.0 else outer
    return min(half, 0.85 * outer), outer


def scene_light_list(scene: NodePath, zone: NodePath | None = None,
                     reference_distance: float = REFERENCE_DISTANCE) -> list[dict[str, object]]:
    """The point, spot and directional lights but the sun, as ``Client.set_lights`` dicts (protocol §6.1
    ``x_lights``; conventions in the module docstring): every one some node of ``scene`` turns on, or with a
    lighting ``zone`` the ones lighting it and those its own nodes turn on; at most ``MAX_LIGHTS``, the strongest
    first."""
    sun = _sun(scene, zone)
    if zone is None or zone == scene:
        candidates = _lights_turned_on(scene)
    else:
        attrib = _zone_attrib(scene, zone)
        net = [attrib.getOnLight(i) for i in range(attrib.getNumOnLights())] if attrib is not None else []
        candidates = list(dict.fromkeys([*net, *_lights_turned_on(zone)]))
    out: list[tuple[float, dict[str, object]]] = []
    for np_ in candidates:
        if sun is not None and np_ == sun[0]:
            continue
        light = np_.node()
        color = np.array(light.getColor())[:3]
        if not color.any() or np_.isHidden():
            continue
        entry: dict[str, object]
        if isinstance(light, DirectionalLight):
            shine = _shine(np_, scene, light.getDirection())
            if shine is None:
                continue
            rgb = color * math.pi
            entry = {"type": "directional", "color": rgb, "direction": shine}
        elif isinstance(light, (PointLight, Spotlight)):
            rgb_or_none = _intensity(color, light.getAttenuation(), reference_distance)
            if rgb_or_none is None:
                continue
            rgb = rgb_or_none
            entry = {"type": "point", "color": rgb, "position": PANDA_TO_WORLD @ np.array(np_.getPos(scene))}
            reach = float(light.getMaxDistance())
            if math.isfinite(reach) and reach > 0.0:
                entry["range"] = reach
            if isinstance(light, Spotlight):
                axis = _shine(np_, scene, Vec3(0.0, 1.0, 0.0))  # a lens looks down its node's +Y
                if axis is None:
                    continue
                inner, outer = _cone(light)
                entry.update(type="spot", direction=axis, inner=inner, outer=outer)
        else:
            continue
        out.append((float(np.max(rgb)), entry))
    out.sort(key=lambda t: -t[0])
    return [e for _, e in out[:MAX_LIGHTS]]
