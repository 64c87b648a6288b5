"""claimbench: check LLM inference claims on the hardware you have."""

__version__ = "0.1.0"

import logging as _logging

# torchao (which transformers imports when it is installed) logs a line per CUDA-only extension it cannot
# load, and torch a deprecation per torchao enum: noise on every CPU run, nothing a user can act on.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
