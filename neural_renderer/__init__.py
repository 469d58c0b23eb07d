"""Neural renderer models (PyTorch) and their ONNX export."""

__all__: list[str] = []
