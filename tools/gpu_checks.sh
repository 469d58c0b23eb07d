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
#
# The retrain of issues 15 and 17 (python -m neural_renderer.recipe --gpu: data, 7,900 steps, export; about 10
# minutes on an H100, so a session does it instead of the checks above) needs Mitsuba there, whose wheel (62.5 MB)
# and the tree (16 MB) exceed what one call carries (64 MiB): it travels in two calls, back to back, while the
# machine stays warm (30 s), since an ignored folder a call brought stays for the next:
#
#   here, once:   tools/gpu_checks.sh --fetch-wheels retrain   # also Mitsuba + Dr.Jit, Mitsuba cut in two
#   call 1:       true                                         # carry .whl_a (the first 40 MiB of Mitsuba)
#   call 2:       bash tools/gpu_checks.sh retrain             # carry .whl: the rest, then the recipe
#
# Results: recipe.log, recipe.json, and weights/ (default.pt, default.onnx, default_temporal.onnx) to copy into
# neural_renderer/weights/ here, where the CPU benchmarks (nrb bench renderer, nrb bench looks) then score them.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(pyzmq==27.3.0 lz4==4.4.5 zstandard==0.25.0)
MITSUBA=(mitsuba==3.9.1 drjit==1.5.0)  # what made the datasets here (pip show mitsuba drjit)
fetch() {  # the wheels for the device's Python 3.12, into $1
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$1" "${@:2}"
}
if [ "${1:-}" = "--fetch-wheels" ]; then
  for d in /.whl/ /.whl_a/; do grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
  fetch .whl "${WHEELS[@]}" || exit 1
  if [ "${2:-}" = "retrain" ]; then
    fetch .whl "${MITSUBA[@]}" || exit 1
    mkdir -p .whl_a
    big=$(ls .whl/mitsuba-*.whl)
    split -b 40M -d "$big" ".whl/$(basename "$big").part-" && rm "$big"
    mv .whl/*.part-00 .whl_a/
  fi
  exit 0
fi

out="${OUT:-out/gpu}"
mkdir -p "$out"
for part in .whl_a/*.part-00; do  # Mitsuba in two calls: put it back together
  [ -e "$part" ] || continue
  whole=".whl/$(basename "${part%.part-00}")"
  cat "$part" "${whole}.part-"0[1-9] > "$whole" && rm -f "${whole}.part-"0[1-9]
done
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_checks: installing the carried wheels failed" >&2; exit 1; }
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
if [ "${1:-}" = "retrain" ]; then
  nvidia-smi -L > "$out/gpu.txt" 2>&1
  timeout 840 python3 -m neural_renderer.recipe --gpu --work /tmp/nrb-work --weights "$out/weights" \
    > "$out/recipe.log" 2>&1 || status=1
  sed -n '/^{/,$p' "$out/recipe.log" > "$out/recipe.json"
  rm -f "$out/weights/"*.png "$out/weights/"*_int8.onnx  # at most 8 files come back; the int8 copy is rebuilt here
  tail -20 "$out/recipe.log"
  exit $status
fi
nvidia-smi > "$out/gpu.txt" 2>&1 || echo "gpu_checks: nvidia-smi failed (no GPU?)" >> "$out/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' >> "$out/gpu.txt" 2>&1
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_torch_runtime.py tests/test_device_selection.py \
  > "$out/pytest.log" 2>&1 || status=1
tail -3 "$out/pytest.log"
timeout 300 python3 -m nrb_bench.renderer_gpu --out "$out" > "$out/renderer_gpu.md" 2>&1 || status=1
cat "$out/renderer_gpu.md"
exit $status
