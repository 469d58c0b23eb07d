"""The Unreal plugin's engine-independent half, compiled and run here: no engine can be installed, but everything the
plugin does between the engine's data and libnrb's C ABI lives in Source/NeuralRenderBridge/Private/NrbGlue.cpp with
no Unreal include. It is built with the system C++ compiler against cpp/include/nrb/nrb.h, linked with the libnrb that
``make cpp-test`` builds (build/cpp-tests), and driven by Extras/GlueTest/NrbGlueTest.cpp: unit checks, then a real
``nrb serve`` (a frame with padded rows, as a GPU read-back maps them, comes back byte for byte; an event's params
arrive), then a renderer that refuses the session (the refusal reaches the overlay line; the toggle retries)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.serverkit import served

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "engine_plugins" / "unreal" / "NeuralRenderBridge"
PRIVATE = PLUGIN / "Source" / "NeuralRenderBridge" / "Private"
GLUE = [PRIVATE / "NrbGlue.cpp", PRIVATE / "NrbGlue.h"]
DRIVER = PLUGIN / "Extras" / "GlueTest" / "NrbGlueTest.cpp"
INCLUDE = ROOT / "cpp" / "include"
#: Where libnrb.so is: `make cpp-test` builds it here (NRB_LIBNRB_DIR names another build).
LIBDIR = Path(os.environ.get("NRB_LIBNRB_DIR", ROOT / "build" / "cpp-tests" / "cpp"))
CXX = os.environ.get("CXX", "g++")
#: UE 5.3+ compiles C++20; the glue must also stay warning-free (UE treats shadowing as an error).
FLAGS = ["-std=c++20", "-Wall", "-Wextra", "-Wshadow", "-Werror"]

HOOKS = """
import json, os
_fd = os.open(os.environ["NRB_TEST_EVENT_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

@every_frame  # noqa: F821 - provided by the hooks loader
def _record(style, ctx):
    for e in ctx.events:
        os.write(_fd, (json.dumps({"name": e.name, "params": e.params}) + "\\n").encode())
"""

REFUSER = """
from bridge.renderers.passthrough import PassthroughRenderer


class Refuser(PassthroughRenderer):
    name = "refuser"

    def check_offer(self, offered):
        return "the test renderer refuses every engine"
"""


def stats_version(header: Path) -> int:
    """nrb_stats' struct version in ``header`` (3 brought the refusal)."""
    m = re.search(r"#define NRB_STATS_VERSION (\d+)", header.read_text())
    assert m, header
    return int(m.group(1))


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NrbGlue.cpp + the driver, linked with build/cpp-tests' libnrb (skipped, saying why, when either is missing)."""
    if shutil.which(CXX) is None:
        pytest.skip(f"no C++ compiler ({CXX})")
    if not (LIBDIR / "libnrb.so").exists():
        pytest.skip(f"libnrb is not built in {LIBDIR}: run `make cpp-test` first (or set NRB_LIBNRB_DIR)")
    out = tmp_path_factory.mktemp("glue") / "NrbGlueTest"
    cmd = [CXX, *FLAGS, "-O1", "-g", f"-I{INCLUDE}", f"-I{PRIVATE}", str(GLUE[0]), str(DRIVER),
           f"-L{LIBDIR}", "-lnrb", f"-Wl,-rpath,{LIBDIR}", "-o", str(out)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, f"{' '.join(cmd)}\n{build.stderr}"
    return out


def run(driver: Path, *args: str) -> str:
    proc = subprocess.run([str(driver), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{args[0]}: {proc.returncode} failures\n{proc.stdout}\n{proc.stderr}"
    assert f"OK {args[0]}" in proc.stdout, proc.stdout
    return proc.stdout


def test_glue_includes_no_unreal_header() -> None:
    """What makes it compile here: standard headers and nrb.h only."""
    for path in GLUE:
        includes = re.findall(r'#include\s+([<"][^>"]+[>"])', path.read_text())
        assert includes, path.name
        for inc in includes:
            assert inc.startswith("<") or inc in ('"NrbGlue.h"', '"nrb/nrb.h"'), f"{path.name} includes {inc}"


def test_unit(driver: Path) -> None:
    """msgpack params, CurveZMQ key checks, the client config libnrb accepts, the camera constants (inverse,
    projection, reprojection after a camera move, reset on a cut) that nrb_frame_set_camera accepts, result formats,
    the overlay line."""
    run(driver, "unit")


@pytest.fixture
def event_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("NRB_TEST_EVENT_LOG", str(log))
    yield log


def test_frame_and_event_through_a_real_server(driver: Path, tmp_path: Path, event_log: Path) -> None:
    """nrbglue::FClientConfig connects, nrbglue::SubmitFrame sends the ten packed targets with 64-pixel row pitches
    (48 wide: the padding must not reach the wire), the passthrough renderer returns the albedo byte for byte as
    rgba8_srgb (shown as stored, no sRGB encode), and EncodeStringMap's params arrive as sent."""
    hooks = tmp_path / "hooks.py"
    hooks.write_text(HOOKS)
    with served(tmp_path, "--renderer", "passthrough", "--hooks", str(hooks)) as server:
        run(driver, "e2e", server.endpoint)
    events = [json.loads(line) for line in event_log.read_text().splitlines()]
    assert {"name": "boss_phase", "params": {"phase": "2", "boss": "Grüner Drache"}} in events, events


def test_refusal_reaches_the_overlay_and_the_toggle_retries(driver: Path, tmp_path: Path) -> None:
    """A renderer that refuses the HELLO: state "refused" with the renderer's code and reason in the statistics and
    the overlay line, and RetryIfRefused (the player's toggle) asks again (refused again)."""
    if stats_version(INCLUDE / "nrb" / "nrb.h") < 3:
        pytest.skip("nrb.h has no NRB_STATE_REFUSED yet (nrb_stats version < 3)")
    refuser = tmp_path / "refuser.py"
    refuser.write_text(REFUSER)
    with served(tmp_path, "--renderer", f"{refuser}:Refuser") as server:
        run(driver, "refused", server.endpoint)


@pytest.mark.parametrize("version", [2, 3])
def test_glue_compiles_with_and_without_the_refusal_api(tmp_path: Path, version: int) -> None:
    """NrbGlue guards the refusal code with NRB_STATS_VERSION >= 3, so the plugin builds against the nrb.h it ships
    with and against an older one: compile both ways (syntax only)."""
    if shutil.which(CXX) is None:
        pytest.skip(f"no C++ compiler ({CXX})")
    include = tmp_path / "include"
    shutil.copytree(INCLUDE, include)
    header = include / "nrb" / "nrb.h"
    text = header.read_text()
    if stats_version(header) < version:
        pytest.skip(f"nrb.h is older than nrb_stats version {version}")
    header.write_text(re.sub(r"#define NRB_STATS_VERSION \d+", f"#define NRB_STATS_VERSION {version}", text))
    proc = subprocess.run([CXX, *FLAGS, "-fsyntax-only", f"-I{include}", f"-I{PRIVATE}", str(GLUE[0]), str(DRIVER)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
