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
  type DataOf,
  type DType,
  DTYPES,
  fromBytes,
  numel,
  type Tensor,
  type TensorData,
  tensor,
  toBytes,
  toFloat32,
} from "./src/tensor.ts";
export {
  inspectSafetensors,
  type LazyTensor,
  type MetadataInput,
  type NamedTensor,
  openSafetensors,
  readSafetensors,
  type SafetensorsContents,
  type SafetensorsEntry,
  type SafetensorsFile,
  type SafetensorsHeader,
  type SafetensorsSummary,
  type TensorCollection,
  type TensorInput,
  writeSafetensors,
  type WriteSafetensorsOptions,
} from "./src/io/safetensors.ts";
export {
  type AtomicWriteOptions,
  type ByteSource,
  withAtomicFile,
  writeFileAtomic,
} from "./src/fs/atomic.ts";
export { Rng, type RngState } from "./src/rng.ts";

// Base models
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
export { openModel, type OpenModelOptions } from "./src/models/open.ts";
export {
  type OnnxModel,
  openOnnxModel,
  type OpenOnnxOptions,
  type OpsetImport,
} from "./src/models/onnx/import.ts";
export type { OnnxLinearLayer } from "./src/models/onnx/linear.ts";
export type { ExternalLocation, InitializerInfo } from "./src/io/onnx/read.ts";
export { inspectOnnx, type OnnxSummary } from "./src/models/onnx/inspect.ts";
export {
  detectSafetensorsBlocks,
  type FileDetection,
  openSafetensorsModel,
  type OpenSafetensorsOptions,
  type SafetensorsModel,
} from "./src/models/blocks/safetensors_model.ts";
export type { DetectedBlock, Detection, HfConfig, Layout } from "./src/models/blocks/detect.ts";
export type { ResolvedBlock, ResolvedNorm } from "./src/models/blocks/resolve.ts";
export type {
  ActivationFn,
  ActivationName,
  ACTIVATIONS,
  BlockSpec,
} from "./src/models/blocks/spec.ts";
export { openTfjsModel, type OpenTfjsOptions, type TfjsModel } from "./src/models/tfjs.ts";
export type { KerasLayerInfo } from "./src/models/tfjs/convert.ts";

// The engine
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
export {
  type EmitOptions,
  type SavedOnnx,
  saveOnnx,
  type SaveOptions,
  serializeOnnx,
} from "./src/engine/emit.ts";
export { Session, type SessionOptions } from "./src/engine/runtime.ts";
export {
  type CheckInput,
  gradcheck,
  type GradcheckOptions,
  type GradcheckResult,
} from "./src/engine/gradcheck.ts";
export * as ops from "./src/engine/ops/mod.ts";

// Training
export { type Dataset, type RowTensor, splitDataset } from "./src/data/dataset.ts";
export { type InputSpec, modelFeeds, rowWidth } from "./src/data/feeds.ts";
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
export {
  clipGradNorm,
  Optimizer,
  type OptimizerName,
  type OptimizerOptions,
  type OptimizerState,
} from "./src/train/optim.ts";
export { learningRate, type ScheduleName, type ScheduleOptions } from "./src/train/schedule.ts";
export { type StepResult, type StepSpec, TrainStep } from "./src/train/step.ts";
export {
  type MaskInput,
  type MetricLine,
  train,
  TRAINER_DEFAULTS,
  type TrainerHooks,
  type TrainerOptions,
  type TrainerState,
  type TrainOptions,
  type TrainResult,
} from "./src/train/trainer.ts";

// Adapters
export { type AdapterInputs, type LayerAdapter, loraScale, peftKeys } from "./src/lora/branch.ts";
export { planAdapters, type TargetOptions } from "./adapters/targets.ts";
export {
  defaultPeftConfig,
  type JsonValue,
  parsePeftConfig,
  type PeftConfig,
  readPeftConfig,
} from "./adapters/config.ts";
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
export {
  loadPeftAdapter,
  type LoadPeftOptions,
  savePeftAdapter,
  type SavePeftOptions,
} from "./adapters/peft.ts";
export { loadMlxAdapter, type LoadMlxOptions } from "./adapters/mlx.ts";
export { type AdapterSummary, inspectAdapter } from "./workflows/inspect.ts";
export {
  type AdaptedGraph,
  buildAdapted,
  type BuildAdaptedOptions,
  type LossName,
} from "./src/lora/adapted.ts";
export {
  finetune,
  type FinetuneOptions,
  type FinetuneResult,
  readCheckpoint,
} from "./workflows/finetune.ts";
export { parseTrainConfig, readTrainConfig, type TrainConfig } from "./workflows/train_config.ts";
export {
  evalSets,
  type ResolvedTrainOptions,
  resolveTrainOptions,
  TRAIN_DEFAULTS,
} from "./workflows/train_options.ts";
export { engineWeights } from "./adapters/weights.ts";
export {
  deltaWeight,
  type KernelArgs,
  type KernelKind,
  type LayerDelta,
  mergeAdapter,
  type MergedWeights,
  type MergeKernels,
  type MergeOptions,
  type MergePlan,
  planMerge,
  unmergeAdapter,
} from "./workflows/merge.ts";
export {
  combineAdapters,
  type Combined,
  type CombineMethod,
  type CombineOptions,
} from "./workflows/combine.ts";
export {
  exportAdapter,
  type ExportFormat,
  type ExportMode,
  type ExportOptions,
  type ExportResult,
} from "./workflows/export.ts";
export {
  type PairResult,
  ParityError,
  type ParityReport,
  storageTolerance,
  type Tolerance,
} from "./workflows/parity.ts";
export {
  renderReport,
  type ReportOptions,
  type ScaleKind,
  type ScaleMode,
  writeReport,
} from "./report/html.ts";

// Inference
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
