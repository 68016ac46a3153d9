/**
 * Training trajectories against PyTorch's: from the same initial adapter and batch order,
 * `finetune()` takes 20 SGD or AdamW steps and its per-step losses equal the ones
 * `fixtures/golden/make_trajectories.py` recorded with torch.optim (PyTorch 1.13), for LoRA,
 * rsLoRA and DoRA, on a GELU MLP (float32 weights, cross-entropy) and a LLaMA SwiGLU block
 * (bfloat16 weights, MSE). See the script for the models and PEFT's formulas written in torch.
 *
 * Each case folder holds the initial adapter in PEFT's format (passed as `initAdapter`) and
 * `expected.safetensors`: the float64 run's losses and final adapter, and the float32 run's losses.
 * Errors: a loss by its relative error, an adapter tensor by `max|ffwd − torch| / max|torch|`.
 */

import { assert, assertEquals, relError } from "./_assert.ts";
import { defaultPeftConfig } from "../adapters/config.ts";
import { finetune } from "../workflows/finetune.ts";
import { peftKeys } from "../src/lora/branch.ts";
import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import type { Tensor } from "../src/tensor.ts";
import type { Dataset } from "../src/data/dataset.ts";
import type { OptimizerName } from "../src/train/optim.ts";

const ROOT = new URL("../fixtures/golden/trajectories/", import.meta.url).pathname;
const MODELS = ["gelu_mlp", "swiglu"] as const;
const KINDS = ["lora", "rslora", "dora"] as const;
const OPTIMIZERS = ["sgd", "adamw"] as const;
/** Per-step loss, relative. */
const LOSS_RTOL = 1e-5;
/** Final adapter tensors, relative to the tensor's largest value. */
const ADAPTER_RTOL = 1e-4;

interface Expected {
  readonly tensors: Map<string, Tensor>;
  readonly meta: Readonly<Record<string, string>>;
}

async function readExpected(model: string, kind: string, optimizer: string): Promise<Expected> {
  const { tensors, metadata } = await readSafetensors(
    `${ROOT}${model}/${kind}_${optimizer}/expected.safetensors`,
  );
  return { tensors, meta: metadata };
}

function get(tensors: Map<string, Tensor>, key: string): Tensor {
  const t = tensors.get(key);
  if (!t) throw new TypeError(`Golden file has no tensor "${key}"`);
  return t;
}

async function readData(model: string): Promise<Dataset> {
  const { tensors } = await readSafetensors(`${ROOT}${model}/data.safetensors`);
  const x = get(tensors, "x");
  const [rows, width] = x.shape as [number, number];
  const labels = tensors.get("labels");
  const y = labels ? { kind: "labels" as const, data: labels.data as BigInt64Array } : {
    kind: "targets" as const,
    data: get(tensors, "targets").data as Float32Array,
    width: get(tensors, "targets").shape[1]!,
  };
  return { rows, width, x: x.data as Float32Array, y };
}

/** Relative error of each step's loss. */
function lossErrors(ours: readonly number[], torch: ArrayLike<number>): number[] {
  assertEquals(ours.length, torch.length, "number of steps");
  return ours.map((l, i) => Math.abs(l - torch[i]!) / Math.abs(torch[i]!));
}

/** Runs `finetune()` on one case; returns its per-step losses and final adapter tensors. */
async function trainCase(
  model: string,
  kind: string,
  optimizer: OptimizerName,
  meta: Readonly<Record<string, string>>,
): Promise<{ losses: number[]; adapter: Map<string, Float32Array> }> {
  const base = await openSafetensorsModel(`${ROOT}${model}/model.safetensors`);
  const outDir = await Deno.makeTempDir({ prefix: "ffwd_trajectory_" });
  try {
    const layers = meta["layers"]!.split(",");
    const config = defaultPeftConfig({
      r: Number(meta["r"]),
      loraAlpha: Number(meta["lora_alpha"]),
      targetModules: layers.map((l) => l.split(".").pop()!),
      useRslora: kind === "rslora",
      useDora: kind === "dora",
    });
    const steps = Number(meta["steps"]);
    const batchSize = Number(meta["batch_size"]);
    const result = await finetune(base, await readData(model), {
      config,
      loss: meta["loss"] === "mse" ? "mse" : "cross_entropy",
      outDir,
      optimizer,
      optimizerOptions: { weightDecay: Number(meta["weight_decay"]) },
      lr: Number(meta["lr"]),
      batchSize,
      shuffle: false,
      maxSteps: steps,
      epochs: steps * batchSize / Number(meta["rows"]),
      initAdapter: `${ROOT}${model}/${kind}_${optimizer}`,
      seed: 0,
    });
    assertEquals(result.steps, steps, "steps taken");
    const lines = (await Deno.readTextFile(`${outDir}/metrics.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l) as { step: number; loss: number; eval?: true });
    const losses = lines.filter((l) => !l.eval).map((l) => l.loss);
    const adapter = new Map<string, Float32Array>();
    for (const [name, t] of result.adapter.layers) {
      const k = peftKeys(name);
      adapter.set(k.A, t.A.data as Float32Array);
      adapter.set(k.B, t.B.data as Float32Array);
      if (t.magnitude) adapter.set(k.magnitude, t.magnitude.data as Float32Array);
    }
    return { losses, adapter };
  } finally {
    base.close();
    await Deno.remove(outDir, { recursive: true });
  }
}

// The same four batches open and close the run (20 steps are 5 epochs), so the means compare.
Deno.test("golden trajectories learn: the last epoch's mean loss is 5% below the first's", async () => {
  for (const model of MODELS) {
    for (const kind of KINDS) {
      for (const optimizer of OPTIMIZERS) {
        const { tensors, meta } = await readExpected(model, kind, optimizer);
        const losses = [...(get(tensors, "losses").data as Float64Array)];
        const perEpoch = Number(meta["rows"]) / Number(meta["batch_size"]);
        const mean = (l: number[]) => l.reduce((a, b) => a + b, 0) / l.length;
        const drop = 1 - mean(losses.slice(-perEpoch)) / mean(losses.slice(0, perEpoch));
        assert(drop > 0.05, `${model}/${kind}_${optimizer}: the mean loss only fell by ${drop}`);
      }
    }
  }
});

Deno.test("PyTorch's float32 trajectories agree with its float64 ones within 1e-5 relative", async () => {
  for (const model of MODELS) {
    for (const kind of KINDS) {
      for (const optimizer of OPTIMIZERS) {
        const { tensors } = await readExpected(model, kind, optimizer);
        const f32 = [...(get(tensors, "losses_f32").data as Float64Array)];
        const err = Math.max(...lossErrors(f32, get(tensors, "losses").data as Float64Array));
        assert(err <= LOSS_RTOL, `${model}/${kind}_${optimizer}: relative error ${err}`);
      }
    }
  }
});

for (const model of MODELS) {
  for (const kind of KINDS) {
    for (const optimizer of OPTIMIZERS) {
      Deno.test(`${kind} on ${model} with ${optimizer}: 20 per-step losses equal PyTorch's within 1e-5 relative`, async () => {
        const { tensors, meta } = await readExpected(model, kind, optimizer);
        assertEquals([meta["kind"], meta["optimizer"]], [kind, optimizer]);
        const ours = await trainCase(model, kind, optimizer, meta);
        for (const key of ["losses", "losses_f32"]) {
          const errs = lossErrors(ours.losses, get(tensors, key).data as Float64Array);
          const worst = errs.reduce((a, e, i) => (e > errs[a]! ? i : a), 0);
          assert(
            errs[worst]! <= LOSS_RTOL,
            `step ${worst + 1}: loss ${ours.losses[worst]}, PyTorch's (${key}) ${
              get(tensors, key).data[worst]
            }, relative error ${errs[worst]}`,
          );
        }
        for (const [key, got] of ours.adapter) {
          const err = relError(got, get(tensors, key).data as Float64Array);
          assert(
            err <= ADAPTER_RTOL,
            `final ${key}: relative error ${err} exceeds ${ADAPTER_RTOL}`,
          );
        }
        const keys = [...tensors.keys()].filter((k) => k.startsWith("base_model."));
        assertEquals(ours.adapter.size, keys.length, "number of adapter tensors");
      });
    }
  }
}
