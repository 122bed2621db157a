"""Times training steps of the Python reference (mblm 0.4.0) on one device, for a side-by-side figure next to the
mblm CLI's `train` on the same GPU (device-check.sh step 9).

Model P1 (reference-perf.md: 2 Transformer stages, hidden [256, 128], seq_lens [256, 8], layers [4, 2]; the same model
as examples/configs/p1-2d-tt.yaml), seeded; uniform random bytes; Adam(lr 1e-3, betas (0.9, 0.95)). One step is
zero_grad -> loss -> backward -> step, synchronised on CUDA. Prints one JSON line; progress goes to stderr.
"""
import argparse
import json
import statistics
import sys
import time

import torch

try:  # mblm imports torch.nn.attention (torch >= 2.2); older torch (a CPU dry run on Debian's 1.13) gets a no-op stand-in
    import torch.nn.attention  # noqa: F401
except ImportError:
    import contextlib
    import enum
    import types

    _attention = types.ModuleType("torch.nn.attention")
    _attention.SDPBackend = enum.IntEnum("SDPBackend", {"ERROR": -1, "MATH": 0, "FLASH_ATTENTION": 1,
                                                        "EFFICIENT_ATTENTION": 2, "CUDNN_ATTENTION": 3})
    _attention.sdpa_kernel = contextlib.contextmanager(lambda *args, **kwargs: (yield))
    sys.modules["torch.nn.attention"] = _attention
    torch.nn.attention = _attention

from mblm import MBLM, MBLMModelConfig, MBLMReturnType  # noqa: E402


def block(heads, head_dim):
    return {"block_type": "transformer", "attn_head_dims": head_dim, "attn_num_heads": heads, "attn_use_rot_embs": True,
            "attn_dropout": 0.0, "ff_multiplier": 2, "ff_dropout": 0.0, "use_flash_attn": False, "pos_emb_type": "fixed"}


P1 = {"num_tokens": 257, "pad_token_id": 256, "hidden_dims": [256, 128], "seq_lens": [256, 8], "num_layers": [4, 2],
      "train_checkpoint_chunks": None, "block": [block(4, 64), block(4, 32)]}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (CUDA)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = MBLM(MBLMModelConfig.model_validate(P1)).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    x = torch.randint(0, 256, (a.batch, a.length), generator=torch.Generator().manual_seed(1234)).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times, losses = [], []
    for i in range(a.warmup + a.steps):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            loss = model(x, return_type=MBLMReturnType.LOSS)
        loss.backward()
        opt.step()
        sync()
        dt = time.perf_counter() - t0
        losses.append(float(loss.detach()))
        if i >= a.warmup:
            times.append(dt)
        print(f"[ref] step {i} loss {losses[-1]:.5f} {dt * 1e3:.1f} ms", file=sys.stderr)
    ms = statistics.median(times) * 1e3
    print(json.dumps({"model": "P1", "device": str(dev), "torch": torch.__version__, "batch": a.batch, "length": a.length,
                      "bf16": a.bf16, "ms_per_step_median": round(ms, 2), "bytes_per_s": round(a.batch * a.length / (ms / 1e3)),
                      "first_loss": round(losses[0], 5), "last_loss": round(losses[-1], 5),
                      "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else None}))


if __name__ == "__main__":
    main()
