#!/usr/bin/env bash
# Runs ON a GPU machine that has no internet and no .NET but a PyTorch 2.11+cu130 installation
# (e.g. a venv at /opt/torch/.venv; PY or TORCH_LIB point elsewhere):
#
#   bash scripts/gpu/device-check.sh BUNDLE_DIR   (BUNDLE_DIR made by scripts/gpu/make-bundle.sh; about 4-6 minutes)
#
# What it does: unpacks the .NET runtime and the libtorch-free app; checks that every symbol libLibTorchSharp.so
# (TorchSharp 0.107, built for libtorch 2.10) needs is defined by the venv's torch/lib; puts the venv's torch/lib
# and nvidia/*/lib on LD_LIBRARY_PATH; runs `mblm info`, a CUDA probe, golden forwards on CPU and CUDA against
# expected.json/logits.bin, a short training benchmark (CUDA fp32, CUDA bf16, CPU), one M3 training step at long
# contexts on CUDA (peak GPU memory from nvidia-smi), and, where the venv can run it, the Python reference's P1 step on
# the same GPU.
# Results: $RESULTS_DIR, else $OUT if set, else /tmp/gpu-check-results: device-check.log, summary.json,
# missing-symbols.txt, probe.json, golden.jsonl, train-*.log.
#
# Env knobs: PY (python with torch), TORCH_LIB (skip python discovery: use this libtorch folder), STEPS (train steps,
# default 30), BATCH (default 16), SKIP_TRAIN=1, CPU_ONLY=1 (local dry run on a machine without a GPU),
# LC_CONTEXTS (M3 contexts, default "1048576 2097152 5242880"; empty skips), SKIP_REF=1.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUNDLE=$(cd "${1:-gpu-bundle}" 2>/dev/null && pwd) || { echo "bundle folder '${1:-gpu-bundle}' not found (run make-bundle.sh and bring the folder along)"; exit 2; }
RES=${RESULTS_DIR:-${OUT:-/tmp/gpu-check-results}}
mkdir -p "$RES"
exec > >(tee -a "$RES/device-check.log") 2>&1
T0=$(date +%s)
STEPS=${STEPS:-30}
BATCH=${BATCH:-16}
step() { echo; echo "=== [$(( $(date +%s) - T0 ))s] $*"; }
declare -A S   # summary fields (strings that are valid JSON values)
jstr() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1" 2>/dev/null || printf '"%s"' "$1"; }

# ---------------------------------------------------------------------------------------------------------------
step "0. machine facts"
uname -srm
grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null
ldd --version 2>&1 | head -n 1
LIBSTDCXX=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/{print $NF; exit}')
[ -n "$LIBSTDCXX" ] && echo "libstdc++: $LIBSTDCXX, newest $(grep -ao 'GLIBCXX_3\.4\.[0-9]*' "$LIBSTDCXX" | sort -uV | tail -n 1)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
command -v dotnet >/dev/null && echo "note: a dotnet is already installed here: $(command -v dotnet) (not used)"

if [ -z "${PY:-}" ]; then
  for p in /opt/torch/.venv/bin/python3 python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then PY=$p; break; fi
  done
fi
PY=${PY:-python3}
if [ -z "${TORCH_LIB:-}" ]; then
  TORCH_INFO=$("$PY" - <<'EOF'
import os, torch
print(os.path.dirname(torch.__file__))
print(torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
  ) || { echo "python with torch not found (set PY or TORCH_LIB)"; exit 2; }
  TORCH_DIR=$(head -n 1 <<<"$TORCH_INFO")
  echo "python: $PY; torch: $(tail -n 1 <<<"$TORCH_INFO")"
  S[torch]=$(jstr "$(tail -n 1 <<<"$TORCH_INFO")")
  TORCH_LIB=$TORCH_DIR/lib
  SITE=$(dirname "$TORCH_DIR")
else
  SITE=$(cd "$TORCH_LIB/../.." && pwd)
  S[torch]=$(jstr "TORCH_LIB override")
fi
NV_DIRS=$(find "$SITE/nvidia" "$SITE/cusparselt" "$SITE/nvshmem" -type f -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)
echo "torch/lib: $TORCH_LIB"; ls "$TORCH_LIB" | paste -sd' ' -
echo "nvidia lib dirs: ${NV_DIRS:-none}"

# ---------------------------------------------------------------------------------------------------------------
step "1. unpack runtime + app"
W=$(mktemp -d /tmp/mblm-gpu.XXXXXX)
mkdir -p "$W/dotnet" "$W/app"
extract() {
  if command -v xz >/dev/null; then tar -xJf "$1" -C "$2"
  else "$PY" -c 'import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; fi
}
extract "$BUNDLE/dotnet-runtime.tar.xz" "$W/dotnet" && extract "$BUNDLE/app.tar.xz" "$W/app" || { echo "unpack failed"; exit 2; }
chmod +x "$W/dotnet/dotnet"
du -sh "$W/dotnet" "$W/app"
APP=$W/app
CASES=$BUNDLE/cases

# ---------------------------------------------------------------------------------------------------------------
step "2. symbol check: libLibTorchSharp.so (libtorch 2.10 build) against $TORCH_LIB"
# Only the libraries the shim's load graph can reach (libtorch_python.so & co. are never loaded by .NET).
LOADED=()
for n in libtorch.so libtorch_cpu.so libc10.so libtorch_cuda.so libc10_cuda.so libtorch_global_deps.so; do
  [ -f "$TORCH_LIB/$n" ] && LOADED+=("$TORCH_LIB/$n")
done
"$PY" "$HERE/symcheck.py" "$APP/libLibTorchSharp.so" "${LOADED[@]}" --demangle --list-out "$RES/missing-symbols.txt"
S[missing_symbols]=$(wc -l < "$RES/missing-symbols.txt" 2>/dev/null | tr -d ' ' || true)
[ -n "${S[missing_symbols]}" ] || S[missing_symbols]=null
echo "(missing function symbols only fail when called — .NET dlopens lazily; missing vtables/typeinfo fail the load)"

# ---------------------------------------------------------------------------------------------------------------
step "3. environment"
export DOTNET_ROOT=$W/dotnet PATH=$W/dotnet:$PATH
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
export NUGET_PACKAGES=$W/no-nuget   # TorchSharp's fallback must never find a NuGet cache and mix in another libtorch
export LD_LIBRARY_PATH=$TORCH_LIB${NV_DIRS:+:$NV_DIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export MBLM_LIBTORCH_DIR=$TORCH_LIB  # the app preloads this libtorch by full path; `mblm info` reports it
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
echo "MBLM_LIBTORCH_DIR=$MBLM_LIBTORCH_DIR"
dotnet --list-runtimes
ls "$APP" | grep -E '^lib(torch|c10)' && echo "WARNING: the app folder holds a libtorch copy; it would shadow the venv's"

# ---------------------------------------------------------------------------------------------------------------
# On a load failure, show what the dynamic linker could not find (libtorch.so of a CUDA wheel NEEDs libtorch_cuda.so,
# which NEEDs the CUDA runtime libraries, so even the CPU path fails if one of them is not found).
loader_diag() {
  echo "--- loader diagnostics (LD_DEBUG=libs, errors and torch/cuda lines)"
  LD_DEBUG=libs timeout 120 dotnet "$APP/$1" "${@:2}" 2>&1 >/dev/null \
    | grep -E 'error|cannot|not found|torch_cuda|libcudart|libcublas|libcudnn|libnccl|libLibTorchSharp' \
    | grep -v -E 'calling (init|fini)|DllMain|PAL_RegisterModule|trying file' | head -n 40
}

step "4. mblm info"
timeout 60 dotnet "$APP/Mblm.Cli.dll" info --config "$CASES/p1-2d-tt.yaml" | tee "$W/info.out"
S[info_rc]=${PIPESTATUS[0]}
S[libtorch]=$(jstr "$(grep -m1 '^libtorch:' "$W/info.out")")
[ "${S[info_rc]}" = 0 ] || loader_diag Mblm.Cli.dll info --config "$CASES/p1-2d-tt.yaml"

# ---------------------------------------------------------------------------------------------------------------
step "5. CUDA probe (TorchSharp only)"
timeout 120 dotnet "$APP/GpuProbe.dll" | tee "$RES/probe.out"
S[probe_rc]=${PIPESTATUS[0]}
tail -n 1 "$RES/probe.out" > "$RES/probe.json"
S[probe]=$(python3 -c 'import json,sys; json.load(open(sys.argv[1])); print(open(sys.argv[1]).read().strip())' "$RES/probe.json" 2>/dev/null || echo null)
[ "${S[probe_rc]}" = 0 ] || [ "${CPU_ONLY:-0}" = 1 ] || loader_diag GpuProbe.dll

# ---------------------------------------------------------------------------------------------------------------
step "6. golden forwards (CPU and CUDA) vs expected"
: > "$RES/golden.jsonl"
DEVICES="cpu cuda"; [ "${CPU_ONLY:-0}" = 1 ] && DEVICES=cpu
GOLD_PASS=0; GOLD_RUNS=0
for c in "$CASES"/v*/; do
  name=$(basename "$c")
  for d in $DEVICES; do
    GOLD_RUNS=$((GOLD_RUNS + 1))
    timeout 120 dotnet "$APP/Mblm.Cli.dll" forward --config "$c/config.json" --weights "$c/weights.safetensors" \
      --input "$c/input.json" --device "$d" --logits-out "$W/logits-$name-$d.bin" > "$W/fwd-$name-$d.out" 2> "$W/fwd-$name-$d.err"
    rc=$?
    [ $rc -ne 0 ] && { echo "forward $name on $d: rc=$rc"; tail -n 20 "$W/fwd-$name-$d.err"; }
    line=$("$PY" "$HERE/compare_golden.py" "$c" "$W/fwd-$name-$d.out" "$W/logits-$name-$d.bin" "$d")
    echo "$line" >> "$RES/golden.jsonl"
    case "$line" in *'"pass": true'*) GOLD_PASS=$((GOLD_PASS + 1)) ;; esac
  done
done
cat "$RES/golden.jsonl"
S[golden]="\"$GOLD_PASS/$GOLD_RUNS pass (|dlogit|, |dloss| <= 1e-4)\""

# ---------------------------------------------------------------------------------------------------------------
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  step "7. training benchmark: p1-2d-tt (3.06 M params, window 2048), batch $BATCH, $STEPS steps"
  bench() {  # label, timeout, extra args...
    local label=$1 limit=$2; shift 2
    local t1=$(date +%s%N)
    timeout "$limit" dotnet "$APP/Mblm.Cli.dll" train --config "$CASES/p1-2d-tt.yaml" --data "$CASES/train.txt" \
      --batch "$BATCH" --lr 1e-3 --out "$W/train-$label" "$@" > "$W/train-$label.out" 2> "$RES/train-$label.log"
    local rc=$? t2=$(date +%s%N)
    local last=$(tr '\r' '\n' < "$RES/train-$label.log" | grep '^step ' | tail -n 1 | sed 's/ *$//')
    local ms=$(( (t2 - t1) / 1000000 ))
    echo "$label: rc=$rc wall=${ms} ms (includes process start, CUDA init, model build) last: $last"
    tail -n 1 "$W/train-$label.out"
    [ $rc -ne 0 ] && tail -n 15 "$RES/train-$label.log"
    S[train_$label]=$(jstr "rc=$rc; wall ${ms} ms; $last")
  }
  if [ "${CPU_ONLY:-0}" != 1 ]; then
    bench cuda_fp32 180 --steps "$STEPS" --device cuda
    bench cuda_bf16 180 --steps "$STEPS" --device cuda --bf16
  fi
  bench cpu 90 --steps 3 --device cpu
fi

# ---------------------------------------------------------------------------------------------------------------
LC_DEFAULT="1048576 2097152 5242880"; LC_DEVICE=cuda
[ "${CPU_ONLY:-0}" = 1 ] && { LC_DEFAULT=""; LC_DEVICE=cpu; }   # a dry run asks for its (small) contexts explicitly
LC_CONTEXTS=${LC_CONTEXTS-$LC_DEFAULT}
if [ -n "$LC_CONTEXTS" ]; then
  step "8. long context: one M3 training step per context on $LC_DEVICE (batch 1, checkpoint chunks [4, 8]; the paper: 5M bytes on 80 GB)"
  # M3 as in the benchmarks' long-context: hidden 128 per stage, layers [2, 1, 1], 4x32 heads, seq_lens [ctx/64, 8, 8].
  MAXC=0; for c in $LC_CONTEXTS; do [ "$c" -gt "$MAXC" ] && MAXC=$c; done
  head -c $((MAXC + 4096)) /dev/urandom > "$W/random.bin"
  BLOCK='{"block_type": "transformer", "attn_head_dims": 32, "attn_num_heads": 4, "attn_use_rot_embs": true, "pos_emb_type": "fixed"}'
  for c in $LC_CONTEXTS; do
    printf '{"num_tokens": 257, "pad_token_id": 256, "hidden_dims": [128, 128, 128], "num_layers": [2, 1, 1], "seq_lens": [%d, 8, 8], "train_checkpoint_chunks": [4, 8], "block": [%s, %s, %s]}\n' \
      $((c / 64)) "$BLOCK" "$BLOCK" "$BLOCK" > "$W/m3-$c.json"
    (while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -n 1; sleep 0.2; done) > "$W/mem-$c.txt" &
    SAMPLER=$!
    t1=$(date +%s%N)
    timeout 240 dotnet "$APP/Mblm.Cli.dll" train --config "$W/m3-$c.json" --data "$W/random.bin" --window "$c" --batch 1 \
      --steps 2 --lr 1e-3 --device "$LC_DEVICE" --out "$W/lc-$c" > "$W/lc-$c.out" 2> "$RES/long-context-$c.log"
    rc=$?; t2=$(date +%s%N)
    kill $SAMPLER 2>/dev/null; wait $SAMPLER 2>/dev/null
    peak=$(sort -n "$W/mem-$c.txt" | tail -n 1)
    last=$(tr '\r' '\n' < "$RES/long-context-$c.log" | grep '^step ' | tail -n 1 | sed 's/ *$//')
    echo "context $c: rc=$rc wall=$(( (t2 - t1) / 1000000 )) ms for 2 steps (with start-up); peak GPU memory ${peak:-?} MiB; last: $last"
    [ $rc -ne 0 ] && tail -n 5 "$RES/long-context-$c.log"
    S[long_context_$c]=$(jstr "rc=$rc; peak GPU ${peak:-?} MiB; wall $(( (t2 - t1) / 1000000 )) ms for 2 steps; $last")
  done
fi

# ---------------------------------------------------------------------------------------------------------------
if [ "${SKIP_REF:-0}" != 1 ] && [ -f "$BUNDLE/reference.tar.xz" ]; then
  step "9. the Python reference on the same device (P1, batch $BATCH, window 2048, $STEPS steps)"
  mkdir -p "$W/ref" && extract "$BUNDLE/reference.tar.xz" "$W/ref"
  # The reference needs pydantic 2, typing_extensions and packaging from the venv (the bundle brings mblm,
  # MEGABYTE_pytorch, einops and stand-ins for beartype and mamba_ssm).
  if PYTHONPATH="$W/ref" "$PY" -c 'import pydantic, sys; sys.exit(0 if pydantic.VERSION.startswith("2") else 1)' 2>/dev/null; then
    DEV=cuda; [ "${CPU_ONLY:-0}" = 1 ] && DEV=cpu
    PYTHONPATH="$W/ref" timeout 300 "$PY" "$HERE/ref_gpu_step.py" --device "$DEV" --batch "$BATCH" --steps "$STEPS" \
      > "$RES/reference-p1.json" 2> "$RES/reference-p1.log"
    rc=$?
    tail -n 3 "$RES/reference-p1.log"; cat "$RES/reference-p1.json"
    S[reference_p1]=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$RES/reference-p1.json" 2>/dev/null || jstr "rc=$rc")
  else
    echo "the venv lacks pydantic 2: the reference (mblm 0.4.0 needs it) cannot run here; skipped"
    S[reference_p1]=$(jstr "skipped: no pydantic 2 in $PY")
  fi
fi

# ---------------------------------------------------------------------------------------------------------------
step "summary"
{
  echo "{"
  first=1
  for k in "${!S[@]}"; do
    [ $first = 1 ] || echo ","
    first=0
    printf '  "%s": %s' "$k" "${S[$k]}"
  done
  echo; echo "}"
} > "$RES/summary.json"
cat "$RES/summary.json"
echo "elapsed $(( $(date +%s) - T0 ))s; results in $RES"
rm -rf "$W"
