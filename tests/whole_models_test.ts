/**
 * Whole models against PyTorch: LoRA on the linear layers that sit behind frozen context (a CNN's
 * convolutions, an LSTM, a BERT encoder's embeddings and attention), read from ONNX files that
 * `fixtures/whole/make_whole.py` exported with PyTorch 1.13 (opset 17, dynamic batch), and
 * checked against the float64 numbers the same script recorded (see it for the models):
 *
 * - cnn (`x` F32 [N, 1, 28, 28]) and lstm (`input_ids` I64 [N, 7]), adapter "lora" on fc1, fc2;
 * - bert (`input_ids`, `attention_mask` I64 [N, 8]), adapters "ffn" (`intermediate.dense`,
 *   `output.dense` of both layers) and "attn" (`attention.self.query`, `.value` of both layers).
 *
 * Per model: the file itself in plain onnxruntime, and `openOnnxModel`'s graph, give PyTorch's
 * logits. Per adapter (a PEFT folder, r=4, alpha=8): it selects and matches the intended layers;
 * the adapted logits and mean cross-entropy; the gradients of every A and B; 20 full-batch SGD
 * steps (lr 0.1) with the trainer's own step and optimizer; a merged ONNX export run in plain
 * onnxruntime. Errors: per tensor `max|ffwd − torch| / max|torch|` (`relError`), a loss by its
 * relative error.
 */

import { assert, assertEquals, relError, withTempDir } from "./_assert.ts";
import { runImported, runOriginal } from "./_onnx.ts";
import { type OnnxModel, openOnnxModel } from "../src/models/onnx/import.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { type Tensor, toFloat32 } from "../src/tensor.ts";
import { Session } from "../src/engine/runtime.ts";
import { buildAdapted } from "../src/lora/adapted.ts";
import { peftKeys } from "../src/lora/branch.ts";
import { TrainStep } from "../src/train/step.ts";
import { Optimizer } from "../src/train/optim.ts";
import { type Adapter, matchAdapter } from "../adapters/adapter.ts";
import { loadPeftAdapter } from "../adapters/peft.ts";
import { toTargetOptions } from "../adapters/config.ts";
import { planAdapters } from "../adapters/targets.ts";
import { exportAdapter } from "../workflows/export.ts";

const ROOT = new URL("../fixtures/whole/", import.meta.url).pathname;
const CASES = { cnn: ["lora"], lstm: ["lora"], bert: ["ffn", "attn"] } as const;
type ModelName = keyof typeof CASES;
/** Logits, losses and gradients, relative. */
const RTOL = 1e-5;
/** The adapter after 20 steps, relative to the tensor's largest value (as in the trajectory test). */
const ADAPTER_RTOL = 1e-4;

interface Golden {
  readonly tensors: Map<string, Tensor>;
  readonly meta: Readonly<Record<string, string>>;
}

async function readGolden(model: ModelName): Promise<Golden> {
  const { tensors, metadata } = await readSafetensors(`${ROOT}${model}/golden.safetensors`);
  return { tensors, meta: metadata };
}

function get(golden: Golden, key: string): Tensor {
  const t = golden.tensors.get(key);
  if (!t) throw new TypeError(`Golden file has no tensor "${key}"`);
  return t;
}

/** The inputs for N=4 by ONNX input name, optionally only the first `rows` rows. */
function inputs(golden: Golden, rows?: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const name of golden.meta["inputs"]!.split(",")) {
    const t = get(golden, name);
    if (rows === undefined) out[name] = t;
    else {
      const per = t.data.length / t.shape[0]!;
      const data = t.data.slice(0, rows * per) as Tensor["data"];
      out[name] = { dtype: t.dtype, shape: [rows, ...t.shape.slice(1)], data } as Tensor;
    }
  }
  return out;
}

/** The first `rows` rows of a golden [4, classes] tensor. */
function firstRows(t: Tensor, rows: number): Float64Array {
  return (t.data as Float64Array).slice(0, rows * (t.data.length / t.shape[0]!));
}

/** PEFT keys of A and B of every target, in forward order. */
function adapterKeys(golden: Golden, variant: string): string[] {
  return golden.meta[`${variant}.targets`]!.split(",").flatMap((m) => {
    const k = peftKeys(m);
    return [k.A, k.B];
  });
}

function checkClose(what: string, got: ArrayLike<number>, want: Tensor, rtol = RTOL): void {
  assertEquals(got.length, want.data.length, `${what}: number of values`);
  const err = relError(got, want.data as Float64Array);
  assert(err <= rtol, `${what}: relative error ${err} exceeds ${rtol}`);
}

function checkLoss(what: string, got: number, want: number): void {
  const err = Math.abs(got - want) / Math.abs(want);
  assert(err <= RTOL, `${what}: ${got}, PyTorch's ${want}, relative error ${err}`);
}

async function withModel<T>(model: ModelName, fn: (m: OnnxModel) => Promise<T>): Promise<T> {
  const m = await openOnnxModel(`${ROOT}${model}/model.onnx`);
  try {
    return await fn(m);
  } finally {
    m.close();
  }
}

function loadVariant(model: ModelName, variant: string): Promise<Adapter> {
  return loadPeftAdapter(`${ROOT}${model}/${variant}`);
}

/**
 * The adapted graph with its loss, and its feeds: the data inputs (declared first, in the model's
 * input order), `labels`, and the adapter's A and B by PEFT key.
 */
function adaptedCase(m: OnnxModel, adapter: Adapter, golden: Golden) {
  const { layers } = matchAdapter(adapter, m);
  const built = buildAdapted(m, layers, { loss: "cross_entropy" });
  const feeds: Record<string, Tensor> = { labels: get(golden, "labels") };
  const data = inputs(golden);
  m.inputs.forEach((io, i) => (feeds[built.graph.inputs[i]!.name] = data[io.name]!));
  const params = [...built.adapterInputs.values()].flatMap((d) => [d.A, d.B]);
  const values = new Map<string, Float32Array>();
  for (const [module, t] of adapter.layers) {
    const k = peftKeys(module);
    values.set(k.A, toFloat32(t.A).data.slice());
    values.set(k.B, toFloat32(t.B).data.slice());
  }
  return { built, feeds, params, values };
}

Deno.test("whole-model goldens: every adapter moves the logits, has non-trivial gradients and learns", async () => {
  for (const [model, variants] of Object.entries(CASES) as [ModelName, readonly string[]][]) {
    const golden = await readGolden(model);
    assertEquals(golden.meta["variants"], variants.join(","), `${model}: variants`);
    const base = get(golden, "base.logits");
    for (const v of variants) {
      const moved = relError(
        base.data as Float64Array,
        get(golden, `${v}.adapted.logits`).data as Float64Array,
      );
      assert(moved > 0.05, `${model}/${v}: the adapter moves the logits by only ${moved}`);
      const adapter = await loadVariant(model, v);
      for (const key of adapterKeys(golden, v)) {
        const d = get(golden, `${v}.d.${key}`).data as Float64Array;
        const norm = d.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
        assert(norm > 1e-4, `${model}/${v}: gradient of ${key} is trivial (${norm})`);
        const module = key.slice("base_model.model.".length, key.lastIndexOf(".lora_"));
        const t = adapter.layers.get(module)![key.endsWith("lora_A.weight") ? "A" : "B"];
        assertEquals([...t.data as Float32Array], [
          ...get(golden, `${v}.${key}`).data as Float32Array,
        ], `${model}/${v}: ${key} in the PEFT folder`);
      }
      const losses = get(golden, `${v}.sgd.losses`).data as Float64Array;
      assert(losses[losses.length - 1]! < losses[0]!, `${model}/${v}: SGD does not lower the loss`);
      checkLoss(
        `${model}/${v}: the adapted loss`,
        losses[0]!,
        Number(get(golden, `${v}.loss`).data[0]),
      );
      const f32 = get(golden, `${v}.sgd.losses_f32`).data as Float64Array;
      losses.forEach((l, i) =>
        checkLoss(`${model}/${v}: PyTorch's float32 loss at step ${i + 1}`, f32[i]!, l)
      );
    }
  }
});

for (const [model, variants] of Object.entries(CASES) as [ModelName, readonly string[]][]) {
  Deno.test(`${model}: the ONNX file in plain onnxruntime gives PyTorch's logits at batch 4 and 1`, async () => {
    const golden = await readGolden(model);
    const base = get(golden, "base.logits");
    for (const rows of [4, 1]) {
      const out = await runOriginal(`${ROOT}${model}/model.onnx`, inputs(golden, rows));
      const want = { ...base, shape: [rows, base.shape[1]!], data: firstRows(base, rows) };
      checkClose(`logits at batch ${rows}`, out["logits"]!.data as Float32Array, want);
    }
  });

  Deno.test(`${model}: openOnnxModel's graph gives PyTorch's base logits within 1e-5`, async () => {
    const golden = await readGolden(model);
    await withModel(model, async (m) => {
      assertEquals(m.inputs.map((i) => i.name), golden.meta["inputs"]!.split(","), "inputs");
      const out = await runImported(m, inputs(golden));
      checkClose("base logits", out["logits"]!.data as Float32Array, get(golden, "base.logits"));
    });
  });

  for (const v of variants) {
    Deno.test(`${model}/${v}: the PEFT adapter's target_modules select its layers and every tensor fits`, async () => {
      const golden = await readGolden(model);
      const targets = golden.meta[`${v}.targets`]!.split(",");
      await withModel(model, async (m) => {
        const adapter = await loadVariant(model, v);
        const planned = planAdapters(m, toTargetOptions(adapter.config));
        assertEquals(planned.map((a) => a.layer.name), targets, "layers target_modules selects");
        const match = matchAdapter(adapter, m);
        assertEquals(
          match.layers.map((a) => a.layer.name).sort(),
          [...targets].sort(),
          "matched layers",
        );
        assertEquals(
          match.layers.map((a) => a.scale),
          targets.map(() => Number(golden.meta["scale"])),
          "scales",
        );
      });
    });

    Deno.test(`${model}/${v}: adapted logits and loss equal PyTorch's within 1e-5`, async () => {
      const golden = await readGolden(model);
      await withModel(model, async (m) => {
        const { built, feeds, values } = adaptedCase(m, await loadVariant(model, v), golden);
        const s = await Session.compile(built.graph, { outputs: [built.output, built.loss!] });
        try {
          for (const [k, data] of values) {
            feeds[k] = { dtype: "F32", shape: built.graph.find(k)!.shape as number[], data };
          }
          const out = await s.run(feeds);
          checkClose(
            "adapted logits",
            out[built.output.name]!.data as Float32Array,
            get(golden, `${v}.adapted.logits`),
          );
          checkLoss(
            "loss",
            Number(out[built.loss!.name]!.data[0]),
            Number(get(golden, `${v}.loss`).data[0]),
          );
        } finally {
          await s.release();
        }
      });
    });

    Deno.test(`${model}/${v}: gradients of every A and B equal PyTorch's within 1e-5`, async () => {
      const golden = await readGolden(model);
      await withModel(model, async (m) => {
        const { built, feeds, params, values } = adaptedCase(
          m,
          await loadVariant(model, v),
          golden,
        );
        const step = await TrainStep.compile({ graph: built.graph, loss: built.loss!, params });
        try {
          const { loss, grads } = await step.run(feeds, values);
          checkLoss("loss", loss, Number(get(golden, `${v}.loss`).data[0]));
          const keys = adapterKeys(golden, v);
          assertEquals([...grads.keys()].sort(), [...keys].sort(), "parameters with a gradient");
          for (const key of keys) {
            checkClose(`d.${key}`, grads.get(key)!, get(golden, `${v}.d.${key}`));
          }
        } finally {
          await step.release();
        }
      });
    });

    Deno.test(`${model}/${v}: 20 full-batch SGD steps (lr 0.1) follow PyTorch's losses within 1e-5 and end at its A and B within 1e-4`, async () => {
      const golden = await readGolden(model);
      const steps = Number(golden.meta["steps"]);
      const lr = Number(golden.meta["lr"]);
      await withModel(model, async (m) => {
        const { built, feeds, params, values } = adaptedCase(
          m,
          await loadVariant(model, v),
          golden,
        );
        const step = await TrainStep.compile({ graph: built.graph, loss: built.loss!, params });
        try {
          const opt = new Optimizer("sgd");
          const losses: number[] = [];
          for (let i = 0; i < steps; i++) {
            const { loss, grads } = await step.run(feeds, values);
            losses.push(loss);
            opt.step(values, grads, lr);
          }
          const want = get(golden, `${v}.sgd.losses`).data as Float64Array;
          losses.forEach((l, i) => checkLoss(`loss at step ${i + 1}`, l, want[i]!));
          for (const key of adapterKeys(golden, v)) {
            checkClose(
              `final ${key}`,
              values.get(key)!,
              get(golden, `${v}.sgd.${key}`),
              ADAPTER_RTOL,
            );
          }
        } finally {
          await step.release();
        }
      });
    });

    Deno.test(`${model}/${v}: a merged ONNX export run in plain onnxruntime gives PyTorch's merged logits within 1e-5`, async () => {
      const golden = await readGolden(model);
      await withModel(model, async (m) => {
        await withTempDir(async (dir) => {
          const out = `${dir}/merged.onnx`;
          const { report } = await exportAdapter(m, await loadVariant(model, v), { out });
          assertEquals(report?.verdict, "pass", "parity verdict");
          const y = await runOriginal(out, inputs(golden));
          checkClose(
            "merged logits",
            y["logits"]!.data as Float32Array,
            get(golden, `${v}.merged.logits`),
          );
        });
      });
    });
  }
}
