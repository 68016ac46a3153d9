import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { randomTensor, values } from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";
import { Graph } from "../../engine/graph.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import type { LinearSite } from "../model.ts";
import { Rng } from "../../rng.ts";
import { type Tensor, tensor } from "../../tensor.ts";
import { resolveBlock, type TensorInfo } from "./resolve.ts";
import type { BlockSpec } from "./spec.ts";
import { buildBlock } from "./templates.ts";

const rng = new Rng(5);

const weights = new Map<string, Tensor>([
  ["ffn.gate.weight", randomTensor([16, 8], rng)],
  ["ffn.up.weight", randomTensor([16, 8], rng)],
  ["ffn.down.weight", randomTensor([8, 16], rng)],
  ["ffn.down.bias", randomTensor([8], rng)],
  ["ffn.ln.weight", randomTensor([8], rng)],
  ["ffn.ln.bias", randomTensor([8], rng)],
]);
const infos = new Map<string, TensorInfo>([...weights].map(([k, t]) => [k, { name: k, ...t }]));
const spec: BlockSpec = {
  name: "ffn",
  form: "gated",
  activation: "gelu_new",
  gate: { name: "ffn.gate" },
  up: { name: "ffn.up" },
  down: { name: "ffn.down" },
  residual: true,
  norm: { kind: "layer_norm", weight: "ffn.ln.weight", bias: "ffn.ln.bias" },
};
const block = resolveBlock(spec, infos, "memory");
const x = randomTensor([3, 8], rng);

Deno.test("buildBlock() calls the hook on every linear layer, in forward order", () => {
  const g = new Graph();
  const seen: LinearSite[] = [];
  buildBlock(g, block, (k) => weights.get(k)!, { hook: (site) => (seen.push(site), site.y) });
  deepStrictEqual(seen.map((s) => s.layer.name), ["ffn.gate", "ffn.up", "ffn.down"]);
  deepStrictEqual(seen.map((s) => [s.x.shape, s.y.shape]), [
    [["batch", 8], ["batch", 16]],
    [["batch", 8], ["batch", 16]],
    [["batch", 16], ["batch", 8]],
  ]);
  deepStrictEqual(seen.map((s) => s.bias !== null), [false, false, true]);
  ok(seen.every((s) => s.weight.dtype === "F32"));
});

Deno.test("buildBlock() uses the hook's value as the layer's output", async () => {
  const plain = new Graph();
  const plainOut = buildBlock(plain, block, (k) => weights.get(k)!).outputs[0]!;
  const base = values((await runGraph(plain, { x }, { outputs: [plainOut] }))[plainOut.name]);
  const hooked = new Graph();
  const out = buildBlock(hooked, block, (k) => weights.get(k)!, {
    hook: ({ layer, y }) => (layer.name === "ffn.down" ? mul(y, 2) : y),
  }).outputs[0]!;
  const shifted = values((await runGraph(hooked, { x }, { outputs: [out] }))[out.name]);
  ok(shifted.some((v, i) => Math.abs(v - base[i]!) > 1e-3));
});

Deno.test("buildBlock() declares trainable tensors as inputs and uses overrides", async () => {
  const g = new Graph();
  const { inputs, outputs } = buildBlock(g, block, (k) => weights.get(k)!, {
    trainable: new Set(["ffn.up.weight"]),
    overrides: new Map([["ffn.down.bias", tensor("F32", [8])]]),
  });
  deepStrictEqual(g.inputs.map((v) => v.name), ["x", "ffn.up.weight"]);
  strictEqual(inputs[0]!.name, "x");
  const feeds = { x, "ffn.up.weight": weights.get("ffn.up.weight")! };
  const zeroBias = values((await runGraph(g, feeds, { outputs: [outputs[0]!] }))[outputs[0]!.name]);

  const h = new Graph();
  const spec2 = { ...spec, down: { name: "ffn.down", bias: null } };
  const noBias = resolveBlock(spec2, infos, "memory");
  const y = buildBlock(h, noBias, (k) => weights.get(k)!).outputs[0]!;
  const expected = values((await runGraph(h, { x }, { outputs: [y] }))[y.name]);
  deepStrictEqual(zeroBias, expected);
});

Deno.test("buildBlock() keeps half-precision weights in their dtype behind a Cast", () => {
  const g = new Graph();
  const half = new Map(
    [...weights].map((
      [k, t],
    ) => [k, { ...t, dtype: "F16" as const, data: new Uint16Array(t.data.length) }]),
  );
  buildBlock(g, block, (k) => half.get(k)!);
  ok([...g.initializers.values()].every((d) => d.dtype === "F16"));
  strictEqual(g.nodes.filter((n) => n.op === "Cast").length, weights.size);
});
