/**
 * `deno task example:tutorial`: the tutorial's §5 program through ffwd. A network 1 → 2 → 1 with
 * ReLU, made from a block spec and initialised as PyTorch initialises `nn.Linear` (seed 0), is
 * trained from scratch, every weight and bias and no adapter (`full`), with binary cross-entropy
 * and Adam for 1,000 epochs on x = [[0], [1]], y = [[0], [1]], the loss printed every 100 epochs.
 * The trained layers are merged into an ONNX file with its parity report, which predicts; the
 * report plots actual against predicted.
 *
 * Everything goes under `runs/examples/tutorial/`: `spec.json` and `data.jsonl` (for the command
 * line), `model.safetensors` (the initial model), `adapter/` (the trained layers: a PEFT folder
 * with no adapter and every layer in `modules_to_save`; its metrics and training report),
 * `report.html` (that report with the predictions plotted), `merged.onnx` with its parity report `merged.onnx.parity.json`, and
 * `summary.json`. The same with the command line, from the repository's root, gives the same
 * numbers:
 *
 * ```sh
 * D=runs/examples/tutorial C=runs/cli
 * deno task ffwd init --spec $D/spec.json --seed 0 --out $C/model.safetensors
 * deno task ffwd train --model $C/model.safetensors --data $D/data.jsonl --out $C/trained \
 *   --full --loss bce --optimizer adam --lr 0.01 --epochs 1000 --batch-size 2 --no-shuffle
 * deno task ffwd export --model $C/model.safetensors --adapter $C/trained --format onnx \
 *   --out $C/model.onnx
 * deno task ffwd predict --model $C/model.onnx --data $D/data.jsonl --json  # logits
 * ```
 *
 * The program in PyTorch, for comparison (README's Examples section gives what it prints for
 * seeds 0 to 4; PyTorch's generator draws other initial weights than ffwd's):
 *
 * ```python
 * import torch, torch.nn as nn
 * torch.manual_seed(1)
 * model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
 * x, y = torch.tensor([[0.], [1.]]), torch.tensor([[0.], [1.]])
 * opt, loss_fn = torch.optim.Adam(model.parameters(), lr=0.01), nn.BCEWithLogitsLoss()
 * for epoch in range(1, 1001):
 *     opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
 *     if epoch % 100 == 0: print(epoch, loss.item())
 * print(torch.sigmoid(model(x)))
 * ```
 *
 * @module
 */

import { type Dataset, finetune, openModel, writeFileAtomic } from "../mod.ts";
import type { BlockSpec } from "../src/models/blocks/spec.ts";
import { initModel } from "../workflows/init_model.ts";
import {
  exportMerged,
  log,
  predictionsCard,
  printRows,
  ROOT,
  shown,
  withCard,
  withEngine,
} from "./_shared.ts";

/** The network: 1 → 2 → 1, ReLU between the layers, a logit out (the loss applies the sigmoid). */
export const SPEC: BlockSpec = {
  form: "sequential",
  layers: [
    { name: "fc1", in_features: 1, out_features: 2, activation: "relu" },
    { name: "fc2", in_features: 2, out_features: 1 },
  ],
};

/** The data: x = [[0], [1]], y = [[0], [1]]. */
export const DATA: Dataset = {
  rows: 2,
  width: 1,
  x: new Float32Array([0, 1]),
  y: { kind: "targets", width: 1, data: new Float32Array([0, 1]) },
};

/** Binary cross-entropy, Adam, 1,000 epochs of the whole data in order. */
const TRAINING = {
  full: true,
  loss: "bce",
  optimizer: "adam",
  lr: 0.01,
  epochs: 1000,
  batchSize: 2,
  shuffle: false,
  seed: 0,
} as const;

/** What the tutorial measured; `summary.json` holds it. */
export interface TutorialResult {
  /** The loss of the first and the last epoch. */
  readonly firstLoss: number;
  readonly finalLoss: number;
  /** The trained model's probability of y = 1 for each x, from the merged ONNX file. */
  readonly predicted: readonly number[];
  readonly parity: { pass: boolean; maxRel: number };
  readonly summary: Record<string, unknown>;
}

/** Runs the §5 program into `outDir` (default `runs/examples/tutorial`), printing as it goes. */
export async function runTutorial(
  outDir = `${ROOT}runs/examples/tutorial`,
): Promise<TutorialResult> {
  const t0 = performance.now();
  const dir = shown(outDir);
  await Deno.mkdir(outDir, { recursive: true });
  await writeText(`${outDir}/spec.json`, JSON.stringify(SPEC, null, 2) + "\n");
  const [xs, actual] = [[...DATA.x], [...DATA.y.data].map(Number)];
  const rows = xs.map((x, i) => JSON.stringify({ x: [x], y: [actual[i]] }) + "\n");
  await writeText(`${outDir}/data.jsonl`, rows.join(""));

  log("The tutorial's §5 network, 1 → 2 → 1 with ReLU, trained from scratch:");
  const init = await initModel(SPEC, `${outDir}/model.safetensors`, { seed: TRAINING.seed });
  log(`    ${dir}/model.safetensors: ${init.parameters} parameters, as torch.nn.Linear starts`);
  const model = await openModel(init.path);
  const start = performance.now();
  const trained = await finetune(model, DATA, {
    ...TRAINING,
    outDir: `${outDir}/adapter`,
    // the whole data is one batch: one step an epoch
    onMetric: (m) => {
      if (!("eval" in m) && m.step % 100 === 0) {
        log(`    epoch ${m.step}, loss ${m.loss.toFixed(4)}`);
      }
    },
  }).finally(() => model.close());
  const trainSeconds = (performance.now() - start) / 1000;

  const parity = await exportMerged(init.path, trained.adapter, `${outDir}/merged.onnx`);
  const logits = await withEngine(`${outDir}/merged.onnx`, undefined, async (engine) => {
    const out = await engine.run({ dtype: "F32", shape: [2, 1], data: DATA.x }, null);
    return [...out.data as Float32Array];
  });
  const predicted = logits.map((z) => 1 / (1 + Math.exp(-z))); // bce trained the logit
  const report = await Deno.readTextFile(`${outDir}/adapter/report.html`);
  await writeText(
    `${outDir}/report.html`,
    withCard(report, predictionsCard(xs, actual, predicted)),
  );

  const [firstLoss, finalLoss] = [trained.metrics[0]!.loss, trained.lastLoss];
  const summary = {
    first_loss: firstLoss,
    final_loss: finalLoss,
    predictions: xs.map((x, i) => ({ x, actual: actual[i], predicted: predicted[i] })),
    trainable_parameters: trained.trainableParams,
    train_seconds: round(trainSeconds),
    total_seconds: round((performance.now() - t0) / 1000),
    model: { path: `${dir}/model.safetensors`, spec: `${dir}/spec.json`, seed: init.seed },
    adapter: { path: `${dir}/adapter`, steps: trained.steps, ...TRAINING },
    parity: {
      file: `${dir}/merged.onnx`,
      report: `${dir}/merged.onnx.parity.json`,
      pass: parity.pass,
      max_rel: parity.maxRel,
    },
  };
  await writeText(`${outDir}/summary.json`, JSON.stringify(summary, null, 2) + "\n");

  printRows([
    ["x", "actual", "predicted"],
    ...xs.map((x, i) => [String(x), String(actual[i]), predicted[i]!.toFixed(4)]),
  ]);
  log(
    `loss ${firstLoss.toFixed(4)} → ${finalLoss.toFixed(4)} in ` +
      `${TRAINING.epochs.toLocaleString("en-US")} epochs ` +
      `(${trainSeconds.toFixed(1)} s), ${trained.trainableParams} trainable parameters; ` +
      `merged ONNX parity: ${parity.pass ? "PASS" : "FAIL"}; everything is in ${dir}/`,
  );
  return { firstLoss, finalLoss, predicted, parity, summary };
}

const round = (s: number) => Math.round(s * 1000) / 1000;

async function writeText(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(text));
}

if (import.meta.main) {
  const result = await runTutorial();
  if (!result.parity.pass) Deno.exit(1);
}
