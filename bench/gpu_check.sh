#!/usr/bin/env bash
# GPU readiness in under 5 minutes (an H100 needs about 2): one epoch of train,
# ensemble-train (2 members), ldi-train (ELODI, online reference) and ldi-train with a
# reference cache, each with --amp auto --channels-last --device cuda on Fashion-MNIST,
# printing each command's wall time and training throughput; then the batched-vs-loop
# ensemble forward and the online-reference step cost measured on the GPU.
#
#   bash bench/gpu_check.sh                 # exits 0 with a message when no GPU is visible
#   FMNIST_DIR=/path/to/idx-files bash bench/gpu_check.sh
#
# Fashion-MNIST is read from $FMNIST_DIR, $MODELUPDATE_DATA or /usr/share/datasets/
# fashion-mnist; else torchvision downloads it (--download); where that fails too (no
# network) the commands run on the synthetic set and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

# GPU_CHECK_DEVICE=cpu GPU_CHECK_DATA=synthetic: a dry run of this script's plumbing without a GPU.
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
if [ "$DEVICE" = cuda ]; then
  if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: torch sees no CUDA GPU here; nothing to check (run it on a machine with one)"
    exit 0
  fi
  "$PY" -c "import torch; p = torch.cuda.get_device_properties(0); \
print(f'gpu_check: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, '
      f'bf16 {torch.cuda.is_bf16_supported()}')"
  FORWARD=(--batch-size 1024 --repeats 20 --warmup 3)
  STEP=(--images 16384 --batch-size 512 --repeats 3)
else
  FORWARD=(--batch-size 64 --repeats 1 --warmup 1)
  STEP=(--images 256 --batch-size 128 --repeats 1)
fi

OUT="${GPU_CHECK_OUT:-$(mktemp -d)}"
DATA=(--data "${GPU_CHECK_DATA:-fashion-mnist}")
[ -n "${FMNIST_DIR:-}" ] && DATA+=(--data-dir "$FMNIST_DIR")
has_fashion() {
  "$PY" - "$@" <<'EOF' >/dev/null 2>&1
import sys
from modelupdate.config import DataConfig
from modelupdate.data import load_dataset
args = sys.argv[1:]
load_dataset(DataConfig(name="fashion-mnist", data_dir=args[1] if len(args) > 1 else None,
                        download="--download" in args))
EOF
}
if [ "${DATA[1]}" = fashion-mnist ] && ! has_fashion ${FMNIST_DIR:+--data-dir "$FMNIST_DIR"}; then
  if has_fashion ${FMNIST_DIR:+--data-dir "$FMNIST_DIR"} --download; then
    DATA+=(--download)
  else
    echo "gpu_check: Fashion-MNIST not found and not downloadable here; using --data synthetic"
    DATA=(--data synthetic)
  fi
fi
COMMON=("${DATA[@]}" --arch cnn-m --epochs 1 --batch-size 512 --device "$DEVICE" --amp auto --channels-last --quiet)
MU=("$PY" -m modelupdate)

throughput() {  # file, label, start, end: images/s of training from the checkpoint's metadata
  "$PY" - "$1" "$2" "$3" "$4" <<'EOF'
import sys
from modelupdate.formats import read_meta
path, label = sys.argv[1], sys.argv[2]
wall = float(sys.argv[4]) - float(sys.argv[3])
meta = read_meta(path)
rows = meta.member_metrics or [meta.metrics]
ips = ", ".join(f"{m['images_per_second']:,.0f}" for m in rows)
err = meta.metrics.get("test_error_rate")
print(f"{label:28s} wall {wall:6.1f} s   training {ips} images/s"
      f"{'' if err is None else f'   test error {100 * err:.2f}%'}")
EOF
}

step() {  # label, output file, command...
  local label="$1" file="$2"; shift 2
  local start end
  start=$(date +%s.%N)
  timeout 150 "$@" >"$OUT/$label.log" 2>&1 || { echo "gpu_check: $label FAILED:"; tail -20 "$OUT/$label.log"; exit 1; }
  end=$(date +%s.%N)
  throughput "$file" "$label" "$start" "$end"
}

echo "gpu_check: one epoch each on $DEVICE, ${DATA[*]}, cnn-m, batch 512, --amp auto --channels-last (outputs in $OUT)"
step train "$OUT/old.safetensors" "${MU[@]}" train "${COMMON[@]}" --out "$OUT/old.safetensors"
step ensemble-train "$OUT/reference.safetensors" \
  "${MU[@]}" ensemble-train -m 2 "${COMMON[@]}" --seed 100 --out "$OUT/reference.safetensors"
step ldi-train-online "$OUT/new.safetensors" "${MU[@]}" ldi-train "${COMMON[@]}" --method elodi \
  --old "$OUT/old.safetensors" --reference "$OUT/reference.safetensors" --seed 1 --out "$OUT/new.safetensors"
step ldi-train-cached "$OUT/new-cached.safetensors" "${MU[@]}" ldi-train "${COMMON[@]}" --method elodi \
  --old "$OUT/old.safetensors" --reference "$OUT/reference.safetensors" --seed 1 \
  --reference-cache "$OUT/reference-cache.safetensors" --out "$OUT/new-cached.safetensors"

echo
echo "gpu_check: ensemble reference forward on $DEVICE (M=4 cnn-m, ${FORWARD[*]}): batched vs loop"
timeout 120 "$PY" bench/bench_ensemble_forward.py --device "$DEVICE" --members 4 "${FORWARD[@]}" | tail -4
echo
echo "gpu_check: ldi-train step with an online M=4 reference vs train step (--amp auto, ${STEP[*]})"
timeout 150 "$PY" bench/bench_ldi_online.py --device "$DEVICE" --amp auto "${STEP[@]}" | tail -8
echo "gpu_check: done"
