/**
 * Merging costs and what merging buys at inference.
 *
 * Under `deno bench` (quick): one forward of a 1024→4096→1024 FFN (batch 64) three ways, the base,
 * the merged model (same graph, merged weights) and the unmerged adapter (r = 16 LoRA branches),
 * so the merged model's speed is compared with the base's and the branches' overhead shows; and
 * a streamed safetensors merge of a 32 MiB model.
 *
 * Opt-in, as a script (it writes a 2 GiB model): peak RSS and time of merging a LoRA (r = 16 on
 * every layer) into 8 layers of 4096×16384 F32, streamed safetensors to safetensors. Peak RSS is
 * the process's `ru_maxrss` (getrusage through FFI, as `import_bench.ts` measures it), so each
 * measurement runs in its own process:
 *
 * ```sh
 * P="--allow-read --allow-write --allow-env --allow-ffi --allow-sys"
 * npx -y deno@2.9.6 run $P bench/merge_bench.ts generate
 * npx -y deno@2.9.6 run $P bench/merge_bench.ts measure            # merge only
 * npx -y deno@2.9.6 run $P bench/merge_bench.ts measure --parity   # merge + parity check
 * ```
 *
 * `FFWD_BENCH_2GIB=1 deno task bench` also runs the 2 GiB merge once as a bench case.
 *
 * @module
 */

import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import { Graph } from "../src/engine/graph.ts";
import { Session } from "../src/engine/runtime.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import type { BaseModel, BuildOptions } from "../src/models/model.ts";
import { Rng } from "../src/rng.ts";
import { type Tensor, tensor } from "../src/tensor.ts";
import { exportAdapter } from "../workflows/export.ts";
import { type AdapterInputs, loraHook } from "../src/lora/branch.ts";
import { mergeAdapter, planMerge } from "../workflows/merge.ts";
import { adapterFeeds } from "../workflows/parity.ts";
import { randomAdapter } from "../tests/_random_adapter.ts";

const ROOT = new URL("../.bench/merge/", import.meta.url).pathname;
const MiB = 2 ** 20;

/** Writes `fc1 … fcN` alternating [wide, narrow] / [narrow, wide], one tensor in memory at a time. */
async function generate(
  dir: string,
  layers: number,
  narrow: number,
  wide: number,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ hidden_act: "relu" }));
  const rng = new Rng(1);
  const tile = rng.fillUniform(new Float32Array(1 << 20), -0.02, 0.02) as Float32Array;
  const lazy = (shape: [number, number]) => ({
    dtype: "F32" as const,
    shape,
    load: (): Tensor => {
      const t = tensor("F32", shape);
      for (let i = 0; i < t.data.length; i += tile.length) {
        t.data.set(tile.subarray(0, Math.min(tile.length, t.data.length - i)), i);
      }
      return t;
    },
  });
  const tensors: Record<string, ReturnType<typeof lazy>> = {};
  for (let i = 1; i <= layers; i++) {
    tensors[`fc${i}.weight`] = lazy(i % 2 ? [wide, narrow] : [narrow, wide]);
  }
  const path = `${dir}/model.safetensors`;
  await writeSafetensors(path, tensors, { sync: false });
  return path;
}

/** Peak resident set size of this process so far, in bytes (getrusage ru_maxrss). */
function peakRss(): number {
  const libc = Deno.dlopen("libc.so.6", {
    getrusage: { parameters: ["i32", "buffer"], result: "i32" },
  });
  try {
    const usage = new BigInt64Array(18); // struct rusage on 64-bit Linux: 144 bytes
    if (libc.symbols.getrusage(0, usage) !== 0) throw new Error("getrusage failed");
    return Number(usage[4]!) * 1024; // ru_maxrss, after ru_utime and ru_stime; in KiB
  } finally {
    libc.close();
  }
}

/** Merges a seeded r = 16 LoRA into the model at `path`, streamed to `<dir>/merged.safetensors`. */
async function mergeOnce(path: string, parity: boolean): Promise<number> {
  const model = await openSafetensorsModel(path);
  try {
    const adapter = randomAdapter(model, { r: 16, seed: 2 });
    const t0 = performance.now();
    const out = path.replace(/model\.safetensors$/, "merged.safetensors");
    await exportAdapter(model, adapter, { out, parity, rows: 4 });
    return performance.now() - t0;
  } finally {
    model.close();
  }
}

async function measure(args: string[]): Promise<void> {
  const path = `${ROOT}big/model.safetensors`;
  const size = (await Deno.stat(path).catch(() => {
    throw new Error(`No ${path}: run "merge_bench.ts generate" first`);
  })).size;
  const parity = args.includes("--parity");
  const before = peakRss();
  const ms = await mergeOnce(path, parity);
  const peak = peakRss();
  console.log(
    `merged ${(size / MiB).toFixed(0)} MiB (8 × 4096×16384 F32, LoRA r=16 on each), parity ${
      parity ? "on" : "off"
    }: ${(ms / 1000).toFixed(1)} s, peak RSS ${(peak / MiB).toFixed(0)} MiB (${
      (before / MiB).toFixed(0)
    } MiB before the merge; largest tensor 256 MiB)`,
  );
}

/** A compiled forward of `model` with build options, and a runner fed with `x`. */
async function forward(model: BaseModel, build: BuildOptions, feeds: Record<string, Tensor>) {
  const g = new Graph();
  const built = model.build(g, build);
  g.output(built.outputs[0]!);
  const session = await Session.compile(g);
  const x = tensor("F32", [64, model.inputs[0]!.shape[1] as number]);
  new Rng(3).fillNormal(x.data as Float32Array);
  const all = { ...feeds, [built.inputs[0]!.name]: x };
  await session.run(all); // warm up
  return { run: () => session.run(all), release: () => session.release() };
}

if (import.meta.main) {
  if (Deno.args[0] === "generate") {
    const path = await generate(`${ROOT}big`, 8, 4096, 16384);
    console.log(`wrote ${path} (${((await Deno.stat(path)).size / MiB).toFixed(0)} MiB)`);
  } else if (Deno.args[0] === "measure") await measure(Deno.args.slice(1));
  else throw new TypeError("usage: merge_bench.ts generate | measure [--parity]");
} else {
  const small = await generate(`${ROOT}small`, 2, 1024, 4096);
  const model = await openSafetensorsModel(small);
  const adapter = randomAdapter(model, { r: 16, seed: 2 });
  const merged = await mergeAdapter(model, adapter);
  const plan = planMerge(model, adapter);
  const hook = loraHook(plan.layers, new Map<string, AdapterInputs>());
  const base = await forward(model, {}, {});
  const mergedRun = await forward(model, { overrides: merged.tensors }, {});
  const unmerged = await forward(model, { hook }, adapterFeeds(plan));
  const group = "FFN 1024→4096→1024, batch 64";
  Deno.bench("base", { group, baseline: true }, async () => void await base.run());
  Deno.bench("merged (same cost as the base)", { group }, async () => void await mergedRun.run());
  Deno.bench("unmerged LoRA r=16 (branch overhead)", { group }, async () => {
    await unmerged.run();
  });
  Deno.bench("streamed safetensors merge of 32 MiB, r=16, no parity", async () => {
    await mergeOnce(small, false);
  });
  if (Deno.env.get("FFWD_BENCH_2GIB") === "1") {
    const big = `${ROOT}big/model.safetensors`;
    await Deno.stat(big).catch(() => generate(`${ROOT}big`, 8, 4096, 16384));
    Deno.bench(
      "streamed safetensors merge of 2 GiB, r=16, no parity",
      { n: 1, warmup: 0 },
      async () => {
        await mergeOnce(big, false);
      },
    );
  }
}
