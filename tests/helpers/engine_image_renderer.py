"""``nrb serve --renderer tests/helpers/engine_image_renderer.py:DeferredWithEngineImage``: the deferred renderer,
asking in WELCOME for the engine's own image (``hudless_color``) and the per-pixel mask (``neural_mask``) as optional
buffers.

The post controls (intensity, exclusions, protocol 5.3) mix the engine's image back in, but libnrb sends only the
buffers WELCOME lists (protocol 5.2, "Nothing else"), and ``nrb serve`` lists only its renderer's own: with the
shipped ``deferred`` renderer a libnrb engine never sends ``hudless_color`` and the controls do nothing. The plugin
end-to-end tests of the controls use this renderer until the server lists the post stage's buffers itself.
"""

from __future__ import annotations

from bridge.protocol import BufferSpec
from bridge.renderers.deferred import DeferredRenderer


class DeferredWithEngineImage(DeferredRenderer):
    name = "deferred"

    def optional(self) -> list[BufferSpec]:
        have = {b.name for b in super().optional()}
        extra = [BufferSpec(n, f) for n, f in (("hudless_color", "rgba8_srgb"), ("neural_mask", "r8")) if n not in have]
        return [*super().optional(), *extra]
