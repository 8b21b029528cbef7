#!/usr/bin/env bash
# Release gate: optimize MODEL with CALIB data, then gate the result against the original on held-out EVAL data.
# Usage: run.sh MODEL CALIB EVAL OUT_DIR        (POLICY=path/to/gate.toml to use another policy)
# Exit code: 0 the candidate may ship, 1 the gate failed (reports are still written), 3 bad input.
# The CLI used: $ONNXCOMPRESS if set, else `onnxcompress` on PATH, else the clone's .venv/bin/onnxcompress (no need
# to activate the venv), else `python3 -m onnxcompress`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [ -n "${ONNXCOMPRESS:-}" ]; then
  read -r -a oc <<< "$ONNXCOMPRESS"
elif command -v onnxcompress > /dev/null 2>&1; then
  oc=(onnxcompress)
elif [ -x "$repo/.venv/bin/onnxcompress" ]; then
  oc=("$repo/.venv/bin/onnxcompress")
else
  oc=(python3 -m onnxcompress)
fi
model="$1"; calib="$2"; eval_data="$3"; out="$4"
policy="${POLICY:-$here/gate.toml}"
mkdir -p "$out"

# 1. Compress (INT8 for the CPU target by default). The optimize job has its own default gate; the release
#    decision below is the one that counts, so a failing optimize gate is reported but does not stop here.
status=0
"${oc[@]}" optimize "$model" -o "$out/candidate.onnx" --calib "$calib" --eval "$eval_data" \
    --no-profile --dump-recipe "$out/recipe.toml" --report-dir "$out/optimize-report" || status=$?
if [ "$status" -gt 1 ]; then exit "$status"; fi

# 2. Gate: validate on held-out data and check the policy. junit.xml is for the CI system's test view.
"${oc[@]}" gate "$model" "$out/candidate.onnx" --policy "$policy" --data "$eval_data" \
    --report-dir "$out/gate-report"
