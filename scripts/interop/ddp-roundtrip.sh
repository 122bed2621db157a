#!/bin/bash
# A round trip between MblmMLNet and the Python reference's distributed training (issue 15), on one CPU machine:
#   (a) train a few steps in .NET (`mblm train`) and export for the reference (`mblm export --format reference`);
#   (b) load the export in the reference (its TrainEntryConfig, its load_model_state) and compare the loss on a fixed
#       input with .NET's (relative difference <= 1e-5);
#   (c) continue training with `torchrun --nproc_per_node 2` (the 1.13 spelling; newer torch also takes --nproc-per-node) and DistributedDataParallel on the gloo backend (the
#       reference's MBLM module, driven by ddp_train.py; the ranks' weights are checked equal afterwards);
#   (d) load the resulting .pth back into .NET (`mblm forward --weights model.pth`) and compare the logits with the
#       reference's on the same weights (max |difference| <= 1e-4) and the loss (<= 1e-5 relative).
# Usage: scripts/interop/ddp-roundtrip.sh [--data FILE] [--work DIR] [--dotnet-steps N] [--ddp-steps N] [--nproc N]
# Needs: the .NET SDK, and the reference harness set up (../shared/reference-harness/setup.sh; HARNESS= to point
# elsewhere). Not part of CI. Default data: ../shared/data/tinyshakespeare.txt beside the harness, else this
# repository's README and docs (which change, and the figures with them).
# Exit status 0 only when every comparison holds; the last line is a JSON summary.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/scripts/interop
HARNESS=${HARNESS:-$REPO/../shared/reference-harness}
DATA="" WORK="" DOTNET_STEPS=30 DDP_STEPS=8 NPROC=2
while (($#)); do
  case $1 in
    --data) DATA=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --dotnet-steps) DOTNET_STEPS=$2; shift 2 ;;
    --ddp-steps) DDP_STEPS=$2; shift 2 ;;
    --nproc) NPROC=$2; shift 2 ;;
    *) echo "ddp-roundtrip.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x $HARNESS/run.sh ]] || { echo "ddp-roundtrip.sh: no reference harness at $HARNESS (set HARNESS=)" >&2; exit 2; }
WORK=${WORK:-$(mktemp -d /tmp/mblm-ddp-roundtrip.XXXXXX)}
mkdir -p "$WORK"
CONFIG=$HERE/tiny-config.yaml
if [[ -z $DATA && -f $HARNESS/../data/tinyshakespeare.txt ]]; then
  DATA=$HARNESS/../data/tinyshakespeare.txt
elif [[ -z $DATA ]]; then
  DATA=$WORK/data.txt
  cat "$REPO/README.md" "$REPO"/docs/*.md > "$DATA"
fi
export LOAD_GATE=0   # the harness's load gate is for timing runs; these are correctness checks
PY() { "$HARNESS/run.sh" "$@"; }
step() { echo "== $*" >&2; }

step "build the CLI (Release)"
dotnet build "$REPO/src/Mblm.Cli" -c Release -v q -nologo -o "$WORK/cli" >&2
MBLM() { dotnet "$WORK/cli/Mblm.Cli.dll" "$@"; }
python3 "$HERE/compare.py" make-input "$DATA" "$WORK/input.json" 2 128

step "(a) train $DOTNET_STEPS steps in .NET and export for the reference"
MBLM train --config "$CONFIG" --data "$DATA" --steps "$DOTNET_STEPS" --out "$WORK/dotnet" --seed 15 --threads 2 >&2
MBLM export --config "$CONFIG" --weights "$WORK/dotnet/weights.safetensors" --format reference --out "$WORK/export" >&2

step "(b) the loss of the export in .NET and in the reference"
dotnet_loss=$(MBLM forward --config "$WORK/export/config.yaml" --weights "$WORK/export/model.pth" --input "$WORK/input.json" | tail -1 | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["loss"]))')
ref_loss=$(PY "$HERE/reference_loss.py" --dir "$WORK/export" --input "$WORK/input.json" | tail -1 | python3 -c 'import json,sys; print(repr(json.load(sys.stdin)["loss"]))')
python3 "$HERE/compare.py" loss ".NET" "$dotnet_loss" reference "$ref_loss" 1e-5 | tee "$WORK/check-b.txt"

step "(c) $DDP_STEPS steps of DistributedDataParallel (gloo) with $NPROC processes"
THREADS=1 PY "$HERE/torchrun.py" --nproc_per_node "$NPROC" --master_port "${MASTER_PORT:-29517}" \
  "$HERE/ddp_train.py" --dir "$WORK/export" --data "$DATA" --steps "$DDP_STEPS" --out "$WORK/ddp" --input "$WORK/input.json" \
  | tee "$WORK/ddp.json" >&2
ddp_summary=$(grep '^{' "$WORK/ddp.json" | tail -1)
ddp_loss=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["ranks_in_sync"], "ranks differ"; print(repr(d["eval_loss"]))' "$ddp_summary")

step "(d) the DDP checkpoint back in .NET"
back=$(MBLM forward --config "$WORK/export/config.yaml" --weights "$WORK/ddp/model.pth" --input "$WORK/input.json" --logits-out "$WORK/dotnet-logits.bin" | tail -1)
back_loss=$(python3 -c 'import json,sys; print(repr(json.loads(sys.argv[1])["loss"]))' "$back")
python3 "$HERE/compare.py" logits "$WORK/dotnet-logits.bin" "$WORK/ddp/logits.bin" 1e-4 | tee "$WORK/check-d.txt"
python3 "$HERE/compare.py" loss ".NET" "$back_loss" reference "$ddp_loss" 1e-5 | tee -a "$WORK/check-d.txt"

python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(json.dumps({"work": sys.argv[2], "export_loss_dotnet": float(sys.argv[3]), "export_loss_reference": float(sys.argv[4]), "ddp_world_size": d["world_size"], "ddp_backend": d["backend"], "ddp_losses": d["losses"], "ranks_in_sync": d["ranks_in_sync"], "after_ddp_loss_reference": float(sys.argv[5]), "after_ddp_loss_dotnet": float(sys.argv[6])}))' \
  "$ddp_summary" "$WORK" "$dotnet_loss" "$ref_loss" "$ddp_loss" "$back_loss"
