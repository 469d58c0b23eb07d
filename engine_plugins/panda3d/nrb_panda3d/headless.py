"""Panda3D configuration for headless rendering (EGL on Mesa's llvmpipe or a GPU) and for windowed games.

Call :func:`configure` **before** creating ``ShowBase``: Panda3D reads its configuration when the graphics pipe
is opened.
"""

from __future__ import annotations

from panda3d.core import loadPrcFileData

_CONFIGURED: dict[str, object] = {}


def configure(width: int = 640, height: int = 360, *, headless: bool = True, sync_video: bool = False,
              extra: str = "") -> None:
    """Set the Panda3D config variables the plugin needs.

    ``headless``: render into an offscreen EGL buffer (``load-display p3headlessgl``, ``window-type offscreen``),
    no X server needed. ``textures-power-2 none`` keeps render-to-texture targets exactly the window size, so
    G-buffers read back without padding.
    """
    lines = [
        f"win-size {int(width)} {int(height)}",
        "textures-power-2 none",
        f"sync-video {'true' if sync_video else 'false'}",
        "framebuffer-srgb false",
        "notify-level warning",
        "notify-level-display error",
        "notify-level-device fatal",  # headless machines have no /dev/input
        "audio-library-name null",
        "gl-debug false",
    ]
    if headless:
        lines += ["load-display p3headlessgl", "window-type offscreen", "aux-display p3headlessgl"]
    if extra:
        lines.append(extra)
    loadPrcFileData("nrb_panda3d", "\n".join(lines) + "\n")
    _CONFIGURED.update(width=width, height=height, headless=headless)
