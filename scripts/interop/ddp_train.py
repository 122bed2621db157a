"""Continues training an `mblm export --format reference` folder with PyTorch's DistributedDataParallel on CPU (gloo).

Started by torchrun (one process per rank), e.g. through the reference harness:

    ../shared/reference-harness/run.sh scripts/interop/torchrun.py --nproc_per_node 2 \
        scripts/interop/ddp_train.py --dir EXPORT --data FILE --steps 8 --out OUT --input INPUT.json

The reference's own decoder entry point (mblm.train.mblm.train_mblm) hard-codes the NCCL backend, so this drives the
reference's `MBLM` module with DDP itself: the config is parsed with the reference's `TrainEntryConfig`, the weights are
loaded with its `load_model_state`, and every rank trains on its own windows of `input_seq_len` bytes of FILE (rank r
takes windows r, r + world, ...), `train.batch_size` per rank, Adam with `train.learning_rate`, betas (0.9, 0.95).
DDP averages the gradients over ranks, so all ranks hold the same weights after every step; this is checked at the end
(a parameter checksum gathered from every rank). Rank 0 then saves OUT/model.pth with the reference's
`save_model_state` ({"MODEL": state_dict, "LOSS": last loss}) and the eval-mode logits of the model on INPUT.json as
OUT/logits.bin (float32, row-major), and prints one JSON line.
"""

import argparse
import json
import os
import sys

import refenv  # noqa: F401  (the harness: torch.nn.attention stub; must come before mblm)
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refshims  # noqa: E402,F401
from mblm import MBLMReturnType  # noqa: E402
from mblm.utils.io import save_model_state  # noqa: E402
from reference_loss import load  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", required=True)
    ap.add_argument("--input", required=True)
    args = ap.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    torch.manual_seed(1234 + rank)

    config, model, _ = load(args.dir)
    model.train()
    ddp = DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=config.train.learning_rate, betas=(0.9, 0.95))
    L, B = config.params.input_seq_len, config.train.batch_size
    data = torch.frombuffer(bytearray(open(args.data, "rb").read()), dtype=torch.uint8).long()
    windows = data.numel() // L
    if windows < world * B:
        raise SystemExit(f"{args.data}: {windows} windows of {L} bytes, need at least {world * B}")

    losses = []
    for step in range(args.steps):
        idx = [(step * world * B + rank + world * i) % windows for i in range(B)]
        x = torch.stack([data[j * L:(j + 1) * L] for j in idx])
        opt.zero_grad(set_to_none=True)
        loss = ddp(x, return_type=MBLMReturnType.LOSS)
        loss.backward()
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
        if rank == 0:
            print(f"ddp step {step}: mean loss over {world} ranks {losses[-1]:.6f}", file=sys.stderr, flush=True)

    with torch.no_grad():
        checksum = torch.stack([p.double().sum() for p in model.parameters()]).sum().reshape(1)
        gathered = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
        dist.all_gather(gathered, checksum)
    in_sync = all(torch.equal(g, gathered[0]) for g in gathered)

    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        _, path = save_model_state(args.out, "model", model.state_dict(), losses[-1])
        model.eval()
        with open(args.input) as f:
            ids = torch.tensor(json.load(f)["ids"], dtype=torch.long)
        with torch.no_grad():
            logits = model(ids, return_type=MBLMReturnType.LOGITS)
            eval_loss = model(ids, return_type=MBLMReturnType.LOSS)
        logits.contiguous().float().numpy().astype("<f4").tofile(os.path.join(args.out, "logits.bin"))
        print(json.dumps({"world_size": world, "backend": dist.get_backend(), "steps": args.steps, "losses": losses,
                          "ranks_in_sync": in_sync, "checkpoint": str(path), "eval_loss": eval_loss.item(),
                          "logits_shape": list(logits.shape)}), flush=True)
    dist.barrier()
    dist.destroy_process_group()
    if not in_sync:
        raise SystemExit("the ranks' weights differ after DDP training")


if __name__ == "__main__":
    main()
