"""Loads an `mblm export --format reference` folder into the Python reference and prints its loss on a fixed input.

    ../shared/reference-harness/run.sh scripts/interop/reference_loss.py --dir DIR --input INPUT.json [--checkpoint FILE]

DIR/config.yaml is parsed with the reference's own config class (`mblm.train.mblm.TrainEntryConfig`, via
`mblm.utils.io.load_yml`, as its trainer does), the model is built from its `params`, and the checkpoint (default
DIR/model.pth) is loaded with the reference's `load_model_state` (torch.load with weights_only=True, strict
load_state_dict). INPUT.json is {"ids": [[...]], "loss_mask": [[...]] | null}. Prints one JSON line:
{"loss": x, "checkpoint_loss": y, "input_seq_len": n, "batch_size": b, "learning_rate": lr, "dataset_id": id, "num_tensors": k}.
"""

import argparse
import json
import os
import sys

import refenv  # noqa: F401  (the harness: torch.nn.attention stub, threads; must come before mblm)
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refshims  # noqa: E402,F401  (filelock stub, LRScheduler alias for torch 1.13)
from mblm import MBLM, MBLMReturnType  # noqa: E402
from mblm.train.mblm import TrainEntryConfig  # noqa: E402
from mblm.utils.io import load_model_state, load_yml  # noqa: E402


def load(dir, checkpoint=None):
    config = load_yml(os.path.join(dir, "config.yaml"), parse_to=TrainEntryConfig)
    model = MBLM(config.params)
    model, loss = load_model_state(checkpoint or os.path.join(dir, "model.pth"), model, map_location="cpu")
    model.eval()
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
        "checkpoint_loss": checkpoint_loss,
        "input_seq_len": config.params.input_seq_len,
        "batch_size": config.train.batch_size,
        "learning_rate": config.train.learning_rate,
        "dataset_id": config.io.dataset_id,
        "num_tensors": len(model.state_dict()),
    }))


if __name__ == "__main__":
    main()
