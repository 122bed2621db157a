"""Reference `.pth` checkpoints for the .NET importer (issue 15, part 1).

Runs the Python reference (mblm 0.4.0) through the reference harness, from the repository root:

    ../shared/reference-harness/run.sh tests/golden-gen/make_pth_fixtures.py [--out tests/Mblm.Tests/Fixtures/pth]

and writes, for one tiny two-stage transformer MBLM (seeded):

    config.json             the model config (MBLMModelConfig.model_dump())
    checkpoint.pth          what the reference trainer saves: mblm.utils.io.save_model_state -> {"MODEL": state_dict, "LOSS": float}
    state-dict.pth          a bare state dict: torch.save(model.state_dict()) (pickle protocol 2, GLOBAL opcodes)
    state-dict-proto4.pth   the same with pickle_protocol=4 (STACK_GLOBAL and MEMOIZE opcodes)
    input.json              {"ids": (B, L), "loss_mask": null}
    logits.bin              forward(return_type=LOGITS) in eval mode: (B, L, V) float32 little-endian, row-major
    expected.json           loss (forward LOSS on input.json), the checkpoint's LOSS, shapes, versions
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import refenv  # noqa: F401  (torch.nn.attention stub, threads; must come before mblm)
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "interop"))
import refshims  # noqa: E402,F401  (filelock stub, LRScheduler alias)
from mblm import MBLM, MBLMModelConfig, MBLMReturnType  # noqa: E402
from mblm.utils.io import save_model_state  # noqa: E402

CONFIG = {
    "num_tokens": 257,
    "pad_token_id": 256,
    "hidden_dims": [24, 16],
    "num_layers": [1, 1],
    "seq_lens": [6, 4],
    "train_checkpoint_chunks": None,
    "block": [
        {"block_type": "transformer", "pos_emb_type": "fixed", "attn_head_dims": 8, "attn_num_heads": 2,
         "attn_use_rot_embs": True, "attn_dropout": 0.0, "ff_multiplier": 2, "ff_dropout": 0.0, "use_flash_attn": False},
        {"block_type": "transformer", "pos_emb_type": "fixed", "attn_head_dims": 8, "attn_num_heads": 2,
         "attn_use_rot_embs": True, "attn_dropout": 0.0, "ff_multiplier": 2, "ff_dropout": 0.0, "use_flash_attn": False},
    ],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/Mblm.Tests/Fixtures/pth")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    torch.manual_seed(15)
    config = MBLMModelConfig.model_validate(CONFIG)
    model = MBLM(config)
    # Perturb every tensor away from its initialisation (zeros, ones) so that a loader that skips a tensor is caught.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()

    gen = torch.Generator().manual_seed(1515)
    ids = torch.randint(0, 256, (2, 19), generator=gen)
    ids[1, 15:] = 256
    with torch.no_grad():
        logits = model(ids, return_type=MBLMReturnType.LOGITS)
        loss = model(ids, return_type=MBLMReturnType.LOSS)

    checkpoint_loss = 3.25  # the trainer stores a Python float (the validation loss)
    with tempfile.TemporaryDirectory() as tmp:
        _, path = save_model_state(tmp, "checkpoint", model, checkpoint_loss)
        shutil.copyfile(path, os.path.join(args.out, "checkpoint.pth"))
    torch.save(model.state_dict(), os.path.join(args.out, "state-dict.pth"))
    torch.save(model.state_dict(), os.path.join(args.out, "state-dict-proto4.pth"), pickle_protocol=4)

    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config.model_dump(), f, indent=2)
    with open(os.path.join(args.out, "input.json"), "w") as f:
        json.dump({"ids": ids.tolist(), "loss_mask": None}, f)
    logits.contiguous().float().numpy().astype("<f4").tofile(os.path.join(args.out, "logits.bin"))
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump({
            "loss": loss.item(),
            "checkpoint_loss": checkpoint_loss,
            "logits_shape": list(logits.shape),
            "num_tensors": len(model.state_dict()),
            "torch": torch.__version__,
        }, f, indent=2)
    for name in sorted(os.listdir(args.out)):
        print(f"{name}: {os.path.getsize(os.path.join(args.out, name))} bytes")


if __name__ == "__main__":
    main()
