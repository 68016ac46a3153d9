import { ok, strictEqual, throws } from "node:assert/strict";
import { toFloat32 } from "../src/tensor.ts";
import { type Adapter, loadAdapter } from "../adapters/adapter.ts";
import { combineAdapters } from "./combine.ts";
import { layerHyper } from "../adapters/config.ts";
import { randomAdapter } from "../tests/_random_adapter.ts";

const PEFT = new URL("../fixtures/peft/", import.meta.url).pathname;

/** `scale · B·A` of one module, [out, in], in float64. */
function delta(adapter: Adapter, module: string): Float64Array {
  const t = adapter.layers.get(module)!;
  const { scale } = layerHyper(adapter.config, module);
  const [r, n] = t.A.shape as [number, number];
  const m = t.B.shape[0]!;
  const A = toFloat32(t.A).data, B = toFloat32(t.B).data;
  const d = new Float64Array(m * n);
  for (let o = 0; o < m; o++) {
    for (let k = 0; k < r; k++) {
      for (let i = 0; i < n; i++) {
        d[o * n + i] = d[o * n + i]! + scale * B[o * r + k]! * A[k * n + i]!;
      }
    }
  }
  return d;
}

function frobenius(a: Float64Array, b?: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - (b?.[i] ?? 0)) ** 2;
  return Math.sqrt(s);
}

const layers = [
  {
    name: "fc1",
    inFeatures: 12,
    outFeatures: 10,
    orientation: "out_in" as const,
    weightKey: "fc1.weight",
    dtype: "F32" as const,
  },
  {
    name: "fc2",
    inFeatures: 10,
    outFeatures: 7,
    orientation: "out_in" as const,
    weightKey: "fc2.weight",
    dtype: "F32" as const,
  },
  // rank 2 + 3 = 5 exceeds both sides of this one: the SVD core is 3 × 3
  {
    name: "fc3",
    inFeatures: 4,
    outFeatures: 3,
    orientation: "out_in" as const,
    weightKey: "fc3.weight",
    dtype: "F32" as const,
  },
];
const a1 = randomAdapter({ layers }, { name: "a1", r: 2, alpha: 4, seed: 1 });
const a2 = randomAdapter({ layers }, { name: "a2", r: 3, alpha: 3, seed: 2 });

Deno.test("combineAdapters() linear equals the weighted sum of the deltas", () => {
  const { adapter } = combineAdapters([a1, a2], { method: "linear", weights: [0.7, 0.3] });
  for (const { name } of layers) {
    const want = delta(a1, name).map((v, i) => 0.7 * v + 0.3 * delta(a2, name)[i]!);
    const got = delta(adapter, name);
    ok(frobenius(got, want) <= 1e-6 * frobenius(want), name);
    strictEqual(layerHyper(adapter.config, name).scale, 1);
  }
});

Deno.test("combineAdapters() cat has rank r1 + r2 and the same delta", () => {
  const { adapter } = combineAdapters([a1, a2], { method: "cat", weights: [0.7, 0.3] });
  const linear = combineAdapters([a1, a2], { weights: [0.7, 0.3] }).adapter;
  for (const { name } of layers) {
    strictEqual(adapter.layers.get(name)!.A.shape[0], 5);
    strictEqual(layerHyper(adapter.config, name).rank, 5);
    const want = delta(linear, name);
    ok(frobenius(delta(adapter, name), want) <= 1e-6 * frobenius(want), name);
  }
});

Deno.test("combineAdapters() svd is exact at full rank and reports the truncation error below it", () => {
  const linear = combineAdapters([a1, a2], { weights: [0.7, 0.3] }).adapter;
  const full = combineAdapters([a1, a2], { method: "svd", rank: 5, weights: [0.7, 0.3] });
  for (const { name } of layers) {
    const want = delta(linear, name);
    ok(frobenius(delta(full.adapter, name), want) <= 1e-6 * frobenius(want), name);
    ok(full.errors.get(name)! < 1e-7, `${name}: ${full.errors.get(name)}`);
  }
  const low = combineAdapters([a1, a2], { method: "svd", rank: 2, weights: [0.7, 0.3] });
  for (const { name } of layers) {
    strictEqual(low.adapter.layers.get(name)!.B.shape[1], 2);
    const want = delta(linear, name);
    const measured = frobenius(delta(low.adapter, name), want) / frobenius(want);
    const reported = low.errors.get(name)!;
    ok(reported > 0.01, `${name}: rank 2 of 5 should lose something, reported ${reported}`);
    ok(
      Math.abs(measured - reported) <= 1e-5,
      `${name}: measured ${measured}, reported ${reported}`,
    );
  }
});

Deno.test("combineAdapters() reads PEFT files and refuses DoRA adapters and trained biases", async () => {
  const legacy = await loadAdapter(`${PEFT}legacy`);
  const { adapter } = combineAdapters([legacy, legacy], { method: "cat" });
  strictEqual(adapter.name, "legacy+legacy");
  strictEqual(adapter.layers.get("fc1")!.A.shape[0], 4);
  throws(
    () => combineAdapters([legacy, a1]),
    /module "fc1" is \[8, 6\] in "legacy" but \[10, 12\] in "a1"/,
  );
  throws(() => combineAdapters([legacy, legacy], { method: "svd" }), /target rank/);
  throws(() => combineAdapters([legacy], { weights: [1, 2] }), /expected 1 finite weights/);
  const dora = await loadAdapter(`${PEFT}mlp_dora`);
  throws(() => combineAdapters([legacy, dora]), /"mlp_dora" is a DoRA adapter/);
  const lora = await loadAdapter(`${PEFT}mlp_lora`);
  throws(() => combineAdapters([legacy, lora]), /modules_to_save/);
});
