#!/usr/bin/env bash
# One short run of every family on a GPU with bf16 autocast (trainer=gpu), a throughput line per family
# (benchmarks/gpu_throughput.py), then the GPU-only tests.
# Each run prints its run dir and headline metrics; any failure stops the script with its status.
#   bash scripts/gpu-smoke.sh [extra overrides for every run]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUTDIR=${GPU_SMOKE_DIR:-outputs/gpu-smoke}
run() {
  local name=$1; shift
  local start=$SECONDS
  echo "== $name: $*"
  "$PY" -m lightsuite.train trainer=gpu hydra.run.dir="$OUTDIR/$name" "$@" "${EXTRA[@]}" \
    >"$OUTDIR/$name.log" 2>&1 || { tail -n 30 "$OUTDIR/$name.log"; return 1; }
  grep -E "^run dir:" "$OUTDIR/$name.log" || true
  echo "   $((SECONDS - start)) s"
}
EXTRA=("$@")
mkdir -p "$OUTDIR"
"$PY" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
print("bf16 supported:", torch.cuda.is_bf16_supported())
PY
run resnet_digits trainer.max_epochs=3
run resnet_digits_fp32 trainer.max_epochs=3 trainer.precision=32-true
run dcgan_digits experiment=digits_dcgan trainer=gpu trainer.max_epochs=3 task.num_eval_samples=500
run gan_gaussians experiment=gaussians_gan trainer=gpu trainer.max_epochs=3
run wgan_gp_digits experiment=digits_dcgan trainer=gpu trainer.max_epochs=2 task.loss=wgan_gp task.num_eval_samples=500
run lstm_sunspots experiment=sunspots_lstm trainer=gpu trainer.max_epochs=5
run lstm_chars experiment=chars_lstm trainer=gpu trainer.max_epochs=1
run lstm_adding experiment=adding_lstm trainer=gpu trainer.max_epochs=2
# samples/s per family: eager hand loop, suite eager, suite fast path (compile + bf16), batch 512
echo "== throughput (benchmarks/gpu_throughput.py, batch 512)"
"$PY" benchmarks/gpu_throughput.py --device cuda --batch 512 --steps 50 --warmup 5 \
  >"$OUTDIR/throughput.log" 2>&1 || { tail -n 30 "$OUTDIR/throughput.log"; exit 1; }
grep -E "^(device|throughput|ratio) " "$OUTDIR/throughput.log"
"$PY" -m pytest -q -p no:cacheprovider tests/data/test_augment.py 2>&1 | tail -n 5
