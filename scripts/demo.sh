#!/usr/bin/env bash
# The whole workflow, end to end, at a small scale (a few minutes on 2 CPU cores):
# old model -> reference ensemble -> ELODI update and plain update -> compare -> CI gate.
set -euo pipefail
cd "$(dirname "$0")/.."
MU=".venv/bin/modelupdate"
OUT="${DEMO_OUT:-demo-out}"
EPOCHS="${DEMO_EPOCHS:-3}"
MEMBERS="${DEMO_MEMBERS:-3}"
DATA="--data ${DEMO_DATA:-fashion-mnist}"
mkdir -p "$OUT"

step() { echo; echo "\$ $*" | sed "s#\.venv/bin/##"; "$@"; }

echo "== 1. the deployed (old) model: cnn-s on a third of the training data"
step $MU train $DATA --arch cnn-s --train-subset 0.3333 --epochs "$EPOCHS" --resume --out "$OUT/old.safetensors"
echo "== 2. the reference: an ensemble of $MEMBERS cnn-m models (seeds 100..)"
step $MU ensemble-train $DATA --arch cnn-m --members "$MEMBERS" --seed 100 --epochs "$EPOCHS" --resume --out "$OUT/reference.safetensors"
echo "== 3. the new model, updated with ELODI"
step $MU ldi-train $DATA --arch cnn-m --old "$OUT/old.safetensors" --reference "$OUT/reference.safetensors" --epochs "$EPOCHS" --resume --out "$OUT/new-elodi.safetensors"
echo "== 4. the new model, plain update (cross-entropy only), same budget"
step $MU ldi-train $DATA --arch cnn-m --old "$OUT/old.safetensors" --method ce --epochs "$EPOCHS" --resume --out "$OUT/new-ce.safetensors"
echo "== 5. the CI gate: may ELODI's model replace the old one? (exit code 1 = a gate failed)"
step $MU flip-report $DATA --old "$OUT/old.safetensors" --new "$OUT/new-elodi.safetensors" --max-er-increase 0 --json "$OUT/flip-report.json" --html "$OUT/flip-report.html" || echo "(gate failed: exit code $?)"
echo "== 6. the comparison"
step $MU compare $DATA --old "$OUT/old.safetensors" "$OUT/new-ce.safetensors" "$OUT/new-elodi.safetensors" "$OUT/reference.safetensors" --markdown "$OUT/compare.md"
