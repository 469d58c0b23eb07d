#!/usr/bin/env bash
# Idempotent developer/CI setup: Debian packages, .venv, torch (CPU), then `pip install -e .[test]`.
# Fast no-op when everything is already in place. Run via `make setup`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.nrb-installed
TORCH_VERSION=2.13.0

say() { printf '[setup] %s\n' "$*"; }

# --- (a) Debian packages -----------------------------------------------------------------------------------
APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev doctest-dev nlohmann-json3-dev
  liblz4-dev libzstd-dev libjpeg62-turbo-dev libwebp-dev libsodium-dev
  libegl1 libegl-mesa0 libgl1-mesa-dri libllvm19 python3-venv
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages: ok"
fi

# --- (b) virtualenv -----------------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
  rm -f "$STAMP"
else
  say "$VENV: ok"
fi
PY=$VENV/bin/python
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# --- (c) Python packages ------------------------------------------------------------------------------------
has_module() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }

# torch first and pinned: a bare `torch` requirement would let pip pick a multi-GB CUDA build.
if ! has_module torch; then
  say "installing torch==$TORCH_VERSION (CPU)"
  pip_install "torch==$TORCH_VERSION"
else
  say "torch: ok"
fi

needs_install=0
if [ ! -f "$STAMP" ]; then
  needs_install=1
elif ! "$PY" -c "import importlib.metadata as m; m.version('neural-render-bridge')" >/dev/null 2>&1; then
  needs_install=1
elif [ -n "$(find pyproject.toml CMakeLists.txt cpp -newer "$STAMP" -print -quit 2>/dev/null)" ]; then
  needs_install=1
fi

if ((needs_install)); then
  # Build requirements go into the venv so the build can run without isolation (faster, and the build dir
  # under build/py is reused incrementally).
  if ! has_module scikit_build_core || ! has_module pybind11; then
    say "installing build requirements (scikit-build-core, pybind11)"
    pip_install "scikit-build-core>=0.10" "pybind11>=2.12"
  fi
  say "pip install -e '.[test]' (builds bridge._native)"
  pip_install --no-build-isolation -e '.[test]'
  touch "$STAMP"
  say "installed"
else
  say "neural-render-bridge: up to date"
fi
