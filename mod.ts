/**
 * ffwd: fine-tune pretrained feedforward blocks with low-rank adapters, in Deno.
 *
 * Open a base (ONNX, safetensors with HF layouts, TF.js), load data for it, train LoRA / rsLoRA /
 * DoRA adapters with ffwd's reverse-mode autograd compiled to ONNX, save them in PEFT's format,
 * merge and export them with a parity report, and serve one base with hot-swapped adapters.
 *
 * The exports by use (the types a function takes and returns are exported beside it):
 *
 * - Opening models: `openModel` opens any base as a `BaseModel` (its `inputs`, `outputs` and
 *   linear `layers`); `inspectOnnx` and `inspectSafetensors` describe a file; `initModel`
 *   writes a new model from a block spec (`ffwd init`), seeded as `torch.nn.Linear` is.
 * - Data: `loadDataset(path, { model })` reads JSONL, CSV or safetensors training data for a
 *   model, `loadInputs` inputs alone; `splitDataset`, `saveDatasetSafetensors`, `writeJsonl`;
 *   `Tensor`, `tensor`, `toFloat32`, `readSafetensors`, `writeSafetensors`, `writeFileAtomic`.
 * - Training: `finetune(model, data, options)`, into a run folder (`outDir`) or in memory;
 *   `TRAIN_DEFAULTS`; `readTrainConfig` and `parseTrainConfig` for `ffwd train --config` files;
 *   `readCheckpoint`.
 * - Adapters: `loadAdapter` (PEFT, MLX or ffwd folders), `savePeftAdapter`, `defaultPeftConfig`,
 *   `readPeftConfig`, `parsePeftConfig`, `matchAdapter`, `inspectAdapter`, `combineAdapters`.
 * - Merge and export: `exportAdapter` writes the base with an adapter merged (ONNX or
 *   safetensors) and checks it with a parity report (`ParityError` when it fails);
 *   `mergeCheckpoint` merges an adapter into a whole safetensors checkpoint (sharded too), every
 *   targeted weight found by key, checked against float64; `writeReport` and `renderReport` make a run's HTML report.
 * - Serving: `InferenceEngine` (one base, an adapter chosen per row, hot-swapped),
 *   `engineWeights`, `serve` (HTTP).
 * - The engine, for extension: `Graph`, `Value`, `ops`, `grad`, `Session`, `saveOnnx`,
 *   `gradcheck`; `buildAdapted`, `TrainStep` and `train` for a training loop of your own.
 *
 * Lower-level pieces (the merge kernels and `deltaWeight`, the openers of each format, the
 * training options' resolution) stay importable from their own modules.
 *
 * @example Train an adapter in memory and serve it
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import {
 *   defaultPeftConfig,
 *   engineWeights,
 *   finetune,
 *   InferenceEngine,
 *   loadDataset,
 *   openModel,
 * } from "./mod.ts";
 *
 * const model = await openModel("fixtures/mnist/base.safetensors"); // 784 → 10
 * const path = (await Deno.makeTempDir()) + "/train.jsonl";
 * const row = (y: number) => JSON.stringify({ x: new Array(784).fill(y / 10), y }) + "\n";
 * await Deno.writeTextFile(path, row(3) + row(7));
 * const data = await loadDataset(path, { model }); // rows of 784 values, as the model takes
 * const { adapter, steps } = await finetune(model, data, {
 *   config: defaultPeftConfig({ r: 8, loraAlpha: 16, targetModules: ["fc1", "fc2", "fc3"] }),
 *   loss: "cross_entropy",
 *   epochs: 5,
 * });
 * const engine = await InferenceEngine.create(model);
 * await engine.register("digits", engineWeights(adapter, model));
 * const logits = await engine.run(
 *   { dtype: "F32", shape: [1, 784], data: new Float32Array(784) },
 *   "digits",
 * );
 * deepStrictEqual([steps, logits.shape], [5, [1, 10]]);
 * await engine.close();
 * model.close();
 * ```
 *
 * @example Adapter folders: save, load, inspect
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { inspectAdapter, loadAdapter, readPeftConfig, savePeftAdapter } from "./mod.ts";
 *
 * const adapter = await loadAdapter("fixtures/peft/mlp_lora"); // written by PEFT
 * const dir = (await Deno.makeTempDir()) + "/copy";
 * await savePeftAdapter(dir, adapter);
 * const config = await readPeftConfig(`${dir}/adapter_config.json`);
 * const summary = await inspectAdapter(dir);
 * deepStrictEqual([config.r, summary.kind, summary.parameters], [4, "peft", 115]);
 * ```
 *
 * @example A gradient from the engine alone
 * ```ts
 * import { ok } from "node:assert/strict";
 * import { grad, Graph, ops, Session, type Tensor, toFloat32 } from "./mod.ts";
 *
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4]);
 * const w = g.input("w", "F32", [3, 4]);
 * const labels = g.input("labels", "I64", ["batch"]);
 * const loss = ops.crossEntropy(ops.gemm(x, w, null, { transB: true }), labels);
 * const [dw] = grad(loss, [w]);
 * g.output(loss);
 * g.output(dw!);
 * const session = await Session.compile(g);
 * const out = await session.run({
 *   x: { dtype: "F32", shape: [2, 4], data: new Float32Array(8).fill(1) },
 *   w: { dtype: "F32", shape: [3, 4], data: new Float32Array(12) },
 *   labels: { dtype: "I64", shape: [2], data: new BigInt64Array([0n, 2n]) },
 * });
 * // Zero weights: a uniform softmax, so the loss is ln 3 and row c of dW is the mean over the
 * // rows of (1/3 − [label = c]) · x.
 * const near = (t: Tensor, want: number[]) =>
 *   want.every((v, i) => Math.abs(toFloat32(t).data[i]! - v) < 1e-6);
 * ok(near(out[loss.name]!, [Math.log(3)]));
 * ok(near(out[dw!.name]!, [-1 / 6, 1 / 3, -1 / 6].flatMap((v) => [v, v, v, v])));
 * await session.release();
 * ```
 *
 * @module
 */

// Opening models
export { openModel, type OpenModelOptions } from "./src/models/open.ts";
export type {
  BaseModel,
  BuildOptions,
  Built,
  LinearHook,
  LinearLayer,
  LinearSite,
  ModelIO,
  Orientation,
} from "./src/models/model.ts";
export { inspectOnnx, type OnnxSummary } from "./src/models/onnx/inspect.ts";
export {
  type InitLayer,
  initModel,
  type InitModelOptions,
  type InitModelResult,
  type OpensWith,
} from "./workflows/init_model.ts";
export type { BlockSpec } from "./src/models/blocks/spec.ts";
export {
  inspectSafetensors,
  type LazyTensor,
  type MetadataInput,
  type NamedTensor,
  readSafetensors,
  type SafetensorsContents,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type SafetensorsSummary,
  type TensorCollection,
  type TensorInput,
  writeSafetensors,
  type WriteSafetensorsOptions,
} from "./src/io/safetensors.ts";

// Data
export {
  type DataOf,
  type DType,
  DTYPES,
  type Tensor,
  tensor,
  type TensorData,
  toFloat32,
} from "./src/tensor.ts";
export { type AtomicWriteOptions, type ByteSource, writeFileAtomic } from "./src/fs/atomic.ts";
export { type Dataset, type RowTensor, splitDataset } from "./src/data/dataset.ts";
export type { InputSpec } from "./src/data/feeds.ts";
export {
  type DataFormat,
  type DataInputs,
  loadDataset,
  type LoadDatasetOptions,
  loadInputs,
  type LoadInputsOptions,
  saveDatasetSafetensors,
  writeJsonl,
} from "./src/data/files.ts";

// Training
export {
  finetune,
  type FinetuneOptions,
  type FinetuneResult,
  type FinetuneSummary,
  type PrefixCacheStats,
  readCheckpoint,
} from "./workflows/finetune.ts";
export { TRAIN_DEFAULTS } from "./workflows/train_options.ts";
export { parseTrainConfig, readTrainConfig, type TrainConfig } from "./workflows/train_config.ts";
export type {
  BestEval,
  EvalResult,
  MetricLine,
  TrainerHooks,
  TrainerOptions,
  TrainerState,
} from "./src/train/trainer.ts";
export type { OptimizerName, OptimizerOptions, OptimizerState } from "./src/train/optim.ts";
export type { ScheduleName } from "./src/train/schedule.ts";
export type { LossName } from "./src/lora/adapted.ts";
export type { RngState } from "./src/rng.ts";

// Adapters
export {
  type Adapter,
  type AdapterKind,
  type AdapterLayer,
  type AdapterMatch,
  loadAdapter,
  matchAdapter,
  type MatchOptions,
  type ShapeMismatch,
} from "./adapters/adapter.ts";
export { savePeftAdapter, type SavePeftOptions } from "./adapters/peft.ts";
export type { LoadMlxOptions } from "./adapters/mlx.ts";
export {
  defaultPeftConfig,
  type JsonValue,
  parsePeftConfig,
  type PeftConfig,
  readPeftConfig,
} from "./adapters/config.ts";
export type { AdapterInputs, LayerAdapter } from "./src/lora/branch.ts";
export { type AdapterSummary, inspectAdapter } from "./workflows/inspect.ts";
export {
  combineAdapters,
  type Combined,
  type CombineMethod,
  type CombineOptions,
} from "./workflows/combine.ts";

// Merge and export
export {
  exportAdapter,
  exportFile,
  type ExportFormat,
  type ExportMode,
  type ExportOptions,
  type ExportResult,
} from "./workflows/export.ts";
export {
  largestError,
  type PairResult,
  ParityError,
  type ParityReport,
  parityReportName,
  type Tolerance,
} from "./workflows/parity.ts";
export {
  CheckpointCheckError,
  type CheckpointMergeOptions,
  type CheckpointMergeResult,
  type CheckpointReport,
  isCheckpoint,
  mergeCheckpoint,
  type TensorCheck,
} from "./workflows/merge_checkpoint.ts";
export {
  renderReport,
  type ReportOptions,
  type ScaleKind,
  type ScaleMode,
  writeReport,
} from "./report/html.ts";

// Serving
export { adapterWeights, engineWeights } from "./adapters/weights.ts";
export {
  type AdapterLoader,
  type AdapterSnapshot,
  type AdapterWeights,
  type EngineOptions,
  type EngineStats,
  InferenceEngine,
  type LayerWeights,
  type SnapshotLayer,
} from "./src/infer/engine.ts";
export { serve, type ServeOptions, type Server, type WeightsLoader } from "./src/infer/server.ts";
export type { BatcherOptions } from "./src/infer/batcher.ts";
export type { Counter, Histogram, Labels, ServerMetrics } from "./src/infer/metrics.ts";

// The engine, for extension
export {
  type Attr,
  type Dim,
  type ExternalTensor,
  Graph,
  type InitData,
  type Node,
  type OutputSpec,
  type Shape,
  Value,
  type ValueKind,
} from "./src/engine/graph.ts";
export { grad, type GradOptions } from "./src/engine/autograd.ts";
export { type PrepackCacheUse, Session, type SessionOptions } from "./src/engine/runtime.ts";
export { type EmitOptions, type SavedOnnx, saveOnnx, type SaveOptions } from "./src/engine/emit.ts";
export {
  type CheckInput,
  gradcheck,
  type GradcheckOptions,
  type GradcheckResult,
} from "./src/engine/gradcheck.ts";
/**
 * The op builders of the engine (`ops.gemm`, `ops.gelu`, `ops.layerNorm`, `ops.crossEntropy`,
 * …): each adds a node to a {@link Graph} with its shape, and has the vector-Jacobian product
 * {@link grad} uses.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { Graph, ops } from "./mod.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4]);
 * const w = g.input("w", "F32", [3, 4]);
 * deepStrictEqual(ops.relu(ops.gemm(x, w, null, { transB: true })).shape, ["batch", 3]);
 * ```
 */
export * as ops from "./src/engine/ops/mod.ts";
export { type AdaptedGraph, buildAdapted, type BuildAdaptedOptions } from "./src/lora/adapted.ts";
export { type StepResult, type StepSpec, TrainStep } from "./src/train/step.ts";
export { type MaskInput, train, type TrainOptions, type TrainResult } from "./src/train/trainer.ts";
