"""Installs by role (issue #18 part 4): the core install is the codec and the client, and nothing else.

A game studio's engine-side tool, a render server on a GPU box and a training machine need different packages.
``pip install neural-render-bridge`` must not drag torch, Mitsuba, Panda3D or ONNX Runtime along, and must still
talk to a server; every ``nrb`` command stays listed, and one whose role is not installed names the extra to
install instead of ending in a traceback.

The first tests run the CLI in this environment with every optional package made unimportable (fast). The last one
is the real thing: a wheel of this checkout installed into a fresh virtual environment with only its core
dependencies, driving a real ``nrb serve`` through libnrb.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from helpers.serverkit import served

ROOT = Path(__file__).resolve().parents[1]
#: Packages only the extras bring (import names).
OPTIONAL = ["torch", "onnx", "onnxruntime", "mitsuba", "panda3d", "direct", "PIL", "matplotlib", "imageio",
            "imageio_ffmpeg", "tqdm", "skimage", "flip_evaluator", "prometheus_client", "ray"]
BLOCK = textwrap.dedent(f"""
    import importlib.abc, sys
    class _Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {OPTIONAL!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, _Missing())
""")


def _nrb_without_extras(*args: str) -> subprocess.CompletedProcess[str]:
    code = BLOCK + f"from bridge.cli import main\nsys.exit(main({list(args)!r}))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_core_dependencies_are_the_codec_and_the_client_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == ["lz4", "msgpack", "numpy", "pyzmq", "zstandard"]
    extras = project["optional-dependencies"]
    assert {"server", "train", "panda3d", "cluster", "all", "test"} <= set(extras)
    assert any(d.startswith("ray") for d in extras["cluster"]) and "cluster" in extras["all"][0]
    assert any(d.startswith("torch") for d in extras["train"])
    assert "onnxruntime" in extras["server"] and "panda3d" in extras["panda3d"]


def test_nrb_lists_every_command_without_the_extras() -> None:
    out = _nrb_without_extras("--help")
    assert out.returncode == 0, out.stderr
    for command in ("serve", "record", "replay", "inspect", "demo", "bench", "keys", "data", "train", "export",
                    "router"):
        assert command in out.stdout


@pytest.mark.parametrize(("argv", "extra"), [
    (["inspect", "capture.nrbcap"], "server"),
    (["train", "--steps", "1"], "train"),
    (["export", "x.pt", "--out", "x.onnx"], "train"),
    (["router", "--port", "0"], "cluster"),
])
def test_a_command_whose_role_is_not_installed_names_the_extra(argv: list[str], extra: str) -> None:
    out = _nrb_without_extras(*argv)
    assert out.returncode == 2
    assert f"pip install 'neural-render-bridge[{extra}]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_core_only_install_talks_to_a_server(tmp_path: Path) -> None:
    """Build a wheel of this checkout, install it with its core dependencies only into a fresh virtual
    environment, check that no optional package came with it, and render frames through libnrb against a real
    ``nrb serve --renderer passthrough`` (started from the full install)."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
         # its own persistent build directory: incremental after the first run, and it never disturbs the
         # editable install's (build/py)
         "-C", "build-dir=build/wheel-core/{wheel_tag}", str(ROOT)],
        capture_output=True, text=True, cwd=ROOT, timeout=1500)
    assert build.returncode == 0, build.stderr[-4000:]
    (wheel,) = wheels.glob("neural_render_bridge-*.whl")
    venv = tmp_path / "core-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    pip = subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-4000:]
    probe = "import importlib.util as u; print(*[m for m in %r if u.find_spec(m)])" % (OPTIONAL,)
    present = subprocess.run([py, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert present.returncode == 0, present.stderr
    assert present.stdout.split() == []  # no optional package came with the core install

    engine = textwrap.dedent("""
        import sys, time
        import numpy as np
        from bridge import _native
        c = _native.Client(endpoint=sys.argv[1], render_size=(64, 32), engine="core-only",
                           buffers=[("hudless_color", "rgba8_srgb")], handshake_timeout_ms=20000)
        got, end = 0, time.monotonic() + 60
        while got < 3 and time.monotonic() < end:
            fid = c.begin()
            c.tag_buffer("hudless_color", "rgba8_srgb", np.full((32, 64, 4), fid % 255, np.uint8))
            c.submit()
            r = c.acquire_result(with_info=True)
            if r is not None:
                got += 1
                del r
            time.sleep(0.02)
        print("results", got, c.stats()["state"])
        c.close()
    """)
    with served(tmp_path, "--renderer", "passthrough") as srv:
        # run from an empty directory: the checkout must not be importable, only the installed wheel
        out = subprocess.run([py, "-c", engine, srv.endpoint], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.split()[:2] == ["results", "3"], out.stdout
    nrb = subprocess.run([str(venv / "bin" / "nrb"), "train"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert nrb.returncode == 2 and "neural-render-bridge[train]" in nrb.stderr
