"""Built-in renderers. Each is registered by name in ``bridge.renderer.RENDERERS`` (resolved lazily)."""
