/**
 * Helpers for the op tests in this folder: compile a graph, run it once, read numbers back.
 *
 * @module
 */

import type { Graph } from "../src/engine/graph.ts";
import { Session } from "../src/engine/runtime.ts";
import type { Tensor } from "../src/tensor.ts";

/** An F32 tensor of `shape` holding `values`. */
export function f32(shape: readonly number[], values: readonly number[]): Tensor<"F32"> {
  return { dtype: "F32", shape, data: Float32Array.from(values) };
}

/** Compiles `g` (single-threaded), runs it once per feed set and returns each run's outputs. */
export async function runGraph(
  g: Graph,
  ...feeds: Record<string, Tensor>[]
): Promise<Record<string, Tensor>[]> {
  const s = await Session.compile(g, { threads: 1 });
  try {
    const out = [];
    for (const f of feeds) out.push(await s.run(f));
    return out;
  } finally {
    await s.release();
  }
}

/** The elements of a tensor as plain numbers. */
export function values(t: Tensor | undefined): number[] {
  if (!t) throw new Error("Missing output tensor");
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

/** Throws unless `actual` and `expected` agree element-wise within `tol`. */
export function assertClose(actual: readonly number[], expected: readonly number[], tol = 1e-6) {
  const bad = actual.length !== expected.length ||
    actual.some((v, i) => !(Math.abs(v - expected[i]!) <= tol));
  if (bad) throw new Error(`Expected [${expected.join(", ")}], got [${actual.join(", ")}]`);
}
