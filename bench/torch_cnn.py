#!/usr/bin/env python3
"""PyTorch's side of the CNN LoRA benchmark (`bench/whole_bench.ts cnn`): the same model and data
`ffwd train` trains on, exported for it, and PyTorch's own training loop, timed.

The model: conv1 Conv2d(1, 32, 3, padding 1) -> ReLU -> MaxPool2d(2) -> conv2 Conv2d(32, 64, 3,
padding 1) -> ReLU -> MaxPool2d(2) -> conv3 Conv2d(64, 64, 3, padding 1) -> ReLU -> Flatten ->
fc1 Linear(3136, 256) -> ReLU -> fc2 Linear(256, 10). Input `x` float32 [N, 1, 28, 28]. Weights
from torch.manual_seed(0); 4,096 images of uniform noise in [0, 1) with random labels (the timing
does not depend on the values).

    /usr/bin/python3 bench/torch_cnn.py export DIR   # DIR/model.onnx and DIR/data.safetensors
    /usr/bin/python3 bench/torch_cnn.py time [--epochs 5] [--batch 64] [--threads 2]

`export` writes the base model (torch.onnx.export, opset 17, the batch dimension dynamic) and the
data (`x` F32 [4096, 1, 28, 28], `y` I64 [4096]). `time` builds the same model and data, adds LoRA
r=8 (alpha 16) on fc1 and fc2 as PEFT does (`base(x) + scale * lora_B(lora_A(x))`), freezes
everything but A and B, and trains `epochs` passes in a new random order each (AdamW, lr 1e-3,
cross-entropy) with torch.set_num_threads(threads). It prints one JSON object; `loop_s` is the
training loop alone (no import, no model or data set-up).

Run offline with Debian's PyTorch 1.13 (apt-get install python3-torch). Nothing in the tests runs
this script; its outputs go to a temporary folder, not into the repository.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # run as a file: leave no __pycache__ behind
from _torch_lora import add_lora, blas_library, write_safetensors  # noqa: E402

ROWS, CLASSES = 4096, 10
RANK, ALPHA, LR = 8, 16, 1e-3
OPSET = 17


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, CLASSES)

    def forward(self, x):  # x: [N, 1, 28, 28]
        h = self.pool(F.relu(self.conv1(x)))  # [N, 32, 14, 14]
        h = self.pool(F.relu(self.conv2(h)))  # [N, 64, 7, 7]
        h = torch.flatten(F.relu(self.conv3(h)), 1)  # [N, 3136]
        return self.fc2(F.relu(self.fc1(h)))


def model():
    torch.manual_seed(0)
    return Cnn().eval()


def data():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(ROWS, 1, 28, 28, generator=gen), torch.randint(0, CLASSES, (ROWS,),
                                                                      generator=gen)


def export(folder):
    os.makedirs(folder, exist_ok=True)
    x, y = data()
    torch.onnx.export(
        model(), (x[:2],), os.path.join(folder, "model.onnx"), opset_version=OPSET,
        input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    write_safetensors(os.path.join(folder, "data.safetensors"), {"x": x, "y": y},
                      {"classes": str(CLASSES)})
    print(json.dumps({"model": os.path.join(folder, "model.onnx"),
                      "data": os.path.join(folder, "data.safetensors"),
                      "targets": ["fc1", "fc2"]}))


def train(epochs, batch, threads):
    torch.set_num_threads(threads)
    m = model()
    params = add_lora(m, ["fc1", "fc2"], RANK, ALPHA)
    opt = torch.optim.AdamW(params, lr=LR)
    x, y = data()
    gen = torch.Generator().manual_seed(2)
    steps = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(ROWS, generator=gen)
        for s in range(0, ROWS, batch):
            idx = order[s:s + batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(m(x[idx]), y[idx])
            loss.backward()
            opt.step()
            steps += 1
    loop = time.perf_counter() - t0
    print(json.dumps({
        "loop_s": round(loop, 3), "steps": steps, "ms_per_step": round(1000 * loop / steps, 2),
        "last_loss": round(loss.item(), 4), "epochs": epochs, "batch": batch, "rank": RANK,
        "threads": threads, "torch": torch.__version__, "blas": blas_library(),
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("export").add_argument("folder")
    t = sub.add_parser("time")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.command == "export":
        export(args.folder)
    else:
        train(args.epochs, args.batch, args.threads)
