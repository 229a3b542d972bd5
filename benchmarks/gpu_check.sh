#!/usr/bin/env bash
# GPU check: the one command a machine with an NVIDIA GPU runs first.
#
#   bash benchmarks/gpu_check.sh [STAGE ...]
#
# Stages (default: all, in this order; each writes benchmarks/results/<name>_<device>.md with the
# date, device and command, and prints its tables):
#   tests       the whole test suite with the GPU as the default backend   -> gpu_tests_<device>.md
#   reference   the PyTorch reference `pfns` on gp-200 and gp-1000         -> pfns_reference_<device>.{md,json}
#   throughput  train_throughput.py, gp-200 and gp-1000, f32 and bf16      -> train_throughput_<device>.md
#               (ratios against the reference measured by the stage above, when it ran)
#   profile     step_profile.py, bf16, auto (cuDNN) and XLA attention       -> step_profile_<device>.md
#   latency     inference_latency.py                                       -> inference_latency_<device>.md
#   mixed       mixed_precision.py, 500-step gp-200, f32 vs bf16           -> mixed_precision_<device>.md
#
# Each stage fits a 10-minute command on one H100; run them as separate commands where a
# command's time is capped. The reference stage needs the `pfns` package (0.4.2; with pip
# `--no-deps` plus `configspace` and `more_itertools`; torch, gpytorch and scikit-learn must be
# installed) and its GP workload script:
#   PFNS_REFERENCE_SCRIPT  the workload script, run as `SCRIPT STEPS EMSIZE NLAYERS BATCH SEQ`
#                          (default .ref/pfns_gp_train.py)
#   PFNS_WHEELS            a folder of wheels installed first if `pfns` is not importable (default .whl)
# Without them the stage is skipped with a message, and throughput ratios fall back to the
# reference numbers of an earlier session (said so in the table).
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

stage_reference() {
  local script="${PFNS_REFERENCE_SCRIPT:-.ref/pfns_gp_train.py}" wheels="${PFNS_WHEELS:-.whl}"
  if ! "$PY" -c "import pfns" 2>/dev/null && compgen -G "$wheels/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pfns_site "$wheels"/*.whl \
      && export PYTHONPATH="$PYTHONPATH:/tmp/pfns_site"
  fi
  if ! "$PY" -c "import pfns" 2>/dev/null || [ ! -f "$script" ]; then
    echo "gpu_check: reference skipped: needs an importable pfns (wheels in $wheels) and $script"
    return 0
  fi
  local json="$RESULTS/pfns_reference_$DEVICE.json" md="$RESULTS/pfns_reference_$DEVICE.md"
  local out200 out1000
  # gp-200: d256, 4 layers, batch 128, T=200; gp-1000: d512, 6 layers, batch 64, T=1000 (start-up included)
  out200=$("$PY" "$script" 150 256 4 128 200 2>&1 | tail -n 1)
  out1000=$("$PY" "$script" 40 512 6 64 1000 2>&1 | tail -n 1)
  echo "$out200"; echo "$out1000"
  "$PY" - "$out200" "$out1000" "$json" <<'EOF'
import json, re, sys
rates = {}
for preset, line in zip(("gp-200", "gp-1000"), sys.argv[1:3]):
    m = re.search(r"datasets_per_s=([0-9.]+)", line)
    if m:
        rates[preset] = float(m.group(1))
json.dump(rates, open(sys.argv[3], "w"), indent=1)
print("reference datasets/s:", rates)
EOF
  {
    header "PyTorch reference pfns 0.4.2, GP workloads" "$script STEPS EMSIZE NLAYERS BATCH SEQ"
    echo "| workload | output |"
    echo "|---|---|"
    echo "| gp-200 (150 steps, d256, 4 layers, batch 128, T 200) | \`$out200\` |"
    echo "| gp-1000 (40 steps, d512, 6 layers, batch 64, T 1000) | \`$out1000\` |"
  } >"$md"
  echo "wrote $md and $json"
}

stage_throughput() {
  local ref=() json="$RESULTS/pfns_reference_$DEVICE.json"
  [ -s "$json" ] && [ "$(cat "$json")" != "{}" ] && ref=(--reference-json "$json")
  "$PY" benchmarks/train_throughput.py --presets gp-200 gp-1000 --bf16 --steps 30 "${ref[@]}" \
    --markdown "$RESULTS/train_throughput_$DEVICE.md"
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
[ ${#STAGES[@]} -eq 0 ] && STAGES=(tests reference throughput profile latency mixed)
status=0
for s in "${STAGES[@]}"; do
  case "$s" in
    tests|reference|throughput|profile|latency|mixed) echo "=== $s"; "stage_$s" || status=1 ;;
    *) echo "gpu_check: unknown stage $s" >&2; exit 2 ;;
  esac
done
exit $status
