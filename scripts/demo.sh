#!/usr/bin/env bash
# The whole workflow, end to end, at a small scale (about 7 minutes of training on 2 CPU cores):
# old model -> reference ensemble -> ELODI update and plain update -> CI gate -> comparison.
#
# The story: v1 (cnn-s) was trained on a third of Fashion-MNIST; v2 has all of it. The plain update
# retrains on everything; ELODI first trains a small reference ensemble of v2 models and holds v2 to it.
# Every command is printed before it runs so you can copy it. Settings (environment variables):
# DEMO_DATA (fashion-mnist), DEMO_OUT (demo-out), DEMO_EPOCHS (4, the new models'; the old model trains 3),
# DEMO_MEMBERS (3), DEMO_ARCH (cnn-s),
# DEMO_MU (the modelupdate command: .venv/bin/modelupdate).
set -euo pipefail
cd "$(dirname "$0")/.."
MU="${DEMO_MU:-.venv/bin/modelupdate}"
OUT="${DEMO_OUT:-demo-out}"
EPOCHS="${DEMO_EPOCHS:-4}"
OLD_EPOCHS=$(( EPOCHS < 3 ? EPOCHS : 3 ))
MEMBERS="${DEMO_MEMBERS:-3}"
ARCH="${DEMO_ARCH:-cnn-s}"
DATA="--data ${DEMO_DATA:-fashion-mnist}"
mkdir -p "$OUT"
START=$SECONDS

step() {  # step SUBCOMMAND ARGS...: print it as a user would type it, run it, time it
  local t0=$SECONDS
  echo; echo "\$ modelupdate $*"
  $MU "$@"
  echo "(step: $((SECONDS - t0)) s, demo so far: $((SECONDS - START)) s)"
}

echo "== 1/6 the deployed (old) model: cnn-s on a third of the training data"
step train $DATA --arch cnn-s --train-subset 0.3333 --epochs "$OLD_EPOCHS" --resume --out "$OUT/old.safetensors"
echo "== 2/6 the reference: an ensemble of $MEMBERS $ARCH models on all the data (seeds 100..)"
step ensemble-train $DATA --arch "$ARCH" --members "$MEMBERS" --epochs "$EPOCHS" --resume \
  --out "$OUT/reference.safetensors"
echo "== 3/6 the new model, updated with ELODI (held to the reference's logits)"
step ldi-train $DATA --arch "$ARCH" --old "$OUT/old.safetensors" --reference "$OUT/reference.safetensors" \
  --epochs "$EPOCHS" --resume --out "$OUT/new-elodi.safetensors"
echo "== 4/6 the new model, plain update (cross-entropy only), same budget"
step ldi-train $DATA --arch "$ARCH" --old "$OUT/old.safetensors" --method ce --epochs "$EPOCHS" --resume \
  --out "$OUT/new-ce.safetensors"
echo "== 5/6 the CI gate: may the ELODI model replace the old one? (exit code 1 = a gate failed)"
gate=0
step flip-report $DATA --old "$OUT/old.safetensors" --new "$OUT/new-elodi.safetensors" --max-er-increase 0 \
  --max-nfr 3% --json "$OUT/flip-report.json" --html "$OUT/flip-report.html" || gate=$?
echo "(gate exit code: $gate)"
echo "== 6/6 the comparison: error rate and negative flips of each candidate against the old model"
step compare $DATA --old "$OUT/old.safetensors" "$OUT/new-ce.safetensors" "$OUT/new-elodi.safetensors" \
  "$OUT/reference.safetensors" --markdown "$OUT/compare.md"
echo
echo "demo done in $((SECONDS - START)) s; outputs in $OUT/ (compare.md, flip-report.html, flip-report.json)"
echo "Read the pairwise table: 'only a flips' vs 'only b flips' and McNemar's p say whether ELODI's fewer"
echo "flips are more than noise at this small budget; the effect over 3 seeds at 10 epochs is in docs/results.md."
