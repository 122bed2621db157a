"""Loads an `mblm export --format reference` folder into the Python reference and prints its loss on a fixed input.

    ../shared/reference-harness/run.sh scripts/interop/reference_loss.py --dir DIR --input INPUT.json [--checkpoint FILE]

DIR/config.yaml is parsed with the reference's own config class (`mblm.train.mblm.TrainEntryConfig`, via
`mblm.utils.io.load_yml`, as its trainer does), the model is built from its `params`, and the checkpoint (default
DIR/model.pth) is loaded with the reference's `load_model_state` (torch.load with weights_only=True, strict
load_state_dict). INPUT.json is {"ids": [[...]], "loss_mask": [[...]] | null}. Prints one JSON line:
{"loss": x, "checkpoint_loss": y, "input_seq_len": n, "batch_size": b, "learning_rate": lr, "dataset_id": id, "num_tensors": k,
"resume_checkpoint_file": path | null, "weights_only": whether torch.load ran with weights_only=True (false only
on torch < 2.0 for a checkpoint with a float LOSS, see load), "resume_log": the trainer's log line | null}.
"""

import argparse
import json
import math
import os
import pickle
import sys

import refenv  # noqa: F401  (the harness: torch.nn.attention stub, threads; must come before mblm)
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refshims  # noqa: E402,F401  (filelock stub, LRScheduler alias for torch 1.13)
from mblm import MBLM, MBLMReturnType  # noqa: E402
from mblm.train.mblm import TrainEntryConfig  # noqa: E402
from mblm.utils.io import load_model_state, load_yml  # noqa: E402


def load(dir, checkpoint=None):
    """The config and the model, with the weights of `checkpoint`, else the config's resume.checkpoint_file (as the
    reference's trainer resumes), else DIR/model.pth; and the checkpoint's LOSS."""
    config = load_yml(os.path.join(dir, "config.yaml"), parse_to=TrainEntryConfig)
    model = MBLM(config.params)
    checkpoint = checkpoint or (config.resume.checkpoint_file if config.resume else os.path.join(dir, "model.pth"))
    try:
        model, loss = load_model_state(checkpoint, model, map_location="cpu")
        weights_only = True
    except pickle.UnpicklingError as e:
        # torch < 2.0's weights-only unpickler lacks BINFLOAT (opcode 71): it cannot read a float LOSS, the reference's
        # own checkpoints included (the reference targets torch 2). Only then, and only on such a torch, read it with
        # the full unpickler and load strictly as load_model_state does.
        if not (torch.__version__ < "2" and "Unsupported operand 71" in str(e)):
            raise
        snapshot = torch.load(checkpoint, map_location="cpu")
        model.load_state_dict(snapshot["MODEL"], strict=True)
        loss, weights_only = snapshot["LOSS"], False
    model.eval()
    load.weights_only = weights_only
    return config, model, loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--checkpoint")
    args = ap.parse_args()
    config, model, checkpoint_loss = load(args.dir, args.checkpoint)
    with open(args.input) as f:
        doc = json.load(f)
    ids = torch.tensor(doc["ids"], dtype=torch.long)
    mask = doc.get("loss_mask")
    with torch.no_grad():
        loss = model(ids, return_type=MBLMReturnType.LOSS,
                     loss_mask=None if mask is None else torch.tensor(mask, dtype=torch.float32))
    print(json.dumps({
        "loss": loss.item(),
        # JSON has no infinities: a non-finite LOSS (the inf of `mblm export --resume`) is printed as a string
        "checkpoint_loss": checkpoint_loss if checkpoint_loss is None or math.isfinite(checkpoint_loss) else str(checkpoint_loss),
        "input_seq_len": config.params.input_seq_len,
        "batch_size": config.train.batch_size,
        "learning_rate": config.train.learning_rate,
        "dataset_id": config.io.dataset_id,
        "num_tensors": len(model.state_dict()),
        "resume_checkpoint_file": config.resume.checkpoint_file if config.resume else None,
        "weights_only": load.weights_only,
        # the reference trainer's log line when it resumes (a float format: LOSS None would fail here)
        "resume_log": f"Loaded model with loss {checkpoint_loss:.4f} from checkpoint" if config.resume else None,
    }))


if __name__ == "__main__":
    main()
