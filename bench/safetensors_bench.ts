/**
 * Safetensors reader and writer speed.
 *
 * Targets: header-only inspect under 50 ms whatever the file size (compare the 1 GiB and the
 * small file); reading every tensor at 1 GB/s or more from the page cache; writing at 500 MB/s or
 * more. The 1 GiB file (320 tensors) is generated once into `.bench/` and reused.
 *
 * ```sh
 * deno bench --allow-read --allow-write --allow-env --allow-ffi --allow-sys bench/safetensors_bench.ts
 * ```
 *
 * Throughput = bytes / time per iteration: 1 GiB is 1073.7 MB, so 1 GB/s is 1.07 s per iteration.
 *
 * @module
 */

import { type Tensor, tensor } from "../src/tensor.ts";
import {
  inspectSafetensors,
  type LazyTensor,
  openSafetensors,
  readSafetensors,
  writeSafetensors,
} from "../src/io/safetensors.ts";

const DIR = new URL("../.bench/", import.meta.url);
const BIG = new URL("safetensors_1gib.safetensors", DIR);
const SMALL = new URL("safetensors_small.safetensors", DIR);
const OUT = new URL("safetensors_write.safetensors", DIR);

const LAYERS = 256; // 256 weights of [1024, 1024] F32 (4 MiB each) = 1 GiB, plus 64 biases
const BIG_BYTES = LAYERS * 4 * 2 ** 20 + 64 * 4096;

function weights(): Map<string, LazyTensor> {
  const out = new Map<string, LazyTensor>();
  for (let i = 0; i < LAYERS; i++) {
    out.set(`layers.${i}.weight`, {
      dtype: "F32",
      shape: [1024, 1024],
      load: () => tensor("F32", [1024, 1024], new Float32Array(1024 * 1024).fill(i / 7)),
    });
    if (i % 4 === 0) {
      out.set(`layers.${i}.bias`, {
        dtype: "F32",
        shape: [1024],
        load: () => tensor("F32", [1024], new Float32Array(1024).fill(-i)),
      });
    }
  }
  return out;
}

async function sizeOf(url: URL): Promise<number> {
  try {
    return (await Deno.stat(url)).size;
  } catch {
    return -1;
  }
}

await Deno.mkdir(DIR, { recursive: true });
const HEADER_ROOM = 100 * 320; // the JSON header takes under 100 bytes a tensor
const size = await sizeOf(BIG);
if (size < BIG_BYTES || size > BIG_BYTES + HEADER_ROOM) {
  console.error("generating .bench/safetensors_1gib.safetensors (once)...");
  await writeSafetensors(BIG, weights(), { metadata: { format: "pt" }, sync: false });
}
await writeSafetensors(SMALL, {
  "fc1.weight": tensor("F32", [64, 32]),
  "fc1.bias": tensor("F32", [64]),
  "fc2.weight": tensor("F16", [10, 64]),
}, { sync: false });

// The 1 GiB input stays for the next run; the 1 GiB output does not.
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(OUT);
  } catch { /* not written */ }
});

// The tensors to write, held in memory like a freshly merged model.
const inMemory = new Map<string, Tensor>();
for (const [name, lazy] of weights()) inMemory.set(name, await lazy.load());

Deno.bench({
  name: "inspect header: 1 GiB file, 320 tensors",
  group: "inspect",
  async fn() {
    await inspectSafetensors(BIG);
  },
});

Deno.bench({
  name: "inspect header: 10 KiB file, 3 tensors",
  group: "inspect",
  baseline: true,
  async fn() {
    await inspectSafetensors(SMALL);
  },
});

Deno.bench({
  name: "read all tensors: 1 GiB (page cache)",
  group: "read",
  n: 10,
  warmup: 2,
  async fn() {
    await readSafetensors(BIG);
  },
});

// What the reader cannot beat: the same bytes read into fresh buffers that are kept, as tensors
// are (fresh memory must be faulted in, which is most of the cost), and into one reused buffer.
Deno.bench({
  name: "baseline: plain reads into fresh 4 MiB buffers, kept",
  group: "read",
  baseline: true,
  n: 10,
  warmup: 2,
  async fn() {
    using file = await Deno.open(BIG);
    const kept: Uint8Array[] = [];
    for (let b = new Uint8Array(4 * 2 ** 20); (await file.read(b)) !== null;) {
      kept.push(b);
      b = new Uint8Array(4 * 2 ** 20);
    }
  },
});

const reused = new Uint8Array(4 * 2 ** 20);
Deno.bench({
  name: "baseline: plain reads of the file into one reused 4 MiB buffer",
  group: "read",
  n: 10,
  warmup: 2,
  async fn() {
    using file = await Deno.open(BIG);
    while ((await file.read(reused)) !== null) { /* next chunk */ }
  },
});

Deno.bench({
  name: "write 1 GiB, atomic with fsync",
  group: "write",
  n: 5,
  warmup: 1,
  async fn() {
    await writeSafetensors(OUT, inMemory);
  },
});

Deno.bench({
  name: "baseline: plain writes of the same buffers, no rename, no fsync",
  group: "write",
  baseline: true,
  n: 5,
  warmup: 1,
  async fn() {
    using file = await Deno.open(OUT, { write: true, create: true, truncate: true });
    for (const t of inMemory.values()) {
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
    }
  },
});

Deno.bench({
  name: "write 1 GiB, atomic without fsync",
  group: "write",
  n: 5,
  warmup: 1,
  async fn() {
    await writeSafetensors(OUT, inMemory, { sync: false });
  },
});

Deno.bench({
  name: "stream-copy 1 GiB: each tensor read lazily into the writer",
  n: 5,
  warmup: 1,
  async fn() {
    using file = await openSafetensors(BIG);
    const names = file.header.tensors.map((e) => e.name);
    await writeSafetensors(OUT, names.map((name) => ({ name, tensor: file.lazyTensor(name) })), {
      sync: false,
    });
  },
});
