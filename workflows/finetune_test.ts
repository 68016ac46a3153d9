import { assert, assertEquals, assertRejects } from "../tests/_assert.ts";
import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import { InferenceEngine } from "../src/infer/engine.ts";
import { Graph } from "../src/engine/graph.ts";
import { Session } from "../src/engine/runtime.ts";
import { Rng } from "../src/rng.ts";
import type { Dataset } from "../src/data/dataset.ts";
import { type Adapter, loadAdapter } from "../adapters/adapter.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { castFloat, type Tensor, toFloat32 } from "../src/tensor.ts";
import { defaultPeftConfig } from "../adapters/config.ts";
import { finetune, readCheckpoint } from "./finetune.ts";
import { engineWeights } from "../adapters/weights.ts";

const MODEL = new URL("../fixtures/hf/fc_mlp/model.safetensors", import.meta.url).pathname;

/** Four classes from the signs of the first two inputs: learnable by a small adapter. */
function toyData(rows: number, seed = 1): Dataset {
  const rng = new Rng(seed);
  const x = rng.fillUniform(new Float32Array(rows * 8), -1, 1) as Float32Array;
  const data = BigInt64Array.from(
    { length: rows },
    (_, i) => BigInt((x[i * 8]! > 0 ? 1 : 0) + (x[i * 8 + 1]! > 0 ? 2 : 0)),
  );
  return { rows, width: 8, x, y: { kind: "labels", data } };
}

async function baseOutput(x: Float32Array, rows: number): Promise<Float32Array> {
  const model = await openSafetensorsModel(MODEL);
  const g = new Graph();
  const built = model.build(g);
  g.output(built.outputs[0]!);
  const s = await Session.compile(g);
  const out = await s.run({ [built.inputs[0]!.name]: { dtype: "F32", shape: [rows, 8], data: x } });
  await s.release();
  return Object.values(out)[0]!.data as Float32Array;
}

const config = (extra = {}) =>
  defaultPeftConfig({ r: 4, loraAlpha: 8, targetModules: ["fc1", "fc2", "fc3"], ...extra });

Deno.test("finetune() learns a toy task and writes PEFT files, metrics and a summary", async () => {
  const dir = await Deno.makeTempDir();
  const model = await openSafetensorsModel(MODEL);
  const data = toyData(256);
  const r = await finetune(model, data, {
    config: config(),
    loss: "cross_entropy",
    outDir: dir,
    epochs: 12,
    batchSize: 32,
    lr: 1e-2,
    evalData: data,
  });
  assert(r.eval!.accuracy! > 0.9, `accuracy ${r.eval!.accuracy}`);
  for (
    const f of ["adapter_config.json", "adapter_model.safetensors", "metrics.jsonl", "summary.json"]
  ) {
    await Deno.stat(`${dir}/${f}`);
  }
  const lines = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assertEquals(lines.filter((l) => !l.eval).length, r.steps);
  assert(lines.every((l) => l.eval || (typeof l.loss === "number" && typeof l.lr === "number")));
  assertEquals(r.trainableParams, 4 * (8 + 16) + 4 * (16 + 16) + 4 * (16 + 4));
});

Deno.test("with B = 0 the adapted model equals the base, for LoRA and for DoRA at init", async () => {
  const rows = 5;
  const x = new Rng(9).fillUniform(new Float32Array(rows * 8), -1, 1) as Float32Array;
  const base = await baseOutput(x, rows);
  for (const useDora of [false, true]) {
    const dir = await Deno.makeTempDir();
    const model = await openSafetensorsModel(MODEL);
    // lr = 0: the saved adapter is the initial one (A random, B zero, magnitude = row norms).
    await finetune(model, toyData(16), {
      config: config({ useDora }),
      loss: "cross_entropy",
      outDir: dir,
      lr: 0,
      maxSteps: 1,
    });
    const adapter = await loadAdapter(dir);
    const engine = await InferenceEngine.create(model);
    await engine.register("a", engineWeights(adapter, model));
    const y = (await engine.run({ dtype: "F32", shape: [rows, 8], data: x }, "a"))
      .data as Float32Array;
    await engine.close();
    y.forEach((v, i) =>
      assert(
        Math.abs(v - base[i]!) <= 1e-6 * Math.max(1, Math.abs(base[i]!)),
        `dora=${useDora} [${i}]: ${v} vs ${base[i]}`,
      )
    );
  }
});

Deno.test("100 steps in one run and 50 + resume 50 give byte-identical adapters", async () => {
  const data = toyData(96);
  const common = {
    config: config({ loraDropout: 0.1 }),
    loss: "cross_entropy" as const,
    batchSize: 16,
    lr: 5e-3,
    maxSteps: 100,
    schedule: "cosine" as const,
    warmupSteps: 10,
    seed: 3,
    epochs: 100,
  };
  const full = await Deno.makeTempDir();
  await finetune(await openSafetensorsModel(MODEL), data, { ...common, outDir: full });
  const half = await Deno.makeTempDir();
  await finetune(await openSafetensorsModel(MODEL), data, {
    ...common,
    outDir: half,
    stopAfter: 50,
  });
  await finetune(await openSafetensorsModel(MODEL), data, {
    ...common,
    outDir: half,
    resume: half,
  });
  const a = await Deno.readFile(`${full}/adapter_model.safetensors`);
  const b = await Deno.readFile(`${half}/adapter_model.safetensors`);
  assertEquals(a.length, b.length);
  assert(a.every((v, i) => v === b[i]), "adapters differ");
  const steps = (dir: string) =>
    Deno.readTextFileSync(`${dir}/metrics.jsonl`).trim().split("\n").map((l) => JSON.parse(l))
      .filter((l) => !l.eval).map((l) => l.loss);
  assertEquals(steps(half), steps(full));
});

Deno.test("a step that produces NaN stops training naming the step, and the last checkpoint stays intact", async () => {
  const dir = await Deno.makeTempDir();
  const model = await openSafetensorsModel(MODEL);
  const err = await assertRejects(
    () =>
      finetune(model, toyData(64), {
        config: config(),
        loss: "cross_entropy",
        outDir: dir,
        epochs: 50,
        batchSize: 16,
        optimizer: "sgd",
        lr: 1e36,
        checkpointEvery: 1,
      }),
  );
  assert(/Training stopped at step \d+: .* is not finite/.test(String(err)), String(err));
  const step = Number(/step (\d+)/.exec(String(err))![1]);
  const state = JSON.parse(
    (await import("../src/io/safetensors.ts").then((m) =>
      m.readSafetensors(`${dir}/checkpoint/trainer_state.safetensors`)
    ))
      .metadata["ffwd_trainer_state"]!,
  );
  assertEquals(state.step, step - 1);
  await loadAdapter(`${dir}/checkpoint`);
});

Deno.test("a target that matches nothing is an error listing the available layers", async () => {
  const model = await openSafetensorsModel(MODEL);
  await assertRejects(
    () =>
      finetune(model, toyData(8), {
        config: config({ targetModules: ["q_proj"] }),
        loss: "cross_entropy",
        outDir: Deno.makeTempDirSync(),
      }),
    RangeError,
    "available layers: fc1, fc2, fc3",
  );
});

Deno.test("save → load → forward is identical", async () => {
  const dir = await Deno.makeTempDir();
  const model = await openSafetensorsModel(MODEL);
  const r = await finetune(model, toyData(64), {
    config: config({ useDora: true }),
    loss: "cross_entropy",
    outDir: dir,
    epochs: 2,
    lr: 1e-2,
  });
  const loaded = await loadAdapter(dir);
  const engine = await InferenceEngine.create(model);
  const x = {
    dtype: "F32" as const,
    shape: [4, 8],
    data: new Rng(2).fillUniform(new Float32Array(32), -1, 1) as Float32Array,
  };
  await engine.register("mem", engineWeights(r.adapter, model));
  await engine.register("file", engineWeights(loaded, model));
  const a = (await engine.run(x, "mem")).data;
  const b = (await engine.run(x, "file")).data;
  await engine.close();
  assertEquals([...a], [...b]);
});

Deno.test("bias and modules_to_save are trained, saved in PEFT's layout, and merge with parity", async () => {
  const { exportAdapter } = await import("./export.ts");
  const dir = await Deno.makeTempDir();
  const model = await openSafetensorsModel(MODEL);
  const before = await model.readTensor("fc1.bias");
  await finetune(model, toyData(64), {
    config: config({ targetModules: ["fc1", "fc2"], bias: "lora_only", modulesToSave: ["fc3"] }),
    loss: "cross_entropy",
    outDir: dir,
    epochs: 3,
    lr: 1e-2,
  });
  const adapter = await loadAdapter(dir);
  assertEquals([...adapter.biases.keys()].sort(), ["fc1", "fc2"]);
  assertEquals([...adapter.extra.keys()].sort(), ["fc3.bias", "fc3.weight"]);
  const trained = adapter.biases.get("fc1")!.data as Float32Array;
  assert(
    trained.some((v, i) => v !== (before.data as Float32Array)[i]),
    "fc1's bias did not change",
  );
  const out = `${dir}/merged.onnx`;
  const { report } = await exportAdapter(model, adapter, { out });
  assertEquals(report!.verdict, "pass");
});

Deno.test("finetune() names a bad training config's field", async () => {
  const model = await openSafetensorsModel(MODEL);
  await assertRejects(
    () => finetune(model, toyData(8), { trainConfig: { rank: 0 }, outDir: "unused" }),
    TypeError,
    'Invalid training config "trainConfig": field "rank"',
  );
});

Deno.test("finetune() in memory returns the adapter, metric lines and summary a run folder holds", async () => {
  const options = {
    config: config(),
    loss: "cross_entropy" as const,
    batchSize: 16,
    epochs: 3,
    lr: 1e-2,
    evalSplit: 0.25,
  };
  const dir = await Deno.makeTempDir();
  await finetune(await openSafetensorsModel(MODEL), toyData(64), { ...options, outDir: dir });
  const r = await finetune(await openSafetensorsModel(MODEL), toyData(64), options);
  const saved = await loadAdapter(dir);
  for (const [name, { A, B }] of saved.layers) {
    const mem = r.adapter.layers.get(name)!;
    assertEquals([[...mem.A.data], [...mem.B.data]], [[...A.data], [...B.data]], name);
  }
  const timeless = (v: unknown) =>
    JSON.parse(JSON.stringify(v, (k, x) => (k === "seconds" || k === "samples_per_s" ? 0 : x)));
  const lines = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n");
  assertEquals(timeless(r.metrics), timeless(lines.map((l) => JSON.parse(l))));
  assert(r.metrics.some((l) => "eval" in l && l.confusion?.length === 4), "no confusion matrix");
  const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
  assertEquals(timeless(r.summary), timeless(summary));
});

Deno.test({
  name: "finetune() without an output folder writes nothing, and refuses checkpoints and a report",
  permissions: { read: true, env: true, ffi: true, sys: true, write: false },
  fn: async () => {
    const model = await openSafetensorsModel(MODEL);
    const options = { config: config(), batchSize: 16, evalSplit: 0.25, saveBest: true };
    const r = await finetune(model, toyData(32), options);
    assertEquals([r.steps, r.adapter.name, r.summary.steps], [2, "adapter", 2]);
    for (
      const [extra, says] of [
        [{ checkpointEvery: 1 }, "Cannot write checkpoints (--checkpoint-every 1) without"],
        [{ report: true }, "Cannot write the report without an output folder: pass outDir"],
      ] as const
    ) {
      await assertRejects(
        () => finetune(model, toyData(32), { ...options, ...extra }),
        TypeError,
        says,
      );
    }
    await assertRejects(
      () => finetune(model, toyData(32), { ...options, outDir: "" }),
      TypeError,
      'Cannot write the run to "": outDir is empty',
    );
    await assertRejects(
      () => finetune(model, toyData(32), { config: config(), saveBest: true }),
      TypeError,
      "Cannot train with --save-best: it keeps the adapter of the evaluation with the lowest loss",
    );
    model.close();
  },
});

/** Trains on 16 rows long enough to overfit: the eval loss is lowest at epoch 2 of 6. */
const overfit = {
  config: config(),
  loss: "cross_entropy" as const,
  batchSize: 8,
  epochs: 6,
  lr: 0.05,
  evalData: toyData(32, 2),
  saveBest: true,
};

Deno.test("with saveBest the saved adapter is the best epoch's: its eval loss recomputed equals the best logged", async () => {
  const dir = await Deno.makeTempDir();
  const r = await finetune(await openSafetensorsModel(MODEL), toyData(16), {
    ...overfit,
    outDir: dir,
  });
  const evals = r.metrics.filter((l) => "eval" in l);
  const lowest = Math.min(...evals.map((l) => l.loss));
  assertEquals(r.best, { loss: lowest, step: 4, epoch: 2 });
  assert(evals.at(-1)!.loss > lowest, "the last epoch is the best: the test shows nothing");
  assertEquals(JSON.parse(await Deno.readTextFile(`${dir}/summary.json`)).best, r.best);
  // One epoch at lr 0 from the saved adapter evaluates it unchanged.
  const again = await finetune(await openSafetensorsModel(MODEL), toyData(16), {
    ...overfit,
    saveBest: false,
    initAdapter: dir,
    lr: 0,
    epochs: 1,
  });
  assertEquals(again.eval!.loss, lowest);
});

Deno.test("warm-starting from a BF16-saved adapter starts where its F32 copy does", async () => {
  const trained = await Deno.makeTempDir();
  await finetune(await openSafetensorsModel(MODEL), toyData(16), { ...overfit, outDir: trained });
  const each = (a: Adapter, f: (t: Tensor) => Tensor): Adapter => ({
    ...a,
    layers: new Map([...a.layers].map(([name, l]) => [name, { A: f(l.A), B: f(l.B) }])),
  });
  const bf16 = each(await loadAdapter(trained), (t) => castFloat(toFloat32(t), "BF16"));
  const dirs = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  await savePeftAdapter(dirs[0]!, bf16);
  await savePeftAdapter(dirs[1]!, each(bf16, toFloat32));
  assertEquals((await loadAdapter(dirs[0]!)).layers.get("fc1")!.B.dtype, "BF16");
  // lr = 0: the adapter each run saves is the one it started from.
  const starts = [];
  for (const initAdapter of dirs) {
    const outDir = await Deno.makeTempDir();
    await finetune(await openSafetensorsModel(MODEL), toyData(16), {
      ...overfit,
      saveBest: false,
      initAdapter,
      outDir,
      lr: 0,
      epochs: 1,
    });
    starts.push((await loadAdapter(outDir)).layers);
  }
  assert(starts[1]!.get("fc1")!.B.data.some((v) => v !== 0), "B is zero: the test shows nothing");
  assertEquals(starts[0], starts[1]);
  assertEquals(starts[1]!.get("fc1")!.B, toFloat32(bf16.layers.get("fc1")!.B));
});

Deno.test("with saveBest a run interrupted after its best epoch resumes to the same best adapter", async () => {
  const full = await Deno.makeTempDir();
  const r = await finetune(await openSafetensorsModel(MODEL), toyData(16), {
    ...overfit,
    outDir: full,
  });
  const cut = await Deno.makeTempDir();
  await finetune(await openSafetensorsModel(MODEL), toyData(16), {
    ...overfit,
    outDir: cut,
    stopAfter: 7,
  });
  // The checkpoint's adapter is the best so far; saveBest comes back from it.
  const best = await loadAdapter(`${cut}/checkpoint`);
  assertEquals(best.training?.best_step, 4);
  const { saveBest: _, ...rest } = overfit;
  const resumed = await finetune(await openSafetensorsModel(MODEL), toyData(16), {
    ...rest,
    outDir: cut,
    resume: cut,
  });
  assertEquals([resumed.best, r.best?.step], [r.best, 4]);
  const bytes = (dir: string) => Deno.readFileSync(`${dir}/adapter_model.safetensors`);
  assert(bytes(cut).every((v, i) => v === bytes(full)[i]), "adapters differ");
});

Deno.test("finetune() stops after the step in progress when its signal aborts, saves the run, and resumes to the uninterrupted end", async () => {
  const data = toyData(64);
  const common = {
    config: config({ loraDropout: 0.1 }),
    loss: "cross_entropy" as const,
    batchSize: 16,
    epochs: 6,
    lr: 5e-3,
    seed: 4,
    evalData: toyData(16, 2),
  };
  const full = await Deno.makeTempDir();
  await finetune(await openSafetensorsModel(MODEL), data, { ...common, outDir: full });
  const cut = await Deno.makeTempDir();
  const controller = new AbortController();
  const r = await finetune(await openSafetensorsModel(MODEL), data, {
    ...common,
    outDir: cut,
    signal: controller.signal,
    onMetric: (line) => void (!("eval" in line) && line.step === 8 && controller.abort()),
  });
  // Step 8 ends epoch 2: its evaluation is left to the resumed run.
  assertEquals([r.interrupted, r.steps, (await readCheckpoint(cut)).step], [true, 8, 8]);
  const summary = JSON.parse(await Deno.readTextFile(`${cut}/summary.json`));
  assertEquals([summary.interrupted, summary.steps], [true, 8]);
  await Deno.stat(`${cut}/report.html`);
  const resumed = await finetune(await openSafetensorsModel(MODEL), data, {
    ...common,
    outDir: cut,
    resume: cut,
  });
  assertEquals([resumed.interrupted, resumed.steps], [false, 24]);
  for (const file of ["adapter_model.safetensors", "metrics.jsonl"]) {
    const strip = (dir: string) =>
      Deno.readTextFileSync(`${dir}/${file}`).replace(/,"samples_per_s":[\d.e+-]+/g, "");
    assertEquals(strip(cut), strip(full), file);
  }
});

Deno.test("finetune() aborted before training starts writes nothing and rejects with the signal's reason", async () => {
  const model = await openSafetensorsModel(MODEL);
  const outDir = `${await Deno.makeTempDir()}/run`;
  const controller = new AbortController();
  controller.abort(new Error("stop"));
  await assertRejects(
    () =>
      finetune(model, toyData(16), {
        config: config(),
        outDir,
        signal: controller.signal,
      }),
    Error,
    "stop",
  );
  await assertRejects(() => Deno.stat(outDir), Deno.errors.NotFound);
});
