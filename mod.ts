/**
 * ffwd: fine-tune pretrained feedforward blocks with low-rank adapters, in Deno.
 *
 * Load a base (ONNX, safetensors with HF layouts, TF.js), attach LoRA / rsLoRA / DoRA adapters,
 * train them with ffwd's reverse-mode autograd compiled to ONNX, save them in PEFT's format,
 * merge and export with a parity report, and serve one base with hot-swapped adapters.
 *
 * @example Train an adapter and serve it
 * ```ts ignore
 * import { defaultPeftConfig, engineWeights, finetune, InferenceEngine, loadDataset, openModel } from "./mod.ts";
 *
 * const model = await openModel("fixtures/mnist/base.safetensors");
 * const data = await loadDataset("train.jsonl", { width: 784 });
 * const { adapter } = await finetune(model, data, {
 *   config: defaultPeftConfig({ r: 8, loraAlpha: 16, targetModules: ["fc1", "fc2", "fc3"] }),
 *   loss: "cross_entropy",
 *   outDir: "runs/rot45",
 *   epochs: 5,
 * });
 * const engine = await InferenceEngine.create(model);
 * await engine.register("rot45", engineWeights(adapter, model));
 * ```
 *
 * @module
 */

// Tensors and files
export {
  castFloat,
  type DType,
  DTYPES,
  fromBytes,
  numel,
  type Tensor,
  tensor,
  toBytes,
  toFloat32,
} from "./src/tensor.ts";
export {
  inspectSafetensors,
  openSafetensors,
  readSafetensors,
  type SafetensorsFile,
  writeSafetensors,
} from "./src/io/safetensors.ts";
export { withAtomicFile, writeFileAtomic } from "./src/io/atomic.ts";
export { Rng, type RngState } from "./src/rng.ts";

// Base models
export type {
  BaseModel,
  BuildOptions,
  LinearHook,
  LinearLayer,
  LinearSite,
  Orientation,
} from "./src/model.ts";
export { openModel, type OpenModelOptions } from "./src/open_model.ts";
export { type OnnxModel, openOnnxModel } from "./src/io/onnx/import.ts";
export { inspectOnnx } from "./src/io/onnx/inspect.ts";
export { detectSafetensorsBlocks, openSafetensorsModel } from "./src/blocks/safetensors_model.ts";
export { openTfjsModel } from "./src/io/tfjs.ts";

// The engine
export { Graph, type Shape, Value } from "./src/engine/graph.ts";
export { grad } from "./src/engine/autograd.ts";
export { saveOnnx, serializeOnnx } from "./src/engine/emit.ts";
export { Session, type SessionOptions } from "./src/engine/runtime.ts";
export { gradcheck } from "./src/engine/gradcheck.ts";
export * as ops from "./src/engine/ops/mod.ts";

// Training
export { type Dataset, splitDataset } from "./src/train/dataset.ts";
export {
  loadDataset,
  loadInputs,
  saveDatasetSafetensors,
  writeJsonl,
} from "./src/train/data_files.ts";
export { clipGradNorm, Optimizer, type OptimizerName } from "./src/train/optim.ts";
export { learningRate, type ScheduleName } from "./src/train/schedule.ts";
export { TrainStep } from "./src/train/step.ts";
export { train, type TrainerOptions } from "./src/train/trainer.ts";
export { benchTrain } from "./src/train/bench.ts";

// Adapters
export { type LayerAdapter, loraScale, peftKeys } from "./adapters/lora.ts";
export { planAdapters } from "./adapters/targets.ts";
export {
  defaultPeftConfig,
  parsePeftConfig,
  type PeftConfig,
  readPeftConfig,
} from "./adapters/config.ts";
export { type Adapter, loadAdapter, matchAdapter } from "./adapters/adapter.ts";
export { loadPeftAdapter, savePeftAdapter } from "./adapters/peft.ts";
export { loadMlxAdapter } from "./adapters/mlx.ts";
export { inspectAdapter } from "./adapters/inspect.ts";
export { buildAdapted } from "./adapters/graph.ts";
export { finetune, type FinetuneOptions, readCheckpoint } from "./adapters/finetune.ts";
export { parseTrainConfig, readTrainConfig } from "./adapters/train_config.ts";
export { engineWeights } from "./adapters/weights.ts";
export { deltaWeight, mergeAdapter, planMerge, unmergeAdapter } from "./adapters/merge.ts";
export { combineAdapters } from "./adapters/combine.ts";
export { exportAdapter, type ExportOptions } from "./adapters/export.ts";
export { ParityError, type ParityReport, storageTolerance } from "./adapters/parity.ts";
export { renderReport, writeReport } from "./adapters/report/html.ts";

// Inference
export { type AdapterWeights, InferenceEngine } from "./src/infer/engine.ts";
export { serve } from "./src/infer/server.ts";
