/**
 * Matrix products: MatMul (numpy semantics: batched, broadcasting, 1-D operands) and Gemm
 * (`alpha · A' · B' + beta · C`, ONNX spec, with transA / transB).
 *
 * The backward of a product with a frozen weight is one MatMul for the activation gradient:
 * the weight gradient is emitted only when the autograd asks for it.
 *
 * @module
 */

import { type Dim, float, formatShape, int, type Value } from "../graph.ts";
import { assertSameDtype, broadcastShapes } from "../shapes.ts";
import { inputsOf, type Vjp } from "../vjp.ts";
import { mul } from "./elementwise.ts";
import { reshape, squeeze, transposeLast2, unbroadcast, unsqueeze } from "./shape.ts";
import { attr } from "./_helpers.ts";

function innerMismatch(op: string, a: Value, b: Value): never {
  throw new TypeError(
    `Cannot multiply matrices in ${op}: inner dimensions differ, a is ${
      formatShape(a.shape)
    }, b is ${formatShape(b.shape)}`,
  );
}

/**
 * `a @ b` with numpy semantics.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { matmul } from "./matmul.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4]);
 * const w = g.input("w", "F32", [4, 3]);
 * const y = matmul(x, w); // [batch, 3]
 * ```
 */
export function matmul(a: Value, b: Value): Value {
  assertSameDtype("MatMul", a, b);
  if (a.rank === 0 || b.rank === 0) {
    throw new TypeError(`Cannot apply MatMul to a scalar: a is ${a}, b is ${b}`);
  }
  const as = a.rank === 1 ? [1, a.shape[0]!] : a.shape;
  const bs = b.rank === 1 ? [b.shape[0]!, 1] : b.shape;
  const k1 = as[as.length - 1]!;
  const k2 = bs[bs.length - 2]!;
  if (k1 !== k2) innerMismatch("MatMul", a, b);
  const batch = broadcastShapes("MatMul", as.slice(0, -2), bs.slice(0, -2));
  const shape: Dim[] = [...batch];
  if (a.rank > 1) shape.push(as[as.length - 2]!);
  if (b.rank > 1) shape.push(bs[bs.length - 1]!);
  return a.graph.node("MatMul", [a, b], {}, [{ dtype: a.dtype, shape }])[0]!;
}

/** Gradient of `a @ b` for `a` and `b`, each reduced back over broadcast batch axes. */
const matMulVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [a, b] = inputsOf(node) as [Value, Value];
  // Lift 1-D operands to matrices so one rule covers every case, then drop the added axis.
  const a2 = a.rank === 1 ? unsqueeze(a, [0]) : a;
  const b2 = b.rank === 1 ? unsqueeze(b, [1]) : b;
  let d = dy!;
  if (a.rank === 1) d = unsqueeze(d, [d.rank - (b.rank === 1 ? 0 : 1)]);
  if (b.rank === 1) d = unsqueeze(d, [d.rank]);
  let dA: Value | null = null;
  let dB: Value | null = null;
  if (needs[0]) {
    dA = unbroadcast(matmul(d, transposeLast2(b2)), a2); // dA = dY · Bᵀ
    if (a.rank === 1) dA = squeeze(dA, [0]);
  }
  if (needs[1]) {
    if (b2.rank === 2 && a2.rank > 2) {
      // A shared weight under a batched input: fold the batch axes into rows, one GEMM.
      const k = a2.shape[a2.rank - 1]!;
      const n = d.shape[d.rank - 1]!;
      // Both flattened row counts get one shared name, so the product's inner dims agree.
      const rows = a2.graph.freshName("rows");
      dB = matmul(transposeLast2(reshape(a2, [rows, k])), reshape(d, [rows, n]));
    } else {
      dB = unbroadcast(matmul(transposeLast2(a2), d), b2); // dB = Aᵀ · dY
    }
    if (b.rank === 1) dB = squeeze(dB, [1]);
  }
  return [dA, dB];
};

/** Options of {@link gemm}. */
export interface GemmOptions {
  /** Factor of the product `A' · B'` (default 1). */
  alpha?: number;
  /** Factor of `C` (default 1). */
  beta?: number;
  /** Use `Aᵀ` for `A'` (default false). */
  transA?: boolean;
  /** Use `Bᵀ` for `B'` (default false): a PyTorch `[out, in]` weight. */
  transB?: boolean;
}

/**
 * `alpha · A' · B' + beta · C` on 2-D operands (C broadcasts to the result).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../graph.ts";
 * import { gemm } from "./matmul.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4]);
 * const w = g.input("w", "F32", [3, 4]); // [out, in]
 * const b = g.input("b", "F32", [3]);
 * deepStrictEqual(gemm(x, w, b, { transB: true }).shape, ["batch", 3]);
 * ```
 *
 * @example The forward pass by hand (the tutorial's §4.3): three dense layers whose weights and
 * biases are all ones take x = [1] to [2, 2], then [5, 5], then [11, 11].
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph } from "../graph.ts";
 * import { Session } from "../runtime.ts";
 * import { gemm } from "./matmul.ts";
 * const g = new Graph();
 * const ones = (...shape: number[]) =>
 *   g.constant({ dtype: "F32", shape, data: new Float32Array(shape.reduce((a, b) => a * b)).fill(1) });
 * const x = g.input("x", "F32", ["batch", 1]);
 * const h1 = gemm(x, ones(2, 1), ones(2), { transB: true }); // [out, in] weights, as nn.Linear
 * const h2 = gemm(h1, ones(2, 2), ones(2), { transB: true });
 * const y = gemm(h2, ones(2, 2), ones(2), { transB: true });
 * const session = await Session.compile(g, { outputs: [h1, h2, y] });
 * const out = await session.run({ x: { dtype: "F32", shape: [1, 1], data: new Float32Array([1]) } });
 * deepStrictEqual([h1, h2, y].map((v) => [...out[v.name]!.data]), [[2, 2], [5, 5], [11, 11]]);
 * await session.release();
 * ```
 */
export function gemm(a: Value, b: Value, c: Value | null = null, opts: GemmOptions = {}): Value {
  const { alpha = 1, beta = 1, transA = false, transB = false } = opts;
  assertSameDtype("Gemm", a, b);
  if (a.rank !== 2 || b.rank !== 2) {
    throw new TypeError(`Cannot apply Gemm: operands must be 2-D, a is ${a}, b is ${b}`);
  }
  const [m, k1] = transA ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
  const [k2, n] = transB ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
  if (k1 !== k2) innerMismatch("Gemm", a, b);
  if (c) {
    const bc = broadcastShapes("Gemm", [m, n], c.shape);
    if (bc[0] !== m || bc[1] !== n) {
      throw new TypeError(`Cannot broadcast C ${c} to the Gemm result ${formatShape([m, n])}`);
    }
  }
  const attrs = {
    alpha: float(alpha),
    beta: float(beta),
    transA: int(transA ? 1 : 0),
    transB: int(transB ? 1 : 0),
  };
  return a.graph.node("Gemm", c ? [a, b, c] : [a, b], attrs, [{
    dtype: a.dtype,
    shape: [m, n],
  }])[0]!;
}

const gemmVjp: Vjp = ({ node, dy: [dy], needs }) => {
  const [a, b, c] = node.inputs;
  const alpha = attr(node, "alpha", 1);
  const beta = attr(node, "beta", 1);
  const tA = attr(node, "transA", 0) === 1;
  const tB = attr(node, "transB", 0) === 1;
  // With A' = op(A), B' = op(B): dA' = α·dY·B'ᵀ and dB' = α·A'ᵀ·dY, written back through op.
  const dA = !needs[0]
    ? null
    : tA
    ? gemm(b!, dy!, null, { alpha, transA: tB, transB: true })
    : gemm(dy!, b!, null, { alpha, transB: !tB });
  const dB = !needs[1]
    ? null
    : tB
    ? gemm(dy!, a!, null, { alpha, transA: true, transB: tA })
    : gemm(a!, dy!, null, { alpha, transA: !tA });
  const dC = needs[2] && c ? unbroadcast(beta === 1 ? dy! : mul(dy!, beta), c) : null;
  return [dA, dB, dC];
};

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {
  MatMul: matMulVjp,
  Gemm: gemmVjp,
};
