"""`torchrun` for the reference harness: run.sh runs scripts, not modules, so this calls torch.distributed.run's main
with the same arguments (`run.sh scripts/interop/torchrun.py --nproc_per_node 2 WORKER.py ...`). The workers are
started with this interpreter and inherit run.sh's environment (PYTHONPATH, BLAS, threads).

torch 1.13's launcher parses its --redirects/--tee values with an enum lookup that Python 3.11 broke (iterating an
IntFlag no longer yields its zero and multi-bit members, so the default "0" maps to None and the launch fails in
`to_map`); where that is the case, the lookup is replaced by the enum's own constructor."""

import re

from torch.distributed.elastic.multiprocessing import api as _mp_api
from torch.distributed.run import main

if _mp_api.Std.from_str("0") is None:
    _original = _mp_api.Std.from_str.__func__

    def _from_str(cls, vm):
        if re.fullmatch(r"[0-3]", vm):
            return cls(int(vm))
        if re.fullmatch(r"(\d+:[0-3],)*\d+:[0-3]", vm):
            return {int(i): cls(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
        return _original(cls, vm)

    _mp_api.Std.from_str = classmethod(_from_str)

if __name__ == "__main__":
    main()
