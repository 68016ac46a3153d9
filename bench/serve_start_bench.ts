/**
 * Start-up of a big base for serving: a ~1 GiB F32 LLaMA MLP block (`bench/import_bench.ts
 * generate` writes it) compiled with the serving graph (`src/lora/multi.ts`), four ways:
 *
 * - `prepack`: onnxruntime pre-packs every GEMM weight at session creation (`ffwd serve`'s default);
 * - `no prepack`: `--no-prepack`, weights packed on every run instead;
 * - `prepack, save`: pre-pack and save the optimized model with its pre-packed weights as external
 *   data (`session.save_external_prepacked_constant_initializers`): the first start of a cache;
 * - `prepacked cache`: a session from that saved model, which maps the pre-packed weights instead
 *   of packing them again.
 *
 * For each: the session's creation time, the first request (one row, padded to two as the engine
 * does), and the steady state (64-row batches, the sessions taking turns so that a busy machine
 * slows them alike). Every session runs the same model file, written once by `writeModelFolder`;
 * feeds are those of rows without an adapter.
 *
 * ```sh
 * P="--allow-read --allow-write --allow-env --allow-ffi --allow-sys"
 * deno run $P bench/import_bench.ts generate
 * deno run $P bench/serve_start_bench.ts [prepack|no-prepack|cache]...   # default: all
 * ```
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import { Graph } from "../src/engine/graph.ts";
import { defaultThreads, writeModelFolder } from "../src/engine/runtime.ts";
import {
  ADAPTER,
  BACK,
  multiLoraHook,
  ROWS,
  type StackInputs,
  stackNames,
} from "../src/lora/multi.ts";
import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import type { LinearLayer } from "../src/models/model.ts";

const FILE = new URL("../.bench/import/llama_4096x21845.safetensors", import.meta.url).pathname;

/** Feeds of `rows` rows without an adapter (the engine pads one row to two). */
function feeds(layers: readonly LinearLayer[], width: number, rows: number) {
  const f: Record<string, ort.Tensor> = {
    x: new ort.Tensor("float32", new Float32Array(rows * width).fill(0.01), [rows, width]),
    [ROWS]: new ort.Tensor("int32", Int32Array.from({ length: rows }, (_, i) => i), [1, rows]),
    [BACK]: new ort.Tensor("int32", Int32Array.from({ length: rows }, (_, i) => i), [rows]),
    [ADAPTER]: new ort.Tensor("int32", new Int32Array(rows), [rows]),
  };
  for (const l of layers) {
    const n = stackNames(l.name);
    f[n.A] = new ort.Tensor("float32", new Float32Array(l.inFeatures), [1, 1, l.inFeatures]);
    f[n.B] = new ort.Tensor("float32", new Float32Array(l.outFeatures), [1, l.outFeatures, 1]);
    f[n.D] = new ort.Tensor("float32", new Float32Array(l.outFeatures), [1, l.outFeatures]);
  }
  return f;
}

/** Creates a session and runs its first request; returns it with both times. */
async function start(
  label: string,
  create: () => Promise<ort.InferenceSession>,
  first: Record<string, ort.Tensor>,
): Promise<{ label: string; session: ort.InferenceSession; created: number; first: number }> {
  const t0 = performance.now();
  const session = await create();
  const created = performance.now() - t0;
  const t1 = performance.now();
  await session.run(first);
  return { label, session, created, first: performance.now() - t1 };
}

if (import.meta.main) {
  await Deno.stat(FILE).catch(() => {
    throw new Error(`${FILE} is missing: run bench/import_bench.ts generate first`);
  });
  const which = new Set(Deno.args.length ? Deno.args : ["prepack", "no-prepack", "cache"]);
  const model = await openSafetensorsModel(FILE);
  const g = new Graph();
  const stacks = new Map<string, StackInputs>();
  const built = model.build(g, { hook: multiLoraHook(model.layers, stacks) });
  g.output(built.outputs[0]!);
  const width = model.layers[0]!.inFeatures;
  const dir = await Deno.makeTempDir({ dir: new URL("../.bench", import.meta.url).pathname });
  try {
    const path = await writeModelFolder(g, dir);
    const threads = defaultThreads();
    const opts = (session: Record<string, string> = {}) => ({
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: "all" as const,
      extra: { session },
    });
    const one = feeds(model.layers, width, 2);
    const started: Awaited<ReturnType<typeof start>>[] = [];
    const add = async (label: string, create: () => Promise<ort.InferenceSession>) => {
      started.push(await start(label, create, one));
    };
    if (which.has("prepack")) await add("prepack", () => ort.InferenceSession.create(path, opts()));
    if (which.has("no-prepack")) {
      await add(
        "no prepack",
        () => ort.InferenceSession.create(path, opts({ disable_prepacking: "1" })),
      );
    }
    if (which.has("cache")) {
      const cache = `${dir}/cache`;
      await Deno.mkdir(cache);
      await add("prepack, save", () =>
        ort.InferenceSession.create(path, {
          ...opts({
            optimized_model_external_initializers_file_name: "model.onnx.data",
            optimized_model_external_initializers_min_size_in_bytes: "1024",
            save_external_prepacked_constant_initializers: "1",
          }),
          optimizedModelFilePath: `${cache}/model.onnx`,
        }));
      const saved = started.pop()!; // its runs are those of "prepack"
      await saved.session.release();
      const size = Deno.statSync(`${cache}/model.onnx.data`).size / 2 ** 30;
      console.log(
        `prepack, save     session ${(saved.created / 1000).toFixed(2)} s (the cache holds ${
          size.toFixed(2)
        } GiB)`,
      );
      await add(
        "prepacked cache",
        () => ort.InferenceSession.create(`${cache}/model.onnx`, opts()),
      );
    }
    // Steady state: 64-row batches, the sessions interleaved round by round.
    const batch = feeds(model.layers, width, 64);
    const times = started.map(() => [] as number[]);
    for (let round = 0; round < 12; round++) {
      for (const [i, s] of started.entries()) {
        const t = performance.now();
        await s.session.run(batch);
        if (round >= 2) times[i]!.push(performance.now() - t);
      }
    }
    for (const [i, s] of started.entries()) {
      const t = times[i]!.sort((a, b) => a - b);
      console.log(
        `${s.label.padEnd(16)} session ${(s.created / 1000).toFixed(2)} s, first request ${
          s.first.toFixed(0)
        } ms, 64 rows: median ${t[t.length >> 1]!.toFixed(0)} ms (best ${t[0]!.toFixed(0)} ms)`,
      );
      await s.session.release();
    }
  } finally {
    model.close();
    await Deno.remove(dir, { recursive: true });
  }
}
