#!/usr/bin/env bash
# Release gate: optimize MODEL with CALIB data, then gate the result against the original on held-out EVAL data.
# Usage: run.sh MODEL CALIB EVAL OUT_DIR        (POLICY=path/to/gate.toml to use another policy)
# Exit code: 0 the candidate may ship, 1 the gate failed (reports are still written), 3 bad input.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
model="$1"; calib="$2"; eval_data="$3"; out="$4"
policy="${POLICY:-$here/gate.toml}"
mkdir -p "$out"

# 1. Compress (INT8 for the CPU target by default). The optimize job has its own default gate; the release
#    decision below is the one that counts, so a failing optimize gate is reported but does not stop here.
status=0
onnxcompress optimize "$model" -o "$out/candidate.onnx" --calib "$calib" --eval "$eval_data" \
    --no-profile --dump-recipe "$out/recipe.toml" --report-dir "$out/optimize-report" || status=$?
if [ "$status" -gt 1 ]; then exit "$status"; fi

# 2. Gate: validate on held-out data and check the policy. junit.xml is for the CI system's test view.
onnxcompress gate "$model" "$out/candidate.onnx" --policy "$policy" --data "$eval_data" \
    --report-dir "$out/gate-report"
