"""The Godot GDExtension's CMake build, configured the way the addon's README says, without network or Godot.

godot-cpp cannot be fetched here, so each test configures against a stand-in godot-cpp directory that defines the
same CMake targets as the real tag (read from godot-cpp's own CMake files: 4.3 and 4.5 define ``godot-cpp`` with the
alias ``godot::cpp``; 4.4 one library per variant, ``godot-cpp::template_debug`` ...). The real build against real
godot-cpp runs in tests/test_godot_engine.py when a Godot binary is given.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GODOT = ROOT / "engine_plugins" / "godot"

#: What each godot-cpp tag defines, as in its CMakeLists.txt / cmake/godotcpp.cmake.
GODOT_CPP_TARGETS = {
    "godot-4.3-stable": "add_library(godot-cpp INTERFACE)\nadd_library(godot::cpp ALIAS godot-cpp)\n",
    "godot-4.4-stable": "".join(
        f"add_library(godot-cpp.{v} INTERFACE)\nadd_library(godot-cpp::{v} ALIAS godot-cpp.{v})\n"
        for v in ("template_debug", "template_release", "editor")),
    "godot-4.5-stable": "add_library(godot-cpp INTERFACE)\nadd_library(godot::cpp ALIAS godot-cpp)\n",
}

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("ninja") is None,
                                reason="cmake and ninja are installed by make setup")


def godot_cpp_like(tmp: Path, tag: str) -> Path:
    d = tmp / f"godot-cpp-{tag}"
    d.mkdir()
    (d / "CMakeLists.txt").write_text(f"cmake_minimum_required(VERSION 3.13)\nproject(godot-cpp LANGUAGES CXX)\n"
                                      f"{GODOT_CPP_TARGETS[tag]}")
    return d


def configure(source: Path, build: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-G", "Ninja", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("tag", sorted(GODOT_CPP_TARGETS))
def test_root_build_with_godot_configures_and_links_the_tags_target(tmp_path, tag):
    """The README's root build failed at configure: cpp/ was added twice (duplicate nrb targets)."""
    proc = configure(ROOT, tmp_path / "build", "-DCMAKE_BUILD_TYPE=Debug", "-DNRB_BUILD_GODOT=ON",
                     f"-DNRB_GODOT_CPP_DIR={godot_cpp_like(tmp_path, tag)}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = "godot-cpp::template_debug" if tag == "godot-4.4-stable" else "godot::cpp"
    assert f"nrb_godot: linking {expected} (template_debug)" in proc.stdout


def test_standalone_build_names_libnrb_as_the_gdextension_lists_it(tmp_path):
    """Standalone, libnrb was named libnrb.so.SOVERSION (PROJECT_VERSION of project(nrb_godot) is empty), so an
    exported game shipped without the libnrb.so.0 its .gdextension lists."""
    build = tmp_path / "build"
    proc = configure(GODOT, build, "-DCMAKE_BUILD_TYPE=Release",
                     f"-DNRB_GODOT_CPP_DIR={godot_cpp_like(tmp_path, 'godot-4.5-stable')}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ninja = (build / "build.ninja").read_text()
    assert set(re.findall(r"SONAME = (libnrb\.\S*)", ninja)) == {"libnrb.so.0"}
    # and the post-build step copies the file of that name next to the extension
    assert re.search(r"copy_if_different \S*/libnrb\.so\.0 \S*addons/neural_render_bridge/bin/", ninja)
    listed = re.findall(r'linux\.x86_64 = \{"res://addons/neural_render_bridge/bin/([^"]+)"',
                        (GODOT / "addons" / "neural_render_bridge" / "neural_render_bridge.gdextension").read_text())
    assert listed == ["libnrb.so.0"]
    # the release build is the exported game's library
    assert "libnrb_godot.linux.template_release.x86_64.so" in ninja
