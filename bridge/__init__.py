"""Neural Render Bridge: engine-side and server-side Python for the NRB/1 protocol."""

__all__: list[str] = []
