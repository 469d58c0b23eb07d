"""libnrb's C ABI version 1, frozen the way an engine consumes it: libnrb is installed into a temporary prefix with
CMake's install rules, a tiny consumer project finds it with ``find_package(nrb)`` and builds
tests/c_abi/nrb_abi_v1.c, a C99 program (``-Wall -Wextra -Werror -pedantic``) that includes nrb.h alone, and that
program drives a real ``nrb serve --renderer passthrough``: connect, tag buffers by their NRB_BUFFER_* names, an
event with typed params (nrb_params), a style, submit, the echoed image byte for byte, statistics, destroy.

libnrb comes from the build tree ``make cpp-test`` uses (build/cpp-tests; NRB_CMAKE_BUILD_DIR names another), which
is configured here when missing and brought up to date either way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.serverkit import served

ROOT = Path(__file__).resolve().parent.parent
CONSUMER = ROOT / "tests" / "c_abi"
BUILD = Path(os.environ.get("NRB_CMAKE_BUILD_DIR", ROOT / "build" / "cpp-tests"))

HOOKS = """
import json, os
_fd = os.open(os.environ["NRB_TEST_EVENT_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

@every_frame  # noqa: F821 - provided by the hooks loader
def _record(style, ctx):
    for e in ctx.events:
        os.write(_fd, (json.dumps({"name": e.name, "params": e.params, "scope": e.target.scope,
                                   "ids": list(e.target.ids)}) + "\\n").encode())
"""


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libnrb built and installed (component nrb) into a fresh prefix."""
    if shutil.which("cmake") is None or shutil.which("cc") is None:
        pytest.skip("needs cmake and a C compiler")
    if not (BUILD / "CMakeCache.txt").exists():
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(["cmake", "-S", str(ROOT), "-B", str(BUILD), *gen, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
              "-DNRB_BUILD_TESTS=ON"])
    _run(["cmake", "--build", str(BUILD), "--target", "nrb"], timeout=1800)
    out = tmp_path_factory.mktemp("prefix")
    _run(["cmake", "--install", str(BUILD), "--prefix", str(out), "--component", "nrb"])
    return out


@pytest.fixture(scope="module")
def program(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/c_abi built against the installed package only (find_package(nrb) through CMAKE_PREFIX_PATH)."""
    build = tmp_path_factory.mktemp("consumer")
    _run(["cmake", "-S", str(CONSUMER), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}",
          "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", "-DCMAKE_BUILD_TYPE=Debug"])
    _run(["cmake", "--build", str(build)])
    return build


def test_install_gives_the_public_headers_library_and_cmake_package(prefix: Path) -> None:
    """What an engine gets: the four public headers (no internal one), libnrb.so with its SONAME links, and
    nrbConfig.cmake / nrbConfigVersion.cmake exporting nrb::nrb."""
    headers = {p.name for p in (prefix / "include" / "nrb").iterdir()}
    assert headers == {"nrb.h", "nrb.hpp", "nrb_export.h", "version.h"}
    libdir = next(p for p in (prefix / "lib", prefix / "lib64") if p.exists())
    assert {"libnrb.so", "libnrb.so.0"} <= {p.name for p in libdir.iterdir()}
    cmake_dir = libdir / "cmake" / "nrb"
    assert {"nrbConfig.cmake", "nrbConfigVersion.cmake", "nrbTargets.cmake"} <= {p.name for p in cmake_dir.iterdir()}
    assert "nrb::nrb" in (cmake_dir / "nrbTargets.cmake").read_text()


def test_program_is_strict_c99_against_nrb_h_alone(program: Path) -> None:
    """The consumer compiles as C (not C++), C99, with every warning an error, and includes nothing of libnrb but
    <nrb/nrb.h>."""
    (cmd,) = [c["command"] for c in json.loads((program / "compile_commands.json").read_text())]
    for flag in ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"):
        assert flag in cmd.split(), cmd
    includes = [line for line in (CONSUMER / "nrb_abi_v1.c").read_text().splitlines() if line.startswith("#include")]
    assert [i for i in includes if "nrb" in i] == ["#include <nrb/nrb.h>"]


def test_params_builder_constants_and_versions(program: Path) -> None:
    """ABI version 1; NRB_BUFFER_* and format constants; nrb_params encodes canonically and refuses, at the call,
    a missing, extra or repeated key, a non-UTF-8 string, nesting past 8, more than 4096 bytes, an unmatched end."""
    proc = subprocess.run([str(program / "nrb_abi_v1"), "unit"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "OK unit" in proc.stdout, proc.stdout + proc.stderr


@pytest.fixture
def event_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("NRB_TEST_EVENT_LOG", str(log))
    yield log


def test_c_program_drives_a_real_server(program: Path, tmp_path: Path, event_log: Path) -> None:
    """Frames with an albedo and a lighting constant come back byte for byte from the passthrough renderer, and the
    typed event reaches the renderer with exactly the params the C program built."""
    hooks = tmp_path / "hooks.py"
    hooks.write_text(HOOKS)
    with served(tmp_path, "--renderer", "passthrough", "--hooks", str(hooks)) as server:
        proc = subprocess.run([str(program / "nrb_abi_v1"), "e2e", server.endpoint], capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 0 and "OK e2e" in proc.stdout, proc.stdout + proc.stderr
    events = [json.loads(line) for line in event_log.read_text().splitlines()]
    assert events == [
        {"name": "weapon_powerup", "scope": "object", "ids": [7, 9],
         "params": {"weapon": "laser", "power": 2.5, "at": {"x": -3, "y": 70000}, "tags": ["a", None, False]}},
        {"name": "empty", "scope": "global", "ids": [], "params": {}},
    ]


def test_c_program_writes_a_style_sets_the_intensity_and_gets_a_bad_parameter_refused(program: Path,
                                                                                       tmp_path: Path) -> None:
    """Styles as data through the C ABI (docs/protocol.md 5.3): nrb_set_style_params defines a style the server's
    grading draws (the echoed image gets darker), an unknown parameter is refused by the renderer for that frame
    only, and nrb_set_intensity(0) shows the engine's hudless_color byte for byte; camera v2 carries tone_mapping."""
    with served(tmp_path, "--renderer", "passthrough") as server:
        proc = subprocess.run([str(program / "nrb_abi_v1"), "styles", server.endpoint], capture_output=True,
                              text=True, timeout=120)
        log = server.log_text()
    assert proc.returncode == 0 and "OK styles" in proc.stdout, proc.stdout + proc.stderr
    assert "defined styles at run time: dim" in log
