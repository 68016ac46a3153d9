import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import type { DType } from "../../tensor.ts";
import { resolveBlock, type TensorInfo } from "./resolve.ts";
import type { BlockSpec } from "./spec.ts";

const file = (...ts: [string, number[], DType?][]) =>
  new Map<string, TensorInfo>(
    ts.map(([name, shape, dtype]) => [name, { name, dtype: dtype ?? "F32", shape }]),
  );

const swiglu: BlockSpec = {
  name: "model.layers.3.mlp",
  form: "gated",
  activation: "silu",
  gate: { name: "model.layers.3.mlp.gate_proj" },
  up: { name: "model.layers.3.mlp.up_proj" },
  down: { name: "model.layers.3.mlp.down_proj" },
};
const p = "model.layers.3.mlp";

const fails = (spec: BlockSpec, tensors: Map<string, TensorInfo>, message: string) =>
  throws(() => resolveBlock(spec, tensors, "m.safetensors"), (e: Error) => {
    strictEqual(e.message, message);
    return e instanceof TypeError;
  });

Deno.test("resolveBlock() sizes a SwiGLU block", () => {
  const b = resolveBlock(
    swiglu,
    file([`${p}.gate_proj.weight`, [16, 8]], [`${p}.up_proj.weight`, [16, 8]], [
      `${p}.down_proj.weight`,
      [8, 16],
      "BF16",
    ]),
    "m.safetensors",
  );
  deepStrictEqual([b.inFeatures, b.outFeatures, b.activations], [8, 8, ["silu"]]);
  deepStrictEqual(b.layers[2], {
    name: `${p}.down_proj`,
    inFeatures: 16,
    outFeatures: 8,
    orientation: "out_in",
    weightKey: `${p}.down_proj.weight`,
    dtype: "BF16",
  });
});

Deno.test("resolveBlock() names the block, file, tensor, expected and actual shape", () => {
  fails(
    swiglu,
    file([`${p}.gate_proj.weight`, [16, 8]], [`${p}.up_proj.weight`, [8, 16]], [
      `${p}.down_proj.weight`,
      [8, 16],
    ]),
    `Cannot load block "${p}" from "m.safetensors": tensor "${p}.up_proj.weight" has shape [8, 16], expected [16, 8]`,
  );
  fails(
    swiglu,
    file([`${p}.gate_proj.weight`, [16, 8]], [`${p}.up_proj.weight`, [16, 8]]),
    `Cannot load block "${p}" from "m.safetensors": tensor "${p}.down_proj.weight" (weight of layer "${p}.down_proj") is missing`,
  );
});

Deno.test("resolveBlock() checks the chain, biases, dtypes and the residual", () => {
  const seq: BlockSpec = { form: "sequential", layers: [{ name: "fc1" }, { name: "fc2" }] };
  fails(
    seq,
    file(["fc1.weight", [16, 8]], ["fc2.weight", [4, 12]]),
    `Cannot load block (root) from "m.safetensors": tensor "fc2.weight" has shape [4, 12], expected [4, 16]`,
  );
  fails(
    seq,
    file(["fc1.weight", [16, 8]], ["fc1.bias", [8]], ["fc2.weight", [4, 16]]),
    `Cannot load block (root) from "m.safetensors": tensor "fc1.bias" has shape [8], expected [16]`,
  );
  fails(
    seq,
    file(["fc1.weight", [16, 8], "I8"], ["fc2.weight", [4, 16]]),
    `Cannot load block (root) from "m.safetensors": tensor "fc1.weight" has dtype I8, expected a float dtype`,
  );
  fails(
    { ...seq, residual: true },
    file(["fc1.weight", [16, 8]], ["fc2.weight", [4, 16]]),
    `Cannot load block (root) from "m.safetensors": cannot add the residual: the block maps 8 features to 4, expected equal sizes`,
  );
});

Deno.test("resolveBlock() takes <name>.bias when present and honours bias: null", () => {
  const t = file(["a.weight", [16, 8]], ["a.bias", [16]], ["b.kernel", [16, 8]], ["b.bias", [8]]);
  const b = resolveBlock(
    {
      form: "sequential",
      layers: [{ name: "a" }, { name: "b", weight: "b.kernel", orientation: "in_out", bias: null }],
    },
    t,
    "m",
  );
  deepStrictEqual(b.layers.map((l) => l.biasKey), ["a.bias", undefined]);
  deepStrictEqual(b.keys, ["a.weight", "a.bias", "b.kernel"]);
  strictEqual(b.outFeatures, 8);
});
