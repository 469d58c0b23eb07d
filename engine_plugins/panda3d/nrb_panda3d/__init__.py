"""nrb_panda3d: the Neural Render Bridge plugin for Panda3D.

    from nrb_panda3d import NeuralRendering
    nrb = NeuralRendering(base)     # one line, after ShowBase()

See :mod:`nrb_panda3d.plugin` for what it does each frame, :mod:`nrb_panda3d.gbuffer` for the G-buffer layout and
:mod:`nrb_panda3d.demo` for the sample game runner behind ``make demo``. ``configure()`` sets up headless EGL
rendering and must run before ``ShowBase()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nrb_panda3d.headless import configure

__version__ = "0.1.0"
__all__ = ["NeuralRendering", "NeuralSettings", "configure", "__version__"]

if TYPE_CHECKING:
    from nrb_panda3d.plugin import NeuralRendering, NeuralSettings


def __getattr__(name: str) -> Any:
    # lazy: importing the package must not open a graphics pipe or import direct.* before configure()
    if name in ("NeuralRendering", "NeuralSettings"):
        from nrb_panda3d import plugin

        return getattr(plugin, name)
    raise AttributeError(name)
