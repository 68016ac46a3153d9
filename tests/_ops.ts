/**
 * Running a graph in onnxruntime, for tests: compile, run, release. The one test helper that
 * loads onnxruntime, so it stays out of `_assert.ts` (which holds every other helper).
 *
 * @module
 */

import type { Graph } from "../src/engine/graph.ts";
import { Session, type SessionOptions } from "../src/engine/runtime.ts";
import type { Tensor } from "../src/tensor.ts";

/** Feeds of one run, by input name. */
export type Feeds = Record<string, Tensor>;

/**
 * Compiles `g` once (one thread unless `options.threads` says otherwise), runs it on each feed
 * set in turn and returns each run's outputs (`options.outputs`, or the graph's) by name. With
 * `float64`, F32 feeds are widened to F64 for the float64 twin; F64 feeds go as they are.
 */
export async function runGraphEach(
  g: Graph,
  feedSets: readonly Feeds[],
  options: SessionOptions = {},
): Promise<Record<string, Tensor>[]> {
  const s = await Session.compile(g, { threads: 1, ...options });
  const widen = (t: Tensor): Tensor =>
    options.float64 && t.dtype === "F32"
      ? { ...t, dtype: "F64", data: Float64Array.from(t.data as Float32Array) }
      : t;
  try {
    const out = [];
    for (const feeds of feedSets) {
      out.push(
        await s.run(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, widen(t)]))),
      );
    }
    return out;
  } finally {
    await s.release();
  }
}

/** {@link runGraphEach} with one feed set: compiles `g`, runs it once, returns its outputs by name. */
export async function runGraph(
  g: Graph,
  feeds: Feeds,
  options: SessionOptions = {},
): Promise<Record<string, Tensor>> {
  return (await runGraphEach(g, [feeds], options))[0]!;
}
