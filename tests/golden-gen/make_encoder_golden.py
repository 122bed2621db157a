"""Golden vectors for the MBLM encoder (reference `MBLMEncoder` with `transformerEncoder` stages).

Runs the Python reference (mblm 0.4.0) through the reference harness and writes one folder per case:

    ../shared/reference-harness/run.sh tests/golden-gen/make_encoder_golden.py [--out tests/Mblm.Tests/Golden]

(run from the repository root; the harness's setup.sh must have been run once). Every case folder holds

    config.json          MBLMEncoderModelConfig.model_dump(): {"mask_token_id": m, "mblm_config": {...}}
    weights.safetensors  the encoder's full state_dict (parameters and buffers), names "mblm.*", float32
    input.json           {"ids": masked input ids (B, L), "mask": bool (B, L), "labels": original ids (B, L)}
    expected.json        loss, loss_count, shapes, sums, first rows, grad norms, non-causality probe, versions
    logits.bin           forward(return_type=LOGITS): (B, L, V) float32 little-endian, row-major, no header
    hidden.bin           forward(return_type=HIDDEN_STATE): (B, L, D_last) float32, same layout

Everything is seeded (one seed per case); CPU float32, eval mode, dropout 0, non-flash attention. Gradient norms
come from one backward of the LOSS in training mode (dropout 0, so the forward equals eval mode).
"""

import argparse
import json
import os
import platform
import struct
import sys

import refenv  # noqa: F401  (torch.nn.attention stub, threads; must come before mblm)
import torch
from mblm import MBLMEncoderModelConfig, MBLMReturnType
from mblm.model.mblm import MBLMEncoder

NUM_TOKENS = 258  # 256 bytes + pad + mask
PAD = 256
MASK = 257


def enc(heads, head_dim, pos="fixed", rot=True):
    return {
        "block_type": "transformerEncoder",
        "pos_emb_type": pos,
        "attn_head_dims": head_dim,
        "attn_num_heads": heads,
        "attn_use_rot_embs": rot,
        "attn_dropout": 0.0,
        "ff_multiplier": 2,
        "ff_dropout": 0.0,
        "use_flash_attn": False,
    }


def dec(heads, head_dim, pos="fixed", rot=True):
    b = enc(heads, head_dim, pos, rot)
    b["block_type"] = "transformer"
    return b


# name -> (seed, model config, batch, length, masking probability, notes)
CASES = {
    # Two encoder stages; patch padding 27 -> 28; row 1 ends with six pad ids that are never masked (as the reference's
    # PG19Masked pads after masking, with mask False on the padding).
    "enc_t2": dict(
        seed=101,
        cfg=dict(hidden_dims=[24, 8], seq_lens=[8, 4], num_layers=[2, 1], train_checkpoint_chunks=None,
                 block=[enc(3, 8), enc(2, 4)]),
        batch=2, length=27, proba=0.3, pad_tail=6,
        notes="two transformerEncoder stages, 2 layers on the global stage, padding 27 -> 28, row 1 ends with 6 pad ids (mask False)",
    ),
    # Three encoder stages; padding 40 -> 48; attention inner dim != model dim on the middle stage (2 x 4 = 8 vs 16).
    # Edge cases of the loss rule: one masked position whose label is the pad id (it counts: the encoder loss ignores
    # only mask_token_id) and one masked position whose label equals mask_token_id (it is ignored).
    "enc_t3": dict(
        seed=202,
        cfg=dict(hidden_dims=[24, 16, 8], seq_lens=[4, 4, 3], num_layers=[1, 1, 1], train_checkpoint_chunks=None,
                 block=[enc(3, 8), enc(2, 4), enc(2, 4)]),
        batch=1, length=40, proba=0.25, pad_tail=0, label_pad_at=7, label_mask_at=12,
        notes="three transformerEncoder stages, padding 40 -> 48, inner dim 8 vs model dim 16 on stage 1; "
              "masked label == pad_token_id at t=7 counts, masked label == mask_token_id at t=12 is ignored",
    ),
    # A non-causal global stage over a causal local Transformer (the reference accepts any mix of registered blocks);
    # RoPE positional embedding ("rope", torchtune interleaved) on the global stage, no rotary embedding in its
    # attention; checkpoint chunks on the local stage (training path); no patch padding (24 = 6 x 4).
    "enc_mix": dict(
        seed=303,
        cfg=dict(hidden_dims=[16, 8], seq_lens=[6, 4], num_layers=[1, 2], train_checkpoint_chunks=[2],
                 block=[enc(2, 8, pos="rope", rot=False), dec(2, 4)]),
        batch=2, length=24, proba=0.2, pad_tail=0,
        notes="transformerEncoder global stage (pos_emb rope, no rotary in attention) + causal transformer local stage "
              "(2 layers), train_checkpoint_chunks [2], no padding",
    ),
}


def save_safetensors(path, tensors):
    names = sorted(tensors)
    header, offset, blobs = {}, 0, []
    for name in names:
        t = tensors[name].detach().to(torch.float32).contiguous()
        raw = t.numpy().tobytes()  # little-endian on this machine
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def perturb_constant_parameters(model, gen):
    """Norm gains/biases start at 1/0 in PyTorch's default init; move them by 0.02 N(0,1) so that every parameter is
    exercised by the comparison (the shared golden cases do the same)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".g") or isinstance(_module_of(model, name), torch.nn.LayerNorm):
                p.add_(0.02 * torch.randn(p.shape, generator=gen))


def _module_of(model, param_name):
    mod = model
    for part in param_name.split(".")[:-1]:
        mod = getattr(mod, part) if not part.isdigit() else mod[int(part)]
    return mod


def make_inputs(case, gen):
    b, length = case["batch"], case["length"]
    labels = torch.randint(0, 256, (b, length), generator=gen)
    mask = torch.rand((b, length), generator=gen) < case["proba"]
    mask[:, 0] = True  # at least one counted position per row
    if case["pad_tail"]:
        labels[-1, -case["pad_tail"]:] = PAD
        mask[-1, -case["pad_tail"]:] = False
    if "label_pad_at" in case:
        labels[0, case["label_pad_at"]] = PAD
        mask[0, case["label_pad_at"]] = True
    if "label_mask_at" in case:
        labels[0, case["label_mask_at"]] = MASK
        mask[0, case["label_mask_at"]] = True
    ids = labels.clone()
    ids[mask] = MASK
    return ids, mask, labels


def f32list(t):
    return [float(x) for x in t.reshape(-1).tolist()]


def build(name, case, out_dir):
    torch.manual_seed(case["seed"])
    cfg = MBLMEncoderModelConfig.model_validate(
        {"mask_token_id": MASK, "mblm_config": {"num_tokens": NUM_TOKENS, "pad_token_id": PAD, **case["cfg"]}})
    model = MBLMEncoder(cfg)
    gen = torch.Generator().manual_seed(case["seed"] + 7)
    perturb_constant_parameters(model, gen)
    ids, mask, labels = make_inputs(case, gen)
    model.eval()

    with torch.no_grad():
        hidden = model(ids, return_type=MBLMReturnType.HIDDEN_STATE)
        logits = model(ids, return_type=MBLMReturnType.LOGITS)
        loss, logits2 = model(ids, mask, labels.clone(), return_type=MBLMReturnType.LOSS_LOGITS)
        assert torch.equal(logits, logits2)
        # which positions count: mask True and label != mask_token_id (labels are overwritten in place by the reference)
        counted = mask & (labels != MASK)
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.masked_fill(~counted, 0), reduction="none")
        ce_sum = ce[counted].double().sum().item()
        assert abs(ce_sum / counted.sum().item() - loss.item()) <= 1e-5 * abs(loss.item())

        # non-causality probe: change the LAST byte of row 0 and look at the FIRST position's hidden state
        probe_ids = ids.clone()
        probe_ids[0, -1] = (int(probe_ids[0, -1]) + 101) % 256
        probe_hidden = model(probe_ids, return_type=MBLMReturnType.HIDDEN_STATE)
        probe_delta0 = (probe_hidden[0, 0] - hidden[0, 0]).abs().max().item()

    # gradient norms: training mode (dropout 0), one backward of the encoder's masked loss
    model.train()
    model.zero_grad(set_to_none=True)
    model(ids, mask, labels.clone(), return_type=MBLMReturnType.LOSS).backward()
    grad_norms = {n: (p.grad.norm().item() if p.grad is not None else 0.0) for n, p in model.named_parameters()}
    model.eval()

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg.model_dump(mode="json"), f, indent=2)
    save_safetensors(os.path.join(out_dir, "weights.safetensors"), model.state_dict())
    with open(os.path.join(out_dir, "input.json"), "w") as f:
        f.write("{\n")
        f.write(' "ids": ' + json.dumps(ids.tolist(), separators=(",", ":")) + ",\n")
        f.write(' "mask": ' + json.dumps(mask.tolist(), separators=(",", ":")) + ",\n")
        f.write(' "labels": ' + json.dumps(labels.tolist(), separators=(",", ":")) + "\n}\n")
    with open(os.path.join(out_dir, "logits.bin"), "wb") as f:
        f.write(logits.contiguous().numpy().astype("<f4").tobytes())
    with open(os.path.join(out_dir, "hidden.bin"), "wb") as f:
        f.write(hidden.contiguous().numpy().astype("<f4").tobytes())

    argmax = logits.argmax(-1)
    top2 = logits.topk(2, dim=-1).values
    ambiguous = [[b, t] for b in range(logits.shape[0]) for t in range(logits.shape[1])
                 if (top2[b, t, 0] - top2[b, t, 1]).item() < 2e-4]
    expected = {
        "case": name,
        "notes": case["notes"],
        "mask_token_id": MASK,
        "loss": loss.item(),
        "loss_count": int(counted.sum().item()),
        "loss_numerator": ce_sum,
        "logits_shape": list(logits.shape),
        "hidden_shape": list(hidden.shape),
        "logits_sum": logits.double().sum().item(),
        "logits_abs_sum": logits.double().abs().sum().item(),
        "hidden_sum": hidden.double().sum().item(),
        "hidden_abs_sum": hidden.double().abs().sum().item(),
        "argmax": argmax.tolist(),
        "argmax_ambiguous": ambiguous,
        "logits_first_row": f32list(logits[0, 0, :8]),
        "logits_last_row": f32list(logits[0, -1, :8]),
        "hidden_first_row": f32list(hidden[0, 0, :8]),
        "noncausal_probe": {
            "row": 0, "position": int(ids.shape[1] - 1), "new_id": int(probe_ids[0, -1]),
            "hidden_pos0_first8": f32list(probe_hidden[0, 0, :8]),
            "hidden_pos0_max_abs_change": probe_delta0,
        },
        "grad_norms": grad_norms,
        "versions": {
            "mblm": refenv.mblm.__version__, "mblm_commit": "ea96fd8", "megabyte_pytorch": "0.3.6 (21eec73)",
            "einops": __import__("einops").__version__, "torch": torch.__version__,
            "python": platform.python_version(), "generator": "tests/golden-gen/make_encoder_golden.py",
            "seed": case["seed"],
        },
    }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps({"case": name, "loss": loss.item(), "loss_count": expected["loss_count"],
                      "probe_delta": probe_delta0, "ambiguous": len(ambiguous)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join("tests", "Mblm.Tests", "Golden"))
    ap.add_argument("cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    for name in args.cases:
        build(name, CASES[name], os.path.join(args.out, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
