#!/usr/bin/env bash
# The checks that need a GPU, as one short command for a lent GPU machine (issue 14's GPU execution: the neural
# renderer through PyTorch's CUDA runtime and, where installed, ONNX Runtime's CUDA provider; their speed per
# frame as nrb serve runs them and their distance from the CPU's fp32 image).
#
# Why a script: a lent machine is bare, has no network and counts every second, so what it needs is prepared here
# and what it does is decided before it starts. Its image has PyTorch (CUDA), the CPU onnxruntime, numpy, msgpack,
# Pillow, prometheus-client and pytest, not pyzmq, lz4 or zstandard: those travel as wheels (7.8 MB).
#
#   here, once:   tools/gpu_checks.sh --fetch-wheels     # the three wheels into .whl/ (ignored by git)
#   there:        bash tools/gpu_checks.sh               # with .whl carried; results under $OUT (or out/gpu)
#
# Results: gpu.txt (nvidia-smi), pytest.log (the runtime and device-selection tests on the GPU machine, where
# auto picks the GPU), renderer_gpu.json + renderer_gpu.md (python -m nrb_bench.renderer_gpu: the network's
# fp32/TF32/fp16/CUDA-graph times, and the serving table by runtime). About 3-5 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(pyzmq==27.3.0 lz4==4.4.5 zstandard==0.25.0)
if [ "${1:-}" = "--fetch-wheels" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  exit $?
fi

out="${OUT:-out/gpu}"
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_checks: installing the carried wheels failed" >&2; exit 1; }
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
nvidia-smi > "$out/gpu.txt" 2>&1 || echo "gpu_checks: nvidia-smi failed (no GPU?)" >> "$out/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' >> "$out/gpu.txt" 2>&1
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_torch_runtime.py tests/test_device_selection.py \
  > "$out/pytest.log" 2>&1 || status=1
tail -3 "$out/pytest.log"
timeout 300 python3 -m nrb_bench.renderer_gpu --out "$out" > "$out/renderer_gpu.md" 2>&1 || status=1
cat "$out/renderer_gpu.md"
exit $status
