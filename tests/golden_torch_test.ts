/**
 * ffwd's LoRA losses and adapter gradients against PyTorch's, read from golden files that
 * `fixtures/golden/make_lora_grads.py` wrote (float64, PyTorch 1.13; see the script for the
 * models). Each file holds the inputs, base weights as the module stores them, the adapter under
 * its PEFT keys, the scale, the loss and the gradients named as ffwd names them (`d.<PEFT key>`).
 *
 * Error measure: per tensor, `max|ffwd − torch| / max|torch|` (see `relError` in `_assert.ts`); the
 * loss by its relative error.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { Value } from "../src/engine/graph.ts";
import { gelu } from "../src/engine/ops/activation.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import type { Tensor } from "../src/tensor.ts";
import { loraScale } from "../src/lora/branch.ts";
import { adapterKeys, buildLoraMlp, lossAndGrads, type MlpSpec } from "./_mlp.ts";
import { relError } from "./_assert.ts";

const GOLDEN = new URL("../fixtures/golden/", import.meta.url).pathname;
const RTOL = 1e-5;

interface Golden {
  readonly tensors: Map<string, Tensor>;
  readonly meta: Readonly<Record<string, string>>;
}

async function readGolden(file: string): Promise<Golden> {
  const { tensors, metadata } = await readSafetensors(GOLDEN + file);
  return { tensors, meta: metadata };
}

function get(golden: Golden, key: string): Tensor {
  const t = golden.tensors.get(key);
  if (!t) throw new TypeError(`Golden file has no tensor "${key}"`);
  return t;
}

/**
 * The MLP the file describes, its base weights taken from the file. The input's leading
 * dimension is `"batch"` when `symbolicBatch`, else the file's (all static).
 */
function specOf(golden: Golden, activation: (x: Value) => Value, symbolicBatch: boolean): MlpSpec {
  const { meta } = golden;
  const x = get(golden, "x");
  return {
    layers: meta["layers"]!.split(",").map((name) => ({
      name,
      weight: get(golden, `${name}.weight`),
      bias: get(golden, `${name}.bias`),
      orientation: meta["fan_in_fan_out"] === "true" ? "in_out" : "out_in",
    })),
    activation,
    input: symbolicBatch ? ["batch", ...x.shape.slice(1)] : x.shape,
    loss: meta["loss"] === "mse" ? "mse" : "cross_entropy",
    rank: Number(meta["rank"]),
    alpha: Number(meta["lora_alpha"]),
    rslora: meta["use_rslora"] === "true",
  };
}

/** Runs ffwd on the golden case and checks loss and gradients against PyTorch's within `rtol`. */
async function checkGolden(
  golden: Golden,
  activation: (x: Value) => Value,
  opts: { float64?: boolean; rtol?: number; symbolicBatch?: boolean } = {},
): Promise<void> {
  const rtol = opts.rtol ?? RTOL;
  const spec = specOf(golden, activation, opts.symbolicBatch ?? true);
  const mlp = buildLoraMlp(spec);
  const scale = Number(get(golden, "scale").data[0]);
  for (const ad of mlp.adapters) {
    assert(Math.abs(ad.scale - scale) <= 1e-15 * scale, `scale ${ad.scale}, PyTorch's ${scale}`);
  }
  const target = spec.loss === "mse" ? "target" : "labels";
  const keys = adapterKeys(mlp);
  const adapter = new Map(keys.map((k) => [k, get(golden, k)]));
  const feeds = { x: get(golden, "x"), [target]: get(golden, target) };
  const ours = await lossAndGrads(mlp, feeds, adapter, { float64: opts.float64 });

  const want = Number(get(golden, "loss").data[0]);
  const lossErr = Math.abs(ours.loss - want) / Math.abs(want);
  assert(lossErr <= rtol, `loss ${ours.loss}, PyTorch's ${want}: relative error ${lossErr}`);
  for (const key of keys) {
    const expected = get(golden, `d.${key}`);
    const got = ours.grads.get(key)!;
    assertEquals(got.length, expected.data.length);
    const err = relError(got, expected.data as Float64Array);
    assert(err <= rtol, `d.${key}: relative error ${err} exceeds ${rtol}`);
  }
}

Deno.test("golden files hold non-trivial gradients of every adapter tensor", async () => {
  for (const file of ["lora_gelu_mlp.safetensors", "lora_conv1d_rslora.safetensors"]) {
    const golden = await readGolden(file);
    const names = golden.meta["layers"]!.split(",");
    for (const name of names) {
      for (const w of ["A", "B"]) {
        const d = get(golden, `d.base_model.model.${name}.lora_${w}.weight`);
        let norm = 0;
        for (const v of d.data as Float64Array) norm = Math.max(norm, Math.abs(v));
        assert(norm > 1e-3, `${file}: gradient of ${name}.lora_${w} is trivial (${norm})`);
      }
    }
  }
});

for (const form of ["op", "decomposed"] as const) {
  Deno.test(`LoRA on a GELU MLP with cross-entropy: loss and gradients equal PyTorch's within 1e-5 (${form} GELU)`, async () => {
    const golden = await readGolden("lora_gelu_mlp.safetensors");
    assertEquals(golden.meta["activation"], "gelu");
    // Exact GELU needs Erf, which onnxruntime 1.30 has no float64 kernel for: float32 only.
    await checkGolden(golden, (x) => gelu(x, { form }));
  });
}

// The input is [2, 3, 8] with every dimension static: with a symbolic leading dimension the
// backward of the rank-3 LoRA branch cannot be built yet (see the ignored test below).
Deno.test("rsLoRA on a GPT-2 Conv1D MLP ([in, out] weights) with MSE: loss and gradients equal PyTorch's within 1e-5", async () => {
  const golden = await readGolden("lora_conv1d_rslora.safetensors");
  assertEquals(golden.meta["activation"], "gelu_new");
  const rank = Number(golden.meta["rank"]);
  assertEquals(Number(get(golden, "scale").data[0]), loraScale(8, rank, true));
  for (const form of ["op", "decomposed"] as const) {
    const activation = (x: Value) => gelu(x, { approximate: "tanh", form });
    await checkGolden(golden, activation, { symbolicBatch: false });
  }
});

// The twin agrees with PyTorch's float64 only to ~1e-8, not ~1e-15: GELU's constants are rounded
// to float32 before the twin sees them (√(2/π) and 0.044715, lifted to F32 scalars in the
// decomposed form; `Sqrt(float(2/π))` and `float(0.044715)` in the ONNX Gelu function body).
// PyTorch recomputed with those rounded constants gives the twin's loss to 17 digits and its
// gradients within 6e-16.
Deno.test("rsLoRA on a GPT-2 Conv1D MLP: the float64 twin equals PyTorch's float64 within 1e-7", async () => {
  const golden = await readGolden("lora_conv1d_rslora.safetensors");
  for (const form of ["op", "decomposed"] as const) {
    const activation = (x: Value) => gelu(x, { approximate: "tanh", form });
    await checkGolden(golden, activation, { float64: true, rtol: 1e-7, symbolicBatch: false });
  }
});

// A symbolic batch: the MatMul VJP flattens x [batch, seq, k] and dY [batch, seq, n] to rows
// sharing one symbolic name before the weight-gradient product.
Deno.test({
  name:
    "rsLoRA on a GPT-2 Conv1D MLP with input [batch, 3, 8]: gradients equal PyTorch's within 1e-5",
  fn: async () => {
    const golden = await readGolden("lora_conv1d_rslora.safetensors");
    await checkGolden(golden, (x) => gelu(x, { approximate: "tanh" }), { symbolicBatch: true });
  },
});
