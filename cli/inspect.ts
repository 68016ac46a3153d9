/**
 * `ffwd inspect <path> [--json]`: what a model file or adapter folder holds, read without running
 * anything: a table for people, or `--json` for programs.
 *
 * The path's kind decides what is shown; each kind is one entry of {@linkcode KINDS}, chosen by
 * the file's name or the folder's files. A regular file no kind claims is read as safetensors
 * (its errors say what a file is when it is not: a Git LFS pointer, a PyTorch pickle, ...); a
 * folder no kind claims is an error that lists what it holds. Each kind's module is imported when
 * it is needed, so inspecting a safetensors file loads neither the ONNX reader nor TensorFlow.js.
 *
 * Every `--json` form is one object whose `format` says which of the following it is.
 *
 * **safetensors** (`*.safetensors`, and any file no other kind claims), from the header only:
 *
 * ```json
 * {
 *   "format": "safetensors",
 *   "tensors": [{ "name": "fc1.weight", "dtype": "F32", "shape": [512, 784], "bytes": 1605632 }],
 *   "metadata": { "format": "pt" },
 *   "parameters": 401408,
 *   "blocks": [{
 *     "name": "", "layout": "fc", "activation": "relu", "activationFrom": "config.hidden_act",
 *     "layers": ["fc1", "fc2"], "spec": { "name": "", "form": "sequential", "layers": [...] }
 *   }],
 *   "config": "/abs/path/config.json",
 *   "modelType": "mlp"
 * }
 * ```
 *
 * `tensors` are in file order, `bytes` is each tensor's data size, `metadata` is the
 * `__metadata__` strings (`{}` when there are none) and `parameters` the total number of elements.
 * `blocks` are the feedforward blocks detection recognises (`[]` when none, which is no error),
 * each with the block spec it makes; `config` is the `config.json` beside the file that named
 * their activations, or `null`, and `modelType` its `model_type` when it has one. When detection
 * itself fails (an unparsable `config.json`, an activation ffwd does not build), `blocks` is `[]`
 * and `blocksError` holds the reason, in place of `config` and `modelType`.
 *
 * **onnx** (`*.onnx`), the `OnnxSummary` of `src/io/onnx/inspect.ts`:
 *
 * ```json
 * {
 *   "format": "onnx", "path": "/abs/path/base.onnx", "irVersion": 8,
 *   "producer": { "name": "pytorch", "version": "2.1.0" },
 *   "opsets": [{ "domain": "", "version": 17 }],
 *   "ops": { "Gemm": 3, "Relu": 2 },
 *   "inputs": [{ "name": "x", "dtype": "F32", "shape": ["batch", 784] }],
 *   "outputs": ["y"],
 *   "initializers": [{
 *     "name": "fc1.weight", "dtype": "F32", "shape": [256, 784], "bytes": 802816,
 *     "external": { "location": "base.onnx.data", "offset": 0, "length": 802816 }
 *   }],
 *   "linearLayers": [{
 *     "name": "fc1", "inFeatures": 784, "outFeatures": 256, "orientation": "out_in",
 *     "weightKey": "fc1.weight", "biasKey": "fc1.bias", "dtype": "F32", "node": "Gemm_0"
 *   }],
 *   "frozen": [],
 *   "notes": []
 * }
 * ```
 *
 * `ops` counts nodes by op type, `external` appears only on initializers stored outside the
 * model (its `length` only when the model gives one), `orientation` is `out_in` for a PyTorch
 * `[out, in]` weight and `in_out` for `[in, out]`, `frozen` names the nodes that run as frozen
 * context (`node "name" (Op)`: ops ffwd has no builder for, carried as the file wrote them, which no
 * gradient crosses) and `notes` what the importer would change or assume.
 *
 * **tfjs** (a `*.json` file, or a folder holding `model.json`), opened by the TF.js loader, so
 * graph models and unsupported layers fail with its error:
 *
 * ```json
 * {
 *   "format": "tfjs", "path": "fixtures/tfjs/dense/model.json",
 *   "layers": [
 *     {
 *       "name": "fc1", "class": "Dense", "units": 16, "activation": "relu",
 *       "inFeatures": 8, "outFeatures": 16, "orientation": "in_out",
 *       "weightKey": "fc1/kernel", "biasKey": "fc1/bias", "parameters": 144
 *     },
 *     { "name": "drop", "class": "Dropout" }
 *   ],
 *   "inputs": [{ "name": "fc1_input", "dtype": "F32", "shape": ["batch", 8] }],
 *   "outputs": [{ "name": "y", "dtype": "F32", "shape": ["batch", 4] }],
 *   "parameters": 396
 * }
 * ```
 *
 * `layers` are the Keras layers in order; Dense layers add the linear layer the loader made
 * (`biasKey` only with a bias) and their parameter count, which `parameters` sums.
 *
 * **adapter** (a folder with `adapter_config.json`, `adapter_model.safetensors` (PEFT) or
 * `adapters.safetensors` (MLX-LM)), the `AdapterSummary` of `workflows/inspect.ts` after `format`:
 *
 * ```json
 * {
 *   "format": "adapter", "kind": "peft", "path": "fixtures/peft/mlp_lora",
 *   "files": ["adapter_config.json", "adapter_model.safetensors"],
 *   "config": {
 *     "rank": 4, "alpha": 8, "scale": 2, "targetModules": ["fc2", "fc1"],
 *     "layersToTransform": null, "dora": false, "rslora": false, "dropout": 0, "bias": "none",
 *     "fanInFanOut": false, "rankPattern": { "fc2": 2 }, "alphaPattern": { "fc2": 4 },
 *     "modulesToSave": ["fc3"], "baseModel": "ffwd/mlp-6-8-8-3", "taskType": null
 *   },
 *   "layers": [{ "module": "fc1", "rank": 4, "alpha": 8, "scale": 2 }],
 *   "tensors": [{ "name": "base_model.model.fc1.lora_A.weight", "dtype": "F32", "shape": [4, 6] }],
 *   "parameters": 115
 * }
 * ```
 *
 * `kind` is `"peft"` or `"mlx"`; an MLX-LM adapter's `config` and `layers` are given in PEFT's
 * terms while `tensors` keep MLX's names and layout.
 *
 * @module
 */

import { writeOut } from "./_errors.ts";
import { prettyJson } from "./_inspect_text.ts";
import type { Program } from "./_program.ts";

/** What a kind prints: its JSON form and its human-readable table. */
type Description = { json: unknown; table: string };

/** One kind of path `inspect` understands. */
interface FileKind {
  /** Whether this kind handles the path, judged by its name, type and (folders) file names. */
  claims(path: string, info: Deno.FileInfo, files: ReadonlySet<string>): boolean;
  /** Reads the path and describes it. */
  describe(path: string): Promise<Description>;
}

// Kept here rather than imported from adapters/ so that choosing a kind loads no adapter code.
/** Files that make a folder an adapter: PEFT's and MLX-LM's (their loaders explain the others). */
const ADAPTER_FILES = [
  "adapter_config.json",
  "adapter_model.safetensors",
  "adapters.safetensors",
  "adapter_model.bin",
  "adapters.npz",
];

const onnx: FileKind = {
  claims: (path, info) => info.isFile && /\.onnx$/i.test(path),
  describe: async (path) => (await import("./_inspect_onnx.ts")).describeOnnx(path),
};

const safetensors: FileKind = {
  claims: (path, info) => info.isFile && /\.safetensors$/i.test(path),
  describe: async (path) => (await import("./_inspect_safetensors.ts")).describeSafetensors(path),
};

const tfjs: FileKind = {
  claims: (path, info, files) =>
    info.isFile ? /\.json$/i.test(path) : info.isDirectory && files.has("model.json"),
  describe: async (path) => (await import("./_inspect_tfjs.ts")).describeTfjs(path),
};

const adapter: FileKind = {
  claims: (_, info, files) => info.isDirectory && ADAPTER_FILES.some((f) => files.has(f)),
  describe: async (path) => (await import("./_inspect_adapter.ts")).describeAdapter(path),
};

/** The kinds of path `inspect` reads, tried in order. */
const KINDS: readonly FileKind[] = [onnx, safetensors, adapter, tfjs];

/** Used when no kind claims a regular file by its name. */
const FALLBACK: FileKind = safetensors;

/**
 * Adds `inspect <path> [--json]` to the program.
 *
 * @example
 * ```ts
 * import { Command } from "@commander-js/extra-typings";
 * import { registerInspect } from "./inspect.ts";
 * const program = new Command().option("--debug");
 * registerInspect(program);
 * ```
 */
export function registerInspect(program: Program): void {
  program
    .command("inspect")
    .description(
      "show what a model file or adapter folder holds: tensors, layers, blocks, configuration",
    )
    .argument(
      "<file>",
      "a .safetensors or .onnx file, a TF.js model.json (or its folder), or an adapter folder",
    )
    .option("--json", "print JSON instead of a table")
    .action(async (file, options) => {
      const { json, table } = await (await kindOf(file)).describe(file);
      writeOut(options.json ? `${prettyJson(json)}\n` : table);
    });
}

async function kindOf(path: string): Promise<FileKind> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot read "${path}": no such file`, { cause: error });
    }
    throw error;
  }
  const files = new Set<string>();
  if (info.isDirectory) { for await (const e of Deno.readDir(path)) files.add(e.name); }
  const kind = KINDS.find((k) => k.claims(path, info, files));
  if (kind) return kind;
  if (info.isDirectory) {
    const names = [...files].sort();
    const shown = names.length > 8 ? [...names.slice(0, 8), `… (${names.length - 8} more)`] : names;
    throw new TypeError(
      `Cannot inspect "${path}": the folder holds no TF.js model.json and no LoRA adapter ` +
        `(adapter_config.json with adapter_model.safetensors or adapters.safetensors); ` +
        `it holds ${shown.join(", ") || "nothing"}`,
    );
  }
  return FALLBACK;
}
