#!/usr/bin/env python3
"""PyTorch's side of the BERT-mini LoRA benchmark (`bench/whole_bench.ts bert`): the same model
ffwd trains, exported to ONNX, and PyTorch's own training step on it, timed.

The model is written out in torch like fixtures/whole's bert (module paths as in Hugging Face's
BertModel), at BERT-mini's size: word (vocabulary 30522) and position (512) embeddings, LayerNorm
(eps 1e-12); 4 layers of masked self-attention (hidden 256, 4 heads of 64, the additive mask
`(1 - attention_mask) * -10000`), `attention.output.dense` and a post-LN residual, then
`intermediate.dense` 256->1024, exact GELU (Erf in ONNX), `output.dense` 1024->256 and a post-LN
residual; `classifier` 256->2 on the first token. Inputs `input_ids`, `attention_mask`, int64
[N, 128]. Weights from torch.manual_seed(0).

    /usr/bin/python3 bench/torch_bert_mini.py export DIR   # DIR/model.onnx and DIR/data.safetensors
    /usr/bin/python3 bench/torch_bert_mini.py time [--steps 20] [--warmup 3] [--threads 2] [--profile]

`export` writes the base model (torch.onnx.export, opset 17, the batch dimension dynamic) and
`ROWS` rows of data for ffwd (`input_ids`, `attention_mask` I64 [rows, 128], rows padded at the end
with id 0, `y` I64 [rows]). `time` builds the same model and data, adds LoRA r=8 (alpha 16) on
every layer's `intermediate.dense` and `output.dense` as PEFT does (`base(x) + scale *
lora_B(lora_A(x))`, A with PEFT's kaiming-uniform init, B zero), freezes everything but A and B,
and times full steps (forward, cross-entropy, backward, AdamW) at batch 32 over the rows in turn,
with torch.set_num_threads(threads). It prints one JSON object: ms per step (mean, median, best).

Run offline with Debian's PyTorch 1.13 (apt-get install python3-torch). Nothing in the tests runs
this script; its outputs go to a temporary folder, not into the repository.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # run as a file: leave no __pycache__ behind
from _torch_lora import add_lora, blas_library, write_safetensors  # noqa: E402

VOCAB, POSITIONS, HIDDEN, HEADS, INTER, LAYERS, CLASSES = 30522, 512, 256, 4, 1024, 4, 2
SEQ, BATCH, ROWS = 128, 32, 128
RANK, ALPHA, LR = 8, 16, 1e-4
LN_EPS = 1e-12
OPSET = 17


class BertEmbeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, HIDDEN)
        self.position_embeddings = nn.Embedding(POSITIONS, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.register_buffer("position_ids", torch.arange(POSITIONS).expand((1, -1)))

    def forward(self, input_ids):
        positions = self.position_ids[:, :input_ids.size(1)]
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions))


class BertSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.head_size = HIDDEN // HEADS
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)

    def heads(self, x):  # [N, S, H] -> [N, heads, S, head_size]
        return x.view(x.size()[:-1] + (HEADS, self.head_size)).permute(0, 2, 1, 3)

    def forward(self, h, mask):
        q, k, v = self.heads(self.query(h)), self.heads(self.key(h)), self.heads(self.value(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size) + mask
        ctx = torch.matmul(F.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.size()[:-2] + (HIDDEN,))


class BertSelfOutput(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.dense = nn.Linear(inner, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LN_EPS)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.self = BertSelfAttention()
        self.output = BertSelfOutput(HIDDEN)

    def forward(self, h, mask):
        return self.output(self.self(h, mask), h)


class BertIntermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(HIDDEN, INTER)

    def forward(self, h):
        return F.gelu(self.dense(h))


class BertLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = BertAttention()
        self.intermediate = BertIntermediate()
        self.output = BertSelfOutput(INTER)  # BertOutput

    def forward(self, h, mask):
        a = self.attention(h, mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer() for _ in range(LAYERS)])

    def forward(self, h, mask):
        for layer in self.layer:
            h = layer(h, mask)
        return h


class Bert(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = BertEmbeddings()
        self.encoder = BertEncoder()
        self.classifier = nn.Linear(HIDDEN, CLASSES)

    def forward(self, input_ids, attention_mask):  # [N, 128] each
        h = self.embeddings(input_ids)
        mask = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * -10000.0  # [N, 1, 1, S]
        return self.classifier(self.encoder(h, mask)[:, 0])


TARGETS = [f"encoder.layer.{i}.{m}" for i in range(LAYERS)
           for m in ("intermediate.dense", "output.dense")]


def model():
    torch.manual_seed(0)
    return Bert().eval()


def data():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(SEQ // 2, SEQ + 1, (ROWS,), generator=gen)
    mask = (torch.arange(SEQ)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, VOCAB, (ROWS, SEQ), generator=gen) * mask
    labels = torch.randint(0, CLASSES, (ROWS,), generator=gen)
    return ids, mask, labels


def export(folder):
    os.makedirs(folder, exist_ok=True)
    m = model()
    ids, mask, labels = data()
    torch.onnx.export(
        m, (ids[:2], mask[:2]), os.path.join(folder, "model.onnx"), opset_version=OPSET,
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"},
                      "logits": {0: "batch"}})
    write_safetensors(os.path.join(folder, "data.safetensors"),
                      {"input_ids": ids, "attention_mask": mask, "y": labels},
                      {"classes": str(CLASSES)})
    print(json.dumps({"model": os.path.join(folder, "model.onnx"),
                      "data": os.path.join(folder, "data.safetensors"), "targets": TARGETS}))


def time_steps(steps, warmup, threads, profile=False):
    torch.set_num_threads(threads)
    m = model()
    params = add_lora(m, TARGETS, RANK, ALPHA)
    ids, mask, labels = data()
    opt = torch.optim.AdamW(params, lr=LR)
    batches = [(ids[s:s + BATCH], mask[s:s + BATCH], labels[s:s + BATCH])
               for s in range(0, ROWS, BATCH)]
    times = []

    def step(i):
        b_ids, b_mask, b_labels = batches[i % len(batches)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(b_ids, b_mask), b_labels)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)

    for i in range(warmup):
        step(i)
    if profile:  # the operators' self time over the timed steps, on stderr
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for i in range(warmup, warmup + steps):
                step(i)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25),
              file=sys.stderr)
    else:
        for i in range(warmup, warmup + steps):
            step(i)
    print(json.dumps({
        "ms_per_step": round(statistics.mean(times), 2),
        "median_ms": round(statistics.median(times), 2),
        "best_ms": round(min(times), 2),
        "steps": steps, "batch": BATCH, "seq": SEQ, "rank": RANK, "threads": threads,
        "trainable_params": sum(p.numel() for p in params), "torch": torch.__version__,
        "blas": blas_library(),
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("export").add_argument("folder")
    t = sub.add_parser("time")
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--profile", action="store_true", help="print torch.profiler's table to stderr")
    args = parser.parse_args()
    if args.command == "export":
        export(args.folder)
    else:
        time_steps(args.steps, args.warmup, args.threads, args.profile)
