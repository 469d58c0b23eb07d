"""The runtime package does not drag in the model code: a render server, an engine-side tool or a test importing
any module of ``bridge`` gets neither ``neural_renderer`` nor torch nor the benchmarks (issue 18: they live in
``nrb_bench``, loaded by ``nrb bench`` only when it runs one).

Each check runs in a fresh interpreter, so what other tests imported into this one does not count.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import bridge

#: Packages the runtime must never import: the model code, its framework, the benchmarks (a tools layer).
NOT_RUNTIME = ("neural_renderer", "torch", "nrb_bench")

#: Not importable as modules: ``__main__`` runs the command line; ``demo_hooks`` is a hooks file that ``nrb serve
#: --hooks`` loads by path (its decorators refuse to run outside that); ``_wire_testing`` is the test-only codec bridge.
IMPORT_EVERY_BRIDGE_MODULE = r"""
import importlib, json, pkgutil, sys
import bridge
SKIP = ("__main__", "demo_hooks", "_wire_testing")
names = [m.name for m in pkgutil.walk_packages(bridge.__path__, "bridge.")
         if m.name.rsplit(".", 1)[-1] not in SKIP]
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an optional third-party package this install lacks: not our concern here
        if (exc.name or "").split(".")[0] in ("neural_renderer", "nrb_bench"):
            raise
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


def _fresh(code: str) -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _offending(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in NOT_RUNTIME)


def test_the_server_the_client_and_every_renderer_import_without_the_model_code() -> None:
    got = _fresh(r"""
import importlib, json, pkgutil, sys
import bridge.client, bridge.server, bridge.renderers
for m in pkgutil.iter_modules(bridge.renderers.__path__):
    importlib.import_module("bridge.renderers." + m.name)
print(json.dumps({"imported": [], "modules": sorted(sys.modules)}))
""")
    assert "bridge.renderers.neural" in got["modules"]
    assert _offending(got["modules"]) == []


def test_no_module_of_the_bridge_package_imports_the_model_code_or_the_benchmarks() -> None:
    got = _fresh(IMPORT_EVERY_BRIDGE_MODULE)
    assert "bridge.commands.bench" in got["imported"] and "bridge.server.io_loop" in got["imported"]
    assert _offending(got["modules"]) == []


def test_no_source_file_of_the_bridge_package_imports_the_model_code_even_inside_a_function() -> None:
    """Imports inside functions count too (they run when that code path does: a render server must not need torch
    for any of them). Two deliberate ways lead from ``bridge`` to the model code, each a name in a string, loaded
    only when asked for: ``nrb``'s command table names ``neural_renderer.cli`` (``nrb train`` and friends), and
    ``bridge.renderers.ort_session.TORCH_RUNTIME`` names ``neural_renderer.runtime`` (a device choice that hands the
    neural model to PyTorch)."""
    root = Path(bridge.__file__).resolve().parent
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            found += [f"{path.relative_to(root.parent)}:{node.lineno} {n}" for n in names  # type: ignore[attr-defined]
                      if n.split(".")[0] in NOT_RUNTIME]
    assert found == []


def test_the_renderer_base_module_imports_no_renderer() -> None:
    """``bridge.renderer`` (the ``Renderer`` base class, ``RenderInputs``, the registry) sits below
    ``bridge.renderers`` (the implementations, which import it): it names them as ``"module:attr"`` strings and
    imports none, so the two never form an import cycle."""
    source = (Path(bridge.__file__).resolve().parent / "renderer.py").read_text()
    imported = [n.module or "" for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m.startswith("bridge.renderers")] == []


def test_the_neural_renderer_on_onnx_runtime_renders_without_loading_torch_or_the_model_code() -> None:
    """Rendering a frame with the default runtime on a machine without a GPU (``auto``: ONNX Runtime) imports
    neither torch nor ``neural_renderer``: only a choice of the PyTorch runtime loads ``TORCH_RUNTIME``."""
    got = _fresh(r"""
import json, sys
import numpy as np
from bridge.protocol import Buffer
from bridge.renderer import RenderInputs
from bridge.renderers.neural import NeuralRenderer
from bridge.renderers.ort_session import TORCH_RUNTIME
from bridge.scene import SyntheticScene
bufs, cam = SyntheticScene(64, 48, animate=False).buffers(0.0)
r = NeuralRenderer(device="auto")
style = np.zeros((48, 64, r.styles or 1), np.float32)
style[..., 0] = 1.0
r.render(RenderInputs({b.name: b for b in bufs}, size=(64, 48), camera=cam), style)
print(json.dumps({"imported": [TORCH_RUNTIME, r.device_choice.provider], "modules": sorted(sys.modules)}))
""")
    runtime, provider = got["imported"]
    assert runtime == "neural_renderer.runtime:TorchSession"
    if provider != "PyTorchCUDA":  # on a GPU machine with PyTorch's CUDA and no onnxruntime-gpu, that runtime runs
        assert _offending(got["modules"]) == []
