#!/usr/bin/env bash
# GPU check: the one command a machine with an NVIDIA GPU runs first.
#
#   bash benchmarks/gpu_check.sh [STAGE ...]
#
# Stages (default: all, in this order; each writes benchmarks/results/<name>_<device>.md with the
# date, device and command, and prints its tables):
#   tests       the whole test suite with the GPU as the default backend   -> gpu_tests_<device>.md
#   quick       (not in the default list) the stage for a 15-minute GPU lease, about 8 minutes: the
#               precision-sensitive tests, the cuDNN-vs-XLA attention test and the step tests on the
#               GPU; bf16 throughput of every registered architecture at gp-1000 size; the PyTorch
#               reference at gp-1000 (30 steps) when its wheels are carried -> gpu_quick_<device>.md
#   reference   the PyTorch reference `pfns` alone on gp-200 and gp-1000     -> pfns_reference_<device>.md
#   throughput  train_throughput.py, gp-200 and gp-1000, f32 and bf16, per-dataset and shared split,
#               with the reference run in the same invocation                -> train_throughput_<device>.md
#   profile     step_profile.py, bf16, auto (cuDNN) and XLA attention       -> step_profile_<device>.md
#   latency     inference_latency.py                                       -> inference_latency_<device>.md
#   mixed       mixed_precision.py, 500-step gp-200, f32 vs bf16           -> mixed_precision_<device>.md
#
# Each stage fits a 10-minute command on one H100; run them as separate commands where a
# command's time is capped. The reference needs the `pfns` package (0.4.2, with pip `--no-deps`
# plus `configspace`, `more_itertools`, `einops`, `gpytorch`, `linear_operator`, `jaxtyping` and
# `tensorboard`; torch must be installed); its workload is benchmarks/pfns_reference.py.
#   PFNS_WHEELS   a folder of wheels installed first if `pfns` is not importable (default .whl)
# Without them the reference is skipped with a message and the tables have no ratio.
set -uo pipefail
cd "$(dirname "$0")/.."

export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda,cpu}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
RESULTS=benchmarks/results
mkdir -p "$RESULTS"

DEVICE=$("$PY" - <<'EOF'
import re, jax
d = jax.devices()[0]
m = re.search(r"([A-Z]\d{2,4}|TPU v\d\w*)", d.device_kind)
print((m.group(1) if m else d.device_kind).lower().replace(" ", ""))
EOF
) || { echo "gpu_check: JAX does not start" >&2; exit 1; }
PLATFORM=$("$PY" -c "import jax; print(jax.devices()[0].platform)")
if [ "$PLATFORM" = cpu ]; then
  echo "gpu_check: JAX's default backend is the CPU: no GPU here (JAX_PLATFORMS=$JAX_PLATFORMS)" >&2
  exit 1
fi
echo "gpu_check: device $DEVICE ($PLATFORM), results in $RESULTS/*_$DEVICE.md"

header() {  # header TITLE COMMAND (the device line as benchmarks/_results.py writes it)
  printf '# %s (%s)\n\n- device: %s\n- command: `%s`\n\n' "$1" "$(date -u +%Y-%m-%d)" \
    "$("$PY" -c "import sys, jax; sys.path.insert(0, 'benchmarks'); from _results import device_description; print(f'{device_description()}; jax {jax.__version__}')")" "$2"
}

stage_tests() {
  local log=/tmp/gpu_check_tests.log md="$RESULTS/gpu_tests_$DEVICE.md"
  local cmd="JAX_PLATFORMS=$JAX_PLATFORMS XLA_PYTHON_CLIENT_PREALLOCATE=false python -m pytest -n 4 -q -p no:cacheprovider tests"
  local t0=$SECONDS
  "$PY" -m pytest -n 4 -q -p no:cacheprovider tests 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  {
    header "Test suite with the GPU as default backend" "$cmd"
    echo "- exit code $rc, wall $((SECONDS - t0)) s"
    echo
    echo '```'
    grep -E '^(FAILED|ERROR|SKIPPED)|passed|failed' "$log" | tail -n 60
    echo '```'
  } >"$md"
  echo "wrote $md"
}

install_reference() {  # pfns from carried wheels when it is not importable
  local wheels="${PFNS_WHEELS:-.whl}"
  if ! "$PY" -c "import pfns" 2>/dev/null && compgen -G "$wheels/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pfns_site "$wheels"/*.whl \
      && export PYTHONPATH="$PYTHONPATH:/tmp/pfns_site"
  fi
  "$PY" -c "import pfns, torch" 2>/dev/null || { echo "gpu_check: reference skipped: pfns and torch are not importable"; return 1; }
}

stage_reference() {  # the PyTorch reference alone, on the two GPU workloads
  install_reference || return 0
  local md="$RESULTS/pfns_reference_$DEVICE.md" out200 out1000
  out200=$("$PY" benchmarks/pfns_reference.py --emsize 256 --nlayers 4 --nhead 4 --batch 128 --seq 200 --steps 100 2>&1 | tail -n 1)
  out1000=$("$PY" benchmarks/pfns_reference.py --emsize 512 --nlayers 6 --nhead 8 --batch 64 --seq 1000 --steps 30 2>&1 | tail -n 1)
  { header "PyTorch reference pfns 0.4.2, GP workloads" "benchmarks/pfns_reference.py"
    echo "| workload | output |"; echo "|---|---|"
    echo "| gp-200 | \`$out200\` |"; echo "| gp-1000 | \`$out1000\` |"; } >"$md"
  echo "wrote $md"
}

stage_throughput() {  # pfnjax f32 and bf16 with the reference run in the same invocation
  local ref=()
  install_reference && ref=(--reference --reference-steps 30)
  "$PY" benchmarks/train_throughput.py --presets gp-200 gp-1000 --bf16 --split-sharing dataset step --steps 30 \
    "${ref[@]}" --markdown "$RESULTS/train_throughput_$DEVICE.md"
}

stage_quick() {  # the facts that matter most, in about 8 minutes: see the header
  local log=/tmp/gpu_check_quick.log md="$RESULTS/gpu_quick_$DEVICE.md"
  "$PY" -m pytest -q -p no:cacheprovider tests/test_precision.py "tests/test_model.py::test_attention_implementations_give_the_same_logits" \
    tests/test_step.py 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]} ref=()
  install_reference && ref=(--reference --reference-steps 30)
  "$PY" benchmarks/train_throughput.py --presets gp-1000 --bf16-only --split-sharing step --steps 20 \
    --models all "${ref[@]}" --markdown "$RESULTS/train_throughput_quick_$DEVICE.md"
  { header "GPU quick check" "bash benchmarks/gpu_check.sh quick"
    echo "- precision, attention and step tests: exit code $rc"; echo; echo '```'
    grep -E '^(FAILED|ERROR)|passed|failed' "$log" | tail -n 30; echo '```'; echo
    cat "$RESULTS/train_throughput_quick_$DEVICE.md"; } >"$md"
  echo "wrote $md"
}

stage_profile() {
  "$PY" benchmarks/step_profile.py --presets gp-200 gp-1000 --bf16 --markdown "$RESULTS/step_profile_$DEVICE.md"
  "$PY" benchmarks/step_profile.py --presets gp-1000 --bf16 --attention xla \
    --markdown "$RESULTS/step_profile_xla_attention_$DEVICE.md"
}

stage_latency() {
  "$PY" benchmarks/inference_latency.py --markdown "$RESULTS/inference_latency_$DEVICE.md"
}

stage_mixed() {
  "$PY" benchmarks/mixed_precision.py --preset gp-200 --steps 500 --markdown "$RESULTS/mixed_precision_$DEVICE.md"
}

STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(tests throughput profile latency mixed)
status=0
for s in "${STAGES[@]}"; do
  case "$s" in
    quick|tests|reference|throughput|profile|latency|mixed) echo "=== $s"; "stage_$s" || status=1 ;;
    *) echo "gpu_check: unknown stage $s" >&2; exit 2 ;;
  esac
done
exit $status
