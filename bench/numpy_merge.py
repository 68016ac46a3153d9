#!/usr/bin/env python3
"""The baseline of bench/merge_checkpoint_bench.ts: a hand-rolled numpy merge of a PEFT LoRA
adapter into a safetensors checkpoint, as one would write it with numpy alone.

The checkpoint is memory-mapped; the header and every tensor are written once, in file order, to
a temporary file beside the output: the adapted weights as W + s·(B @ A) (computed as
(s·B) @ A, then += W: one temporary of the weight's size), every other tensor straight from the
map; then fsync and a rename. F32 weights stored [out, in] and one rank and alpha for every layer
(no rank_pattern / alpha_pattern, no DoRA), which is what the benchmark's adapter uses.

    /usr/bin/python3 bench/numpy_merge.py MODEL.safetensors ADAPTER_DIR OUT.safetensors [PIECE]

PIECE (bytes, default 0: each tensor in one write) splits every write into pieces of at most that
size: on the development machine's kernel, page-cache writes of tens of MiB in one call are many
times slower than 1 MiB ones (see `writeAt` in workflows/_checkpoint_files.ts), so the benchmark
also runs this script with 1 MiB pieces.

Prints one JSON line: {"seconds": merge time in the process, "peak_rss": bytes, "merged": n}.
Runs offline with Debian's numpy; the tests never run it.
"""

import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return 8 + n, json.loads(f.read(n))


def tensors(path):
    """Name -> (dtype, shape, begin, end) with absolute offsets, in file order; the memory map."""
    start, h = header(path)
    h.pop("__metadata__", None)
    items = sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0])
    table = {k: (e["dtype"], e["shape"], start + e["data_offsets"][0], start + e["data_offsets"][1]) for k, e in items}
    return start, table, np.memmap(path, dtype=np.uint8, mode="r")


def write(f, buffer, piece):
    view = memoryview(buffer).cast("B")
    step = piece or len(view) or 1
    for at in range(0, len(view), step):
        f.write(view[at:at + step])


def main(model, adapter_dir, out, piece="0"):
    piece = int(piece)
    t0 = time.perf_counter()
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        config = json.load(f)
    _, adapter, amap = tensors(os.path.join(adapter_dir, "adapter_model.safetensors"))

    def load(key):
        dtype, shape, b, e = adapter[key]
        assert dtype == "F32", f"{key} is {dtype}"
        return np.frombuffer(amap[b:e], dtype=np.float32).reshape(shape)

    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    factors = {}
    for key in adapter:
        if key.endswith(".lora_A.weight"):
            module = key[len("base_model.model."):-len(".lora_A.weight")]
            factors[f"{module}.weight"] = (load(key), load(key.replace(".lora_A.", ".lora_B.")))

    start, table, mm = tensors(model)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        write(f, mm[:start], piece)  # the header as it is
        for key, (dtype, shape, b, e) in table.items():
            if key in factors:
                assert dtype == "F32", f"{key} is {dtype}"
                A, B = factors[key]
                merged = (scale * B) @ A
                merged += np.frombuffer(mm[b:e], dtype=np.float32).reshape(shape)
                write(f, merged.data, piece)
            else:
                write(f, mm[b:e], piece)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss": peak, "merged": len(factors)}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
