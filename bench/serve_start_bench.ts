/**
 * Start-up of a big base for serving: a ~1 GiB F32 LLaMA MLP block (`bench/import_bench.ts
 * generate` writes it) compiled by `Session.compile` with the serving graph
 * (`src/lora/multi.ts`), as `ffwd serve` does, four ways:
 *
 * - `prepack`: onnxruntime pre-packs every GEMM weight at session creation (`ffwd serve`'s default);
 * - `no-prepack`: `--no-prepack`, weights packed on every run instead;
 * - `miss`: `--prepack-cache` on an empty folder: pre-packs and saves the optimized model with its
 *   pre-packed weights (the first start);
 * - `hit`: `--prepack-cache` on the folder `miss` filled: opens the saved model, whose pre-packed
 *   weights are mapped from the entry.
 *
 * Each start runs in its own process (a fresh heap and onnxruntime), the ways taking turns round
 * after round (the order rotated, `miss` right before `hit`) so that a busy machine slows them
 * alike; `miss` empties the cache first. A start reports the session's creation time, the first
 * request (one row, padded to two as the engine does) and, after two 64-row batches have touched
 * every weight, its resident memory: private (`RssAnon`) and mapped from files (`RssFile`, pages
 * the page cache shares between processes). The summary gives the median over rounds and the
 * range. The steady state is measured last, in one process holding a session of each way: they
 * run 64-row batches in turn (who goes first rotates), and each way's median and best of 40 are
 * reported (`--rounds 0` measures only that).
 *
 * ```sh
 * P="--allow-read --allow-write --allow-env --allow-ffi --allow-sys"
 * deno run $P bench/import_bench.ts generate
 * deno run $P --allow-run bench/serve_start_bench.ts [--rounds 3] [prepack|no-prepack|cache]...
 * ```
 *
 * `cache` means `miss` then `hit`; the default is every way. Memory is read from
 * `/proc/<pid>/status` through `cat` (Deno allows reading it only with `--allow-all`).
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import { Graph } from "../src/engine/graph.ts";
import { defaultThreads, Session, type SessionOptions } from "../src/engine/runtime.ts";
import { BACK, multiLoraHook, ROWS, type StackInputs, stackNames } from "../src/lora/multi.ts";
import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import type { LinearLayer } from "../src/models/model.ts";

const FILE = new URL("../.bench/import/llama_4096x21845.safetensors", import.meta.url).pathname;
const WAYS = ["prepack", "no-prepack", "miss", "hit"] as const;
type Way = typeof WAYS[number];
const PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-ffi",
  "--allow-sys",
  "--allow-run=cat",
];

/** What one start measured, in its own process. */
interface Start {
  createdMs: number;
  firstMs: number;
  anonMiB: number;
  fileMiB: number;
}

/** Feeds of `rows` rows without an adapter (the engine pads one row to two). */
function feeds(layers: readonly LinearLayer[], width: number, rows: number) {
  const f: Record<string, ort.Tensor> = {
    x: new ort.Tensor("float32", new Float32Array(rows * width).fill(0.01), [rows, width]),
    [ROWS]: new ort.Tensor("int32", Int32Array.from({ length: rows }, (_, i) => i), [1, rows]),
    [BACK]: new ort.Tensor("int32", Int32Array.from({ length: rows }, (_, i) => i), [rows]),
  };
  for (const l of layers) {
    const n = stackNames(l.name);
    f[n.A] = new ort.Tensor("float32", new Float32Array(l.inFeatures), [1, 1, l.inFeatures]);
    f[n.B] = new ort.Tensor("float32", new Float32Array(l.outFeatures), [1, l.outFeatures, 1]);
  }
  return f;
}

/** This process's resident memory in MiB: private, and mapped from files. */
async function memory(): Promise<{ anonMiB: number; fileMiB: number }> {
  const out = await new Deno.Command("cat", { args: [`/proc/${Deno.pid}/status`] }).output()
    .then((o) => new TextDecoder().decode(o.stdout), () => "");
  const kib = (k: string) => Number(out.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN);
  return { anonMiB: kib("RssAnon") / 1024, fileMiB: kib("RssFile") / 1024 };
}

/**
 * The serving graph of the base, as `InferenceEngine.create` builds it before any DoRA adapter
 * is registered (no DoRA term).
 */
async function servingGraph() {
  const model = await openSafetensorsModel(FILE);
  const g = new Graph();
  const stacks = new Map<string, StackInputs>();
  const built = model.build(g, { hook: multiLoraHook(model.layers, stacks, { dora: false }) });
  g.output(built.outputs[0]!);
  const width = model.layers[0]!.inFeatures;
  return {
    g,
    model,
    one: feeds(model.layers, width, 2),
    batch: feeds(model.layers, width, 64),
  };
}

/** Compiles the way `way` says, checking the cache did what the way expects. */
async function compile(g: Graph, way: Way, cache: string): Promise<Session> {
  const opts: SessionOptions = { threads: defaultThreads() };
  if (way === "no-prepack") opts.prepack = false;
  if (way === "miss" || way === "hit") opts.prepackCache = cache;
  if (way === "miss") await Deno.remove(cache, { recursive: true }).catch(() => {});
  const session = await Session.compile(g, opts);
  const want = way === "miss" ? "filled" : way === "hit" ? "hit" : undefined;
  if (session.cache?.outcome !== want) {
    throw new Error(`Expected a ${way} start, the cache says ${JSON.stringify(session.cache)}`);
  }
  return session;
}

/** One start in this process: creation, first request, then memory once serving. */
async function measure(way: Way, cache: string): Promise<Start> {
  const { g, model, one, batch } = await servingGraph();
  try {
    const t0 = performance.now();
    const session = await compile(g, way, cache);
    const createdMs = performance.now() - t0;
    const t1 = performance.now();
    await session.inner.run(one);
    const firstMs = performance.now() - t1;
    for (let i = 0; i < 2; i++) await session.inner.run(batch); // every weight page touched
    const mem = await memory();
    await session.release();
    return { createdMs, firstMs, ...mem };
  } finally {
    model.close();
  }
}

/**
 * Steady state in this process: a session of each way, taking turns batch after batch; the
 * median 64-row batch of each.
 */
async function steady(ways: readonly Way[], cache: string): Promise<Map<Way, number[]>> {
  const { g, model, batch } = await servingGraph();
  const sessions: [Way, Session][] = [];
  try {
    for (const way of ways) sessions.push([way, await compile(g, way, cache)]);
    const times = new Map<Way, number[]>(ways.map((w) => [w, []]));
    for (let round = 0; round < 42; round++) {
      const k = round % sessions.length; // who goes first rotates
      for (const [way, session] of [...sessions.slice(k), ...sessions.slice(0, k)]) {
        const t = performance.now();
        await session.inner.run(batch);
        if (round >= 2) times.get(way)!.push(performance.now() - t);
      }
    }
    return times;
  } finally {
    for (const [, s] of sessions) await s.release();
    model.close();
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Runs one start in a child process and returns what it measured. */
async function child(way: Way, cache: string): Promise<Start> {
  const args = ["run", ...PERMISSIONS, import.meta.filename!, "--one", way, "--cache", cache];
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`The ${way} start failed (exit ${out.code}): ${text}`);
  return JSON.parse(text.trim().split("\n").at(-1)!);
}

/** `median (lowest–highest)`. */
function spread(xs: readonly number[], digits = 0): string {
  const s = [...xs].sort((a, b) => a - b);
  return `${median(s).toFixed(digits)} (${s[0]!.toFixed(digits)}–${s.at(-1)!.toFixed(digits)})`;
}

/** The ways in the order of round `r`: rotated, `miss` always right before `hit`. */
function order(ways: readonly Way[], r: number): Way[] {
  const groups: Way[][] = [];
  for (const w of ways) {
    if (w === "hit" && groups.at(-1)?.[0] === "miss") groups.at(-1)!.push(w);
    else groups.push([w]);
  }
  const k = r % groups.length;
  return [...groups.slice(k), ...groups.slice(0, k)].flat();
}

if (import.meta.main) {
  const args = [...Deno.args];
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args.splice(i, 2)[1];
  };
  const one = flag("--one") as Way | undefined;
  const cacheArg = flag("--cache");
  if (one) {
    console.log(JSON.stringify(await measure(one, cacheArg!)));
    Deno.exit(0);
  }
  await Deno.stat(FILE).catch(() => {
    throw new Error(`${FILE} is missing: run bench/import_bench.ts generate first`);
  });
  const rounds = Number(flag("--rounds") ?? 3);
  const asked = new Set(args.length ? args : ["prepack", "no-prepack", "cache"]);
  const ways = WAYS.filter((w) => asked.has(w) || (asked.has("cache") && /miss|hit/.test(w)));
  if (ways.includes("hit") && !ways.includes("miss")) ways.splice(ways.indexOf("hit"), 0, "miss");
  const dir = await Deno.makeTempDir({ dir: new URL("../.bench", import.meta.url).pathname });
  const cache = `${dir}/cache`;
  const starts = new Map<Way, Start[]>(ways.map((w) => [w, []]));
  try {
    for (let r = 0; r < rounds; r++) {
      for (const way of order(ways, r)) {
        const s = await child(way, cache);
        starts.get(way)!.push(s);
        console.error(
          `round ${r + 1}/${rounds} ${way.padEnd(10)} created ${s.createdMs.toFixed(0)} ms, ` +
            `first ${s.firstMs.toFixed(0)} ms, private ${s.anonMiB.toFixed(0)} MiB, ` +
            `mapped ${s.fileMiB.toFixed(0)} MiB`,
        );
      }
    }
    const batches = await steady(ways, cache);
    let entry = 0;
    if (ways.includes("miss")) {
      for await (const e of Deno.readDir(cache)) {
        for await (const f of Deno.readDir(`${cache}/${e.name}`)) {
          entry += (await Deno.stat(`${cache}/${e.name}/${f.name}`)).size;
        }
      }
    }
    if (rounds > 0) {
      console.log(`${rounds} rounds, threads ${defaultThreads()}: median (range) over rounds`);
      console.log("| start | session (ms) | first request (ms) | private (MiB) | mapped (MiB) |");
      console.log("| --- | --- | --- | --- | --- |");
      for (const [way, s] of starts) {
        const col = (f: (x: Start) => number) => spread(s.map(f));
        console.log(
          `| ${way} | ${col((x) => x.createdMs)} | ${col((x) => x.firstMs)} | ${
            col((x) => x.anonMiB)
          } | ${col((x) => x.fileMiB)} |`,
        );
      }
    }
    console.log("64-row batches, the ways taking turns in one process: median (best) of 40");
    console.log("| session | 64 rows (ms) |");
    console.log("| --- | --- |");
    for (const [way, t] of batches) {
      console.log(`| ${way} | ${median(t).toFixed(0)} (${Math.min(...t).toFixed(0)}) |`);
    }
    if (entry) console.log(`cache entry: ${(entry / 2 ** 30).toFixed(2)} GiB`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
