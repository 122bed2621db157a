"""Helpers of ddp-roundtrip.sh (plain Python 3, no torch):

    compare.py make-input DATA OUT.json B L        the first B windows of L bytes of DATA as {"ids": [...], "loss_mask": null}
    compare.py loss NAME_A A NAME_B B TOL          |A - B| / |B| <= TOL (relative), else exit 1
    compare.py logits A.bin B.bin TOL              max |A - B| <= TOL over two float32 files of equal length, else exit 1

Each comparison prints one line with the figures and "ok" or "FAILED".
"""

import json
import struct
import sys


def main(argv):
    cmd = argv[0]
    if cmd == "make-input":
        data, out, b, l = argv[1], argv[2], int(argv[3]), int(argv[4])
        raw = open(data, "rb").read()
        if len(raw) < b * l:
            raise SystemExit(f"{data}: {len(raw)} bytes, need {b * l}")
        with open(out, "w") as f:
            json.dump({"ids": [list(raw[i * l:(i + 1) * l]) for i in range(b)], "loss_mask": None}, f)
        return 0
    if cmd == "loss":
        name_a, a, name_b, b, tol = argv[1], float(argv[2]), argv[3], float(argv[4]), float(argv[5])
        rel = abs(a - b) / abs(b)
        ok = rel <= tol
        print(f"loss: {name_a} {a!r} vs {name_b} {b!r}: relative difference {rel:.3e} (tolerance {tol:g}) {'ok' if ok else 'FAILED'}")
        return 0 if ok else 1
    if cmd == "logits":
        a, b, tol = open(argv[1], "rb").read(), open(argv[2], "rb").read(), float(argv[3])
        if len(a) != len(b) or len(a) % 4:
            print(f"logits: sizes differ ({len(a)} vs {len(b)} bytes) FAILED")
            return 1
        n = len(a) // 4
        xs, ys = struct.unpack(f"<{n}f", a), struct.unpack(f"<{n}f", b)
        worst = max(abs(x - y) for x, y in zip(xs, ys))
        ok = worst <= tol
        print(f"logits: {n} values, max |difference| {worst:.3e} (tolerance {tol:g}) {'ok' if ok else 'FAILED'}")
        return 0 if ok else 1
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
