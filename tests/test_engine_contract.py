"""nrb.h is the engine contract: its buffer-name and format constants are exactly docs/protocol.md's tables and the
Python codec's vocabulary (so the three cannot drift again), bindings re-export them rather than re-typing them, and
no engine plugin carries a msgpack encoder or a buffer-name literal of its own. bridge._native, which the wheel
ships, contains no test-only code (protocol_json.hpp, nlohmann-json: those are in bridge._wire_testing)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bridge import protocol
from bridge.lights import X_LIGHTS

ROOT = Path(__file__).resolve().parent.parent
NRB_H = ROOT / "cpp" / "include" / "nrb" / "nrb.h"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
#: Plugin sources that talk to libnrb (the Panda3D plugin goes through bridge._native).
PLUGIN_SOURCES = [
    *sorted((ROOT / "engine_plugins" / "godot" / "src").glob("*.[ch]pp")),
    *sorted((ROOT / "engine_plugins" / "godot" / "src").glob("*.h")),
    *sorted((ROOT / "engine_plugins" / "unreal" / "NeuralRenderBridge" / "Source").rglob("*.cpp")),
    *sorted((ROOT / "engine_plugins" / "unreal" / "NeuralRenderBridge" / "Source").rglob("*.h")),
]


def header_buffer_names() -> list[str]:
    """The NRB_BUFFER_* string constants of nrb.h, in order."""
    return re.findall(r'^#define NRB_BUFFER_[A-Z0-9_]+ "([a-z0-9_]+)"', NRB_H.read_text(), re.M)


def header_formats() -> list[str]:
    """The nrb_format enumerators after UNKNOWN, lower-cased: the wire names they stand for."""
    enum = re.search(r"typedef uint32_t nrb_format;\s*enum \{(.*?)\};", NRB_H.read_text(), re.S)
    assert enum
    return [n.lower() for n in re.findall(r"NRB_FORMAT_([A-Z0-9_]+) = \d+", enum.group(1)) if n != "UNKNOWN"]


def doc_section(title: str) -> str:
    text = PROTOCOL_MD.read_text()
    start = text.index(title)
    return text[start:text.index("\n### ", start + 1)]


def doc_buffer_names() -> list[str]:
    """First-column names of every table in section 6.1 (standard names, NRB additions, lighting constants)."""
    return re.findall(r"^\| `([a-z0-9_]+)` \|", doc_section("### 6.1 Names"), re.M)


def doc_formats() -> list[str]:
    return re.findall(r"^\| `([a-z0-9_]+)` \|", doc_section("### 6.2 Formats"), re.M)


#: names nrb.h appended after ABI 1 froze (nrb_buffer_name(i) keeps each index's name), in the order added
ADDED_AFTER_ABI_1 = ["neural_mask", "x_lights"]


def test_nrb_h_buffer_names_are_the_protocol_tables_and_the_python_codecs() -> None:
    names = header_buffer_names()
    doc = doc_buffer_names()
    assert names == [n for n in doc if n not in ADDED_AFTER_ABI_1] + ADDED_AFTER_ABI_1
    assert set(names) == set(protocol.BUFFER_NAMES) | set(protocol.LIGHTING_CONSTANTS) | {X_LIGHTS}
    assert len(names) == len(set(names))
    count = re.search(r"#define NRB_BUFFER_NAME_COUNT (\d+)", NRB_H.read_text())
    assert count and int(count.group(1)) == len(names)


def test_nrb_h_formats_are_the_protocol_table_and_the_python_codecs() -> None:
    formats = header_formats()
    assert formats == doc_formats() == list(protocol.FORMATS)
    count = re.search(r"#define NRB_FORMAT_COUNT (\d+)", NRB_H.read_text())
    assert count and int(count.group(1)) == len(formats)


def test_python_binding_re_exports_nrb_h_constants() -> None:
    """bridge._native takes its constants from libnrb (nrb_buffer_name, nrb_format_name), for Python engines."""
    native = pytest.importorskip("bridge._native")
    assert list(native.BUFFER_NAMES) == header_buffer_names()
    assert native.BUFFER_ALBEDO == "albedo" and native.BUFFER_X_SUN_DIRECTION == "x_sun_direction"
    assert list(native.FORMATS) == header_formats()
    assert native.ABI_VERSION == 1


def test_native_module_contains_no_test_only_code() -> None:
    """The codec's JSON bridge (protocol_json.hpp, nlohmann-json) is in the test-only bridge._wire_testing, not in
    bridge._native, which a wheel ships."""
    native = pytest.importorskip("bridge._native")
    assert not hasattr(native, "wire_encode") and not hasattr(native, "wire_decode")
    assert b"nlohmann" not in Path(native.__file__).read_bytes()
    client = (ROOT / "cpp" / "python" / "client_module.cpp").read_text()
    assert re.findall(r'#include\s+"([^"]+)"', client) == ["nrb/nrb.hpp"]  # public headers only


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: p.name)
def test_plugin_has_no_buffer_name_literal(path: Path) -> None:
    """Plugins name buffers through NRB_BUFFER_*. ("position" is also a camera key of section 8, which is what the
    Godot plugin reads it as, so it is not a buffer-name use.)"""
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", path.read_text(), flags=re.S)
    literals = set(re.findall(r'"([a-z0-9_]+)"', code))
    assert not (literals & (set(header_buffer_names()) - {"position"})), path


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: p.name)
def test_plugin_has_no_msgpack_encoder(path: Path) -> None:
    """Event params go through nrb_params; no plugin writes msgpack type bytes (fixmap 0x80, str8 0xd9, float64 0xcb,
    map16 0xde, ...) or passes raw bytes to nrb_fire_event."""
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", path.read_text(), flags=re.S)
    assert not re.search(r"0x(80|8f|90|a0|c[0-9a-f]|d[0-9a-f]|df)\b", code, re.I), path
    assert not re.search(r"\bnrb_fire_event\s*\(", code), path


def _configure_python_build(tmp_path: Path, state: str) -> tuple[set[str], str]:
    """Configures (no compile) the tree as scikit-build-core does for a `state` build ("wheel", "editable"):
    the targets it would build and its install script."""
    import shutil
    import subprocess

    if shutil.which("cmake") is None:
        pytest.skip("needs cmake")
    pybind = subprocess.run([sys.executable, "-m", "pybind11", "--cmakedir"], capture_output=True, text=True)
    if pybind.returncode != 0:
        pytest.skip("pybind11 is not installed")
    build = tmp_path / state
    proc = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DNRB_BUILD_PYTHON=ON", "-DSKBUILD=2",
                           f"-DSKBUILD_STATE={state}", f"-Dpybind11_DIR={pybind.stdout.strip()}",
                           f"-DPython_EXECUTABLE={sys.executable}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    makefile = (build / "cpp" / "Makefile").read_text() if (build / "cpp" / "Makefile").exists() else ""
    ninja = (build / "build.ninja").read_text() if (build / "build.ninja").exists() else ""
    targets = {t for t in ("_native", "_wire_testing") if f"{t}." in makefile + ninja or f" {t}:" in makefile}
    return targets, (build / "cpp" / "cmake_install.cmake").read_text()


def test_wheel_build_ships_neither_test_code_nor_a_second_libnrb(tmp_path: Path) -> None:
    """A wheel build (what `pip install .` and `pip wheel .` run) builds bridge._native only, and installs neither
    the test-only bridge._wire_testing nor libnrb's CMake package; an editable (developer) build adds the test-only
    module for the Python tests."""
    targets, install = _configure_python_build(tmp_path, "wheel")
    assert targets == {"_native"}
    assert "_wire_testing" not in install and "nrbConfig.cmake" not in install
    targets, install = _configure_python_build(tmp_path, "editable")
    assert targets == {"_native", "_wire_testing"}


PANDA3D_SOURCES = sorted((ROOT / "engine_plugins" / "panda3d").rglob("*.py"))


@pytest.mark.parametrize("path", PANDA3D_SOURCES, ids=lambda p: p.name)
def test_panda3d_plugin_names_buffers_through_the_native_constants(path: Path) -> None:
    """The Panda3D plugin (Python) takes buffer names from ``bridge._native.BUFFER_*`` (nrb.h's NRB_BUFFER_*), never
    from a string of its own: any string constant in its code (docstrings aside) equal to a buffer name is one.
    ("position" is also section 8's camera key, which is how the plugin uses it.)"""
    import ast

    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    names = set(header_buffer_names()) - {"position"}
    found = [f"{path.name}:{node.lineno} {node.value!r}" for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
             and id(node) not in docstrings]
    assert found == []
