"""Shims that let the reference's training modules import on the reference harness (Debian's PyTorch 1.13, no PyPI).

Only names the harness lacks are added, never replaced:

* `filelock` (imported by mblm.utils.io for its dataset cache lock; not used when saving or loading checkpoints): a
  module whose FileLock is a no-op context manager.
* `PIL` (Pillow; imported at module level by the reference's image datasets, which these scripts never use): a package
  whose `PIL.Image.Image` is a placeholder class; any real use fails.
* `torch.optim.lr_scheduler.LRScheduler` (public since torch 2.0; imported by mblm.train.mblm for type hints): the
  1.13 base class `_LRScheduler`.

Import this module before any `mblm.utils.io` or `mblm.train` import.
"""

import contextlib
import sys
import types

import torch.optim.lr_scheduler as _lr


def _install():
    try:
        import filelock  # noqa: F401
    except ImportError:
        stub = types.ModuleType("filelock")

        class FileLock(contextlib.nullcontext):
            def __init__(self, *args, **kwargs):
                super().__init__()

        stub.FileLock = FileLock
        sys.modules["filelock"] = stub
    try:
        import PIL  # noqa: F401
    except ImportError:
        pil, image = types.ModuleType("PIL"), types.ModuleType("PIL.Image")

        class Image:  # a type for annotations only
            pass

        image.Image = Image
        pil.Image = image
        sys.modules["PIL"], sys.modules["PIL.Image"] = pil, image
    if not hasattr(_lr, "LRScheduler"):
        _lr.LRScheduler = _lr._LRScheduler


_install()
