import { assert, assertClose, f32, values } from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph } from "../graph.ts";
import { gelu } from "./activation.ts";
import { layerNorm, rmsNorm, rmsNormOp } from "./normalization.ts";

/** Deterministic test data in (-2, 2). */
const wave = (n: number, phase = 0) =>
  Array.from({ length: n }, (_, i) => 2 * Math.sin(1.7 * i + phase));

/** LayerNorm of each row of `x` (rows of length n), straight from the definition in float64. */
function layerNormRef(x: readonly number[], n: number, s: number[], b: number[], eps: number) {
  const out: number[] = [];
  for (let r = 0; r < x.length / n; r++) {
    const row = x.slice(r * n, r * n + n);
    const mean = row.reduce((a, v) => a + v, 0) / n;
    const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / n;
    row.forEach((v, i) => out.push(((v - mean) / Math.sqrt(variance + eps)) * s[i]! + b[i]!));
  }
  return out;
}

// LayerNorm's VJP is checked two ways: by float64 finite differences (gradcheck, below), and
// against the closed form computed in float64 here, in float32 and as the float64 twin.

/** LayerNorm's gradients for incoming gradient `dy`, rows of length n, in float64. */
function layerNormGradRef(x: number[], n: number, s: number[], dy: number[], eps: number) {
  const dx: number[] = [];
  const ds = s.map(() => 0);
  const db = s.map(() => 0);
  for (let r = 0; r < x.length / n; r++) {
    const row = x.slice(r * n, r * n + n);
    const mean = row.reduce((a, v) => a + v, 0) / n;
    const rstd = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mean) ** 2, 0) / n + eps);
    const xhat = row.map((v) => (v - mean) * rstd);
    const g = row.map((_, i) => dy[r * n + i]! * s[i]!);
    const mg = g.reduce((a, v) => a + v, 0) / n;
    const mgx = g.reduce((a, v, i) => a + v * xhat[i]!, 0) / n;
    row.forEach((_, i) => {
      dx.push(rstd * (g[i]! - mg - xhat[i]! * mgx));
      ds[i] = ds[i]! + dy[r * n + i]! * xhat[i]!;
      db[i] = db[i]! + dy[r * n + i]!;
    });
  }
  return [dx, ds, db];
}

Deno.test("layerNorm gradients for x, scale and bias equal the closed form within 1e-6, also as the float64 twin", async () => {
  for (
    const [rows, n, axis, withBias] of [[3, 5, -1, true], [2, 12, 1, true], [
      4,
      3,
      -1,
      false,
    ]] as const
  ) {
    const normalized = axis === 1 ? [3, 4] : [n];
    const shape = axis === 1 ? [rows, 3, 4] : [rows, n];
    const x = wave(rows * n);
    const s = wave(n, 2).map((v) => 1 + v / 2);
    const b = wave(n, 4);
    const dy = wave(rows * n, 5);
    const g = new Graph();
    const xv = g.input("x", "F32", shape);
    const sv = g.input("s", "F32", normalized);
    const bv = g.input("b", "F32", normalized);
    const y = layerNorm(xv, sv, withBias ? bv : null, { axis, epsilon: 1e-3 });
    const wrt = withBias ? [xv, sv, bv] : [xv, sv];
    const grads = grad(y, wrt, { seed: g.input("dy", "F32", shape) });
    const feeds = {
      x: f32(shape, x),
      s: f32(normalized, s),
      b: f32(normalized, b),
      dy: f32(shape, dy),
    };
    const want = layerNormGradRef(x, n, s, dy, 1e-3);
    for (const float64 of [false, true]) {
      const got = await runGraph(g, feeds, { outputs: grads, float64 });
      grads.forEach((d, i) =>
        assertClose(got[d.name]!, want[i]!, { rtol: 1e-6, what: `${d.name} (f64 ${float64})` })
      );
    }
  }
});

Deno.test("rmsNorm and rmsNormOp gradients for x and scale match finite differences", async () => {
  const inputs = { x: { shape: [3, 5] }, s: { shape: [5], offset: 1 } };
  await gradcheck(([x, s]) => rmsNorm(x!, s!), inputs, { eps: 1e-5 });
  await gradcheck(([x, s]) => rmsNormOp(x!, s!), inputs, { eps: 1e-5 });
  const wide = { x: { shape: [2, 3, 4] }, s: { shape: [3, 4], offset: 1 } };
  await gradcheck(([x, s]) => rmsNormOp(x!, s!, { axis: -2, epsilon: 1e-2 }), wide, { eps: 1e-5 });
});

Deno.test("layerNorm equals (x − mean)/sqrt(var + eps)·scale + bias computed directly", async () => {
  const x = wave(12);
  const s = [0.5, -1, 2, 1.5];
  const b = [0.1, 0.2, -0.3, 0];
  const g = new Graph();
  const y = layerNorm(
    g.input("x", "F32", ["batch", 4]),
    g.input("s", "F32", [4]),
    g.input("b", "F32", [4]),
  );
  const feeds = { x: f32([3, 4], x), s: f32([4], s), b: f32([4], b) };
  const out = await runGraph(g, feeds, { outputs: [y] });
  assertClose(out[y.name]!, layerNormRef(x, 4, s, b, 1e-5), { rtol: 1e-6, what: "layerNorm" });
});

Deno.test("rmsNorm and rmsNormOp equal x / sqrt(mean(x²) + eps)·scale", async () => {
  const x = wave(12, 0.3);
  const s = [0.5, -1, 2, 1.5];
  const expected = x.map((v, i) => {
    const row = x.slice(i - (i % 4), i - (i % 4) + 4);
    return (v / Math.sqrt(row.reduce((a, u) => a + u * u, 0) / 4 + 1e-6)) * s[i % 4]!;
  });
  for (const norm of [rmsNorm, rmsNormOp]) {
    const g = new Graph();
    const y = norm(g.input("x", "F32", ["batch", 4]), g.input("s", "F32", [4]));
    const out = await runGraph(g, { x: f32([3, 4], x), s: f32([4], s) }, { outputs: [y] });
    assertClose(out[y.name]!, expected, { rtol: 1e-6, what: norm.name });
  }
});

Deno.test("normalization backward runs at opset 23 next to a Gelu op with a symbolic batch", async () => {
  // The backward means avoid ReduceMean, whose axes attribute is invalid from opset 18 on.
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 4]);
  const s = g.input("s", "F32", [4]);
  const b = g.input("b", "F32", [4]);
  const y = rmsNormOp(gelu(layerNorm(x, s, b)), s);
  const [dx, ds, db] = grad(y, [x, s, b]);
  const x0 = wave(8, 1);
  const ones = [1, 1, 1, 1];
  const feeds = { x: f32([2, 4], x0), s: f32([4], ones), b: f32([4], ones) };
  const outs = await runGraph(g, feeds, { outputs: [dx!, ds!, db!] });
  assert(g.minOpset === 23, `opset ${g.minOpset}`);
  for (const o of Object.values(outs).map(values)) {
    assert(o.every(Number.isFinite), `non-finite gradient ${o}`);
  }
});

Deno.test("layerNorm saves Mean and InvStdDev as outputs for its backward", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 6, 4]);
  const y = layerNorm(x, g.input("s", "F32", [6, 4]), null, { axis: 1 });
  const node = y.producer!;
  assert(node.outputs.length === 3, `LayerNormalization has ${node.outputs.length} outputs`);
  assert(
    node.outputs[1]!.shape.join() === "batch,1,1" && node.outputs[2]!.dtype === "F32",
    `Mean/InvStdDev are ${node.outputs[1]!.dtype} ${node.outputs[1]}`,
  );
});

Deno.test("layerNorm and rmsNorm reject a scale whose shape is not the normalized shape", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 8]);
  for (
    const build of [
      () => layerNorm(x, g.input("s1", "F32", [4]), null),
      () => rmsNorm(x, g.input("s2", "F32", [8, 1])),
    ]
  ) {
    let message = "";
    try {
      build();
    } catch (e) {
      message = (e as Error).message;
    }
    assert(
      message.includes("expected [8]") && message.includes("[batch, 8]"),
      `message: ${message}`,
    );
  }
});

Deno.test("layerNorm gradients for x, scale and bias match float64 finite differences", async () => {
  await gradcheck(([x, s, b]) => layerNorm(x!, s!, b!), {
    x: { shape: [3, 5] },
    s: { shape: [5], offset: 1 },
    b: { shape: [5] },
  });
  await gradcheck(([x, s]) => layerNorm(x!, s!, null, { axis: 1, epsilon: 1e-3 }), {
    x: { shape: [2, 3, 4] },
    s: { shape: [3, 4], offset: 1 },
  });
});
