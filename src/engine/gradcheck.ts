/**
 * Gradient checking for tests: central finite differences on the float64 twin of a graph, run
 * through onnxruntime itself, compared with the gradients the autograd emits.
 *
 * @module
 */

import { assert } from "./_assert.ts";
import { grad } from "./autograd.ts";
import { Graph, type Shape, type Value } from "./graph.ts";
import { mul } from "./ops/elementwise.ts";
import { reduceSum } from "./ops/reduce.ts";
import { Session } from "./runtime.ts";
import { Rng } from "../rng.ts";
import { numel, type Tensor } from "../tensor.ts";

/** One input of a checked function: its shape, and optionally its values and whether to check it. */
export interface CheckInput {
  /** Static dimensions of the input. */
  shape: readonly number[];
  /** Values (default: uniform in [-1, 1) from the seeded generator, shifted by `offset`). */
  data?: readonly number[];
  /** Add to generated values (e.g. keep Log's input positive). */
  offset?: number;
  /** Check the gradient of this input (default true for F32 inputs). */
  check?: boolean;
  /** `"I64"` for labels and indices, which then need `data` (default `"F32"`). */
  dtype?: "F32" | "I64";
}

/** Options of {@link gradcheck}. */
export interface GradcheckOptions {
  /** Finite-difference step (default 1e-5: smaller steps drown in float64 rounding of the loss). */
  eps?: number;
  /** Maximum relative error (default 1e-6). */
  tol?: number;
  /** Seed of the generator that draws inputs and the projection `r` (default 7). */
  seed?: number;
}

/** The worst relative error found, per checked input. */
export type GradcheckResult = Record<string, number>;

/**
 * Checks the VJPs of the function `f` at random inputs: builds `sum(f(inputs) · r)` for a fixed
 * random `r`, emits its gradient and its float64 twin, and compares each element of each
 * gradient with a central finite difference. Throws with the input, the element and both values
 * when the relative error exceeds `tol`.
 *
 * @example
 * ```ts
 * import { gradcheck } from "./gradcheck.ts";
 * import { relu } from "./ops/activation.ts";
 * import { deepStrictEqual, ok } from "node:assert/strict";
 * const errors = await gradcheck((x) => relu(x[0]!), { x: { shape: [3, 4] } });
 * deepStrictEqual(Object.keys(errors), ["x"]);
 * ok(errors.x! < 1e-10); // about 4e-12: far inside the default `tol` of 1e-6
 * ```
 */
export async function gradcheck(
  f: (inputs: Value[], g: Graph) => Value,
  inputs: Record<string, CheckInput>,
  opts: GradcheckOptions = {},
): Promise<GradcheckResult> {
  const { eps = 1e-5, tol = 1e-6, seed = 7 } = opts;
  const rng = new Rng(seed);
  const g = new Graph();
  const values: Value[] = [];
  const feeds: Record<string, Tensor> = {};
  for (const [name, spec] of Object.entries(inputs)) {
    const dtype = spec.dtype ?? "F32";
    values.push(g.input(name, dtype, spec.shape as Shape));
    const n = numel(spec.shape);
    if (dtype === "I64") {
      if (!spec.data) throw new TypeError(`gradcheck input "${name}" is I64: give its data`);
      const data = BigInt64Array.from(spec.data, (v) => BigInt(v));
      feeds[name] = { dtype, shape: spec.shape, data };
    } else {
      const data = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        data[i] = spec.data?.[i] ?? (2 * rng.uniform() - 1 + (spec.offset ?? 0));
      }
      feeds[name] = { dtype: "F64", shape: spec.shape, data };
    }
  }
  const y = f(values, g);
  const rShape = y.shape.map((d) => {
    if (typeof d !== "number") {
      throw new TypeError(`gradcheck needs static output shapes, got ${y}`);
    }
    return d;
  });
  const r = new Float32Array(numel(rShape));
  rng.fillUniform(r, 0.5, 1.5);
  const loss = reduceSum(mul(y, g.constant({ dtype: "F32", shape: rShape, data: r }, "proj")));
  const checked = values.filter((v) => v.dtype === "F32" && inputs[v.name]!.check !== false);
  const grads = grad(loss, checked);
  g.output(loss);
  for (const d of grads) g.output(d);
  const session = await Session.compile(g, { float64: true, threads: 1 });
  try {
    const analytic = await session.run(feeds);
    const result: GradcheckResult = {};
    for (const [k, v] of checked.entries()) {
      const x = feeds[v.name]!.data as Float64Array;
      const dx = analytic[grads[k]!.name]!.data as Float64Array;
      let worst = 0;
      for (let i = 0; i < x.length; i++) {
        const x0 = x[i]!;
        x[i] = x0 + eps;
        const up = (await session.run(feeds, [loss.name]))[loss.name]!.data[0] as number;
        x[i] = x0 - eps;
        const down = (await session.run(feeds, [loss.name]))[loss.name]!.data[0] as number;
        x[i] = x0;
        const numeric = (up - down) / (2 * eps);
        const err = Math.abs(numeric - dx[i]!) /
          Math.max(Math.abs(numeric), Math.abs(dx[i]!), 1e-3);
        assert(
          err <= tol,
          `Gradient of "${v.name}" element ${i}: autograd ${
            dx[i]
          }, finite difference ${numeric} (relative error ${err})`,
        );
        worst = Math.max(worst, err);
      }
      result[v.name] = worst;
    }
    return result;
  } finally {
    await session.release();
  }
}
