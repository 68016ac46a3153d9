"""What the PyTorch sides of ffwd's whole-model benchmarks share (`torch_bert_mini.py`,
`torch_cnn.py`): PEFT's LoRA layer, freezing a model but its adapters, and the BLAS library
PyTorch runs on.

Debian's python3-torch links the generic `libblas.so.3`, which is the netlib reference BLAS
unless an optimised one is installed (about 1.5 GFLOP/s against OpenBLAS's 50-100 on a 2-core
machine): every result records the library so that a comparison says what it compared against.
"""

import math
import os
import sys

import torch.nn as nn

# Reuse the fixtures' safetensors writer (fixtures/_safetensors.py), leaving no __pycache__ behind.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "fixtures"))
sys.dont_write_bytecode = True
from _safetensors import write_safetensors  # noqa: E402,F401


class LoraLinear(nn.Module):
    """PEFT's LoRA layer (peft.tuners.lora.Linear, dropout 0): the frozen base plus
    `scaling * lora_B(lora_A(x))`, A from kaiming_uniform_(a=sqrt(5)), B zero."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / rank

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling


def add_lora(model, targets, rank, alpha):
    """Freezes `model`, wraps each module named in `targets` in a LoraLinear, and returns the
    adapters' parameters (the only ones that require grad), as PEFT's get_peft_model does."""
    for p in model.parameters():
        p.requires_grad_(False)
    modules = dict(model.named_modules())
    for name in targets:
        parent, _, child = name.rpartition(".")
        setattr(modules[parent] if parent else model, child, LoraLinear(modules[name], rank, alpha))
    return [p for n, p in model.named_parameters() if "lora_" in n]


def blas_library():
    """The BLAS shared library this process loaded (from /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if len(line.split()) >= 6}
    except OSError:
        return None
    found = sorted(p for p in paths if "blas" in os.path.basename(p))
    return ",".join(found) or None
