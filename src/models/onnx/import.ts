/**
 * ONNX graphs as ffwd base models. `openOnnxModel` reads a model written by PyTorch (0.3 to 2.x),
 * tf2onnx, keras2onnx or skl2onnx, finds its linear layers, and returns a {@link BaseModel} whose
 * `build` replays the ONNX nodes through ffwd's builders (shapes inferred, differentiable), calling
 * the linear hook on every layer.
 *
 * What is refused, and why: external data outside the model's folder (onnxruntime would read it
 * outside Deno's sandbox); a file onnxruntime cannot run. Ops without a builder (recurrent layers,
 * control flow, Resize, ops of other domains, …) are the frozen context: carried into the
 * graph as the file wrote them, their output shapes probed by running the file (`_probe.ts`); no
 * gradient crosses them, so they may sit anywhere upstream of the adapters.
 * What is changed, with a note in `model.notes`: `ai.onnx.ml` post-processing after the network
 * (ZipMap, ArrayFeatureExtractor, …) is cut off; half-precision models compute in float32;
 * initializers that IR ≥ 4 graphs also list as inputs are imported as constants.
 *
 * @module
 */

import { Graph } from "../../engine/graph.ts";
import type { ModelProto } from "../../onnx/gen/onnx_pb.ts";
import type { BaseModel, BuildOptions, Built, ModelIO } from "../model.ts";
import type { Tensor } from "../../tensor.ts";
import { type Analysis, analyze } from "./_analyze.ts";
import { describeNode, qualifiedOp, readsOf } from "./_graph.ts";
import { onnxLabel } from "../../io/onnx/read.ts";
import { probeShapes } from "./_probe.ts";
import { BuilderRefusal, replay } from "./_replay.ts";
import { rowMixer } from "./_rows.ts";
import type { OnnxLinearLayer } from "./linear.ts";
import {
  type InitializerInfo,
  loadTensor,
  type OnnxFile,
  readOnnxFile,
} from "../../io/onnx/read.ts";

/** An opset import of a model. */
export interface OpsetImport {
  /** `""` for the default ONNX domain. */
  readonly domain: string;
  /** The opset version the model imports for that domain. */
  readonly version: number;
}

/**
 * The decoded ONNX protobuf (ffwd's generated `onnx.ModelProto`). Tagged internal: the type and
 * its dozens of message types are generated from onnx.proto, whose documentation covers them; an
 * alias lets {@link OnnxModel.proto} name it without `deno doc` documenting the generated code.
 *
 * @internal
 */
type OnnxModelProto = ModelProto;

/** A base model read from an ONNX file. */
export interface OnnxModel extends BaseModel {
  /** Always `"onnx"`. */
  readonly format: "onnx";
  /** The linear layers (MatMul or Gemm with a constant weight), with Gemm's `alpha` and `beta`. */
  readonly layers: readonly OnnxLinearLayer[];
  /** The exporter named in the file (`producer_name`, `producer_version`; `"pytorch"`, …). */
  readonly producer: { readonly name: string; readonly version: string };
  /** The ONNX IR version of the file. */
  readonly irVersion: number;
  /** The opsets the model imports, one per domain. */
  readonly opsets: readonly OpsetImport[];
  /** Node count per op type (`Op`, or `domain.Op` outside the default domain). */
  readonly opHistogram: Readonly<Record<string, number>>;
  /** Every initializer's name, storage dtype, shape, size and (external) location. */
  readonly initializers: readonly InitializerInfo[];
  /** The decoded file, to export a merged model that keeps the original graph. */
  readonly proto: OnnxModelProto;
  /** What the import changed or cut off, one sentence each. */
  readonly notes: readonly string[];
}

/** Options of {@link openOnnxModel}. */
export interface OpenOnnxOptions {
  /**
   * End the model at this value instead of the file's first output: another output, or any
   * value a node computes (the logits a final Softmax reads, to train with cross-entropy).
   */
  readonly output?: string;
}

/**
 * Opens an ONNX model as a base model. Fails before reading tensor data when an external data
 * location is unsafe, and before building when onnxruntime cannot run the file's frozen context.
 *
 * @example
 * ```ts
 * import { Graph } from "../../engine/graph.ts";
 * import { openOnnxModel } from "./import.ts";
 * const model = await openOnnxModel("fixtures/mnist/base.onnx");
 * model.layers.map((l) => `${l.name} ${l.inFeatures}→${l.outFeatures} ${l.orientation}`);
 * // ["fc1 784→256 out_in", "fc2 256→128 out_in", "fc3 128→10 out_in"]
 * const g = new Graph();
 * const { outputs } = model.build(g, { hook: ({ y }) => y }); // outputs[0]: [batch, 10]
 * model.close();
 * ```
 */
export async function openOnnxModel(
  path: string,
  options: OpenOnnxOptions = {},
): Promise<OnnxModel> {
  return await openOnnxFile(await readOnnxFile(path), options);
}

/**
 * Opens a decoded ONNX model (`file.path` names it in messages, `file.dir` anchors external
 * data): for graphs made in memory, such as a converted TF.js model.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { readOnnxFile } from "../../io/onnx/read.ts";
 * import { openOnnxFile } from "./import.ts";
 * const model = await openOnnxFile(await readOnnxFile("fixtures/mnist/base.onnx"));
 * strictEqual(model.layers.length, 3);
 * ```
 */
export async function openOnnxFile(
  file: OnnxFile,
  options: OpenOnnxOptions = {},
): Promise<OnnxModel> {
  // A node whose builder refuses it (an attribute or shape it does not handle) is carried as
  // frozen context instead, and the file analyzed again; each node is refused at most once.
  const carry = new Set<string>();
  const refused: string[] = [];
  const tensors = new Map<string, Tensor>(); // initializers read, kept across the attempts
  for (;;) {
    try {
      return await openOnce(file, options, { carry, refused, tensors });
    } catch (e) {
      if (!(e instanceof BuilderRefusal) || carry.has(e.node.output[0]!)) throw e;
      carry.add(e.node.output[0]!);
      refused.push(`${e.reason}; it runs as frozen context instead`);
    }
  }
}

async function openOnce(
  file: OnnxFile,
  options: OpenOnnxOptions,
  o: {
    carry: ReadonlySet<string>;
    refused: readonly string[];
    tensors: Map<string, Tensor>;
  },
): Promise<OnnxModel> {
  const { refused, tensors } = o;
  const a = analyze(file, { ...options, carry: o.carry });
  const reads = new Set(a.nodes.flatMap((n) => {
    const m = a.linear.get(n);
    return m ? [m.x, m.layer.weightKey, m.layer.biasKey ?? ""] : readsOf(n);
  }));
  for (const name of [...reads, ...a.outputs]) {
    const tp = a.initializers.get(name);
    if (tp && !tensors.has(name)) tensors.set(name, await loadTensor(file, tp));
  }
  const notes = [...a.notes, ...refused];
  if (a.carried.length) notes.push(carriedNote(a));
  const carriedOutputs = a.carried.flatMap((n) => n.output.filter((o) => o !== ""));
  const described = a.carried.map((n) => describeNode(n, a.index.get(n) ?? -1));
  const probe = async (inputs: Analysis["inputs"]) =>
    carriedOutputs.length ? await probeShapes(file, inputs, carriedOutputs, described) : undefined;
  // A dry run validates every node's shapes now and gives the outputs' shapes. A fixed batch is
  // freed only if every node works per row, every shape rule passes and every output leads with it.
  if (a.freed) {
    const batched = a.freed.inputs.filter((i) => i.shape[0] === "batch").map((i) => i.name);
    const mixer = rowMixer(a.nodes, batched, new Map([...a.constants, ...tensors]), a.index);
    const probed = mixer ? undefined : await probe(a.freed.inputs).catch(() => null);
    const free = { ...a, inputs: a.freed.inputs, probed: probed ?? undefined };
    const freeNotes = [...notes, a.freed.note];
    const built = mixer || probed === null ? undefined : tryReplay(free, tensors, freeNotes);
    if (built?.outputs.every((o) => o.shape[0] === "batch")) {
      return new Model(free, tensors, freeNotes, built);
    }
    const why = mixer ? `${mixer} may combine rows` : "the graph's shapes depend on it";
    notes.push(`${a.freed.kept}: ${why}, so the model runs only on batches of that size`);
  }
  const declared = { ...a, probed: await probe(a.inputs) };
  return new Model(declared, tensors, notes, replay(declared, tensors, new Graph(), {}, notes));
}

/** The dry run, or `undefined` when some node's shape rule refuses the graph. */
function tryReplay(a: Analysis, tensors: ReadonlyMap<string, Tensor>, notes: string[]) {
  try {
    return replay(a, tensors, new Graph(), {}, notes);
  } catch (e) {
    if (e instanceof BuilderRefusal) throw e;
    return undefined;
  }
}

/** The note that names the frozen context (ops carried as they are, which no gradient crosses). */
function carriedNote(a: Analysis): string {
  const ops = [...new Set(a.carried.map((n) => qualifiedOp(n)))];
  const n = a.carried.length;
  return `${n} ${n === 1 ? "node" : "nodes"} (${ops.join(", ")}) run as frozen context, as the ` +
    "file wrote them: no gradient crosses them, so adapters go on linear layers after them";
}

class Model implements OnnxModel {
  readonly format = "onnx" as const;
  readonly source: string;
  readonly inputs: readonly ModelIO[];
  readonly outputs: readonly ModelIO[];
  readonly layers: readonly OnnxLinearLayer[];
  readonly producer: { readonly name: string; readonly version: string };
  readonly irVersion: number;
  readonly opsets: readonly OpsetImport[];
  readonly opHistogram: Readonly<Record<string, number>>;
  readonly initializers: readonly InitializerInfo[];
  readonly proto: ModelProto;
  readonly finalActivation?: { readonly op: string; readonly input: string };

  constructor(
    private readonly a: Analysis,
    private readonly tensors: ReadonlyMap<string, Tensor>,
    readonly notes: string[],
    dry: Built,
  ) {
    const p = a.file.proto;
    this.source = a.file.path;
    const io = (v: { name: string; dtype: ModelIO["dtype"]; shape: ModelIO["shape"] }) => ({
      name: v.name,
      dtype: v.dtype,
      shape: v.shape,
    });
    this.inputs = dry.inputs.map(io);
    this.outputs = dry.outputs.map(io);
    this.layers = [...a.linear.values()].map((m) => m.layer);
    this.producer = { name: p.producerName, version: p.producerVersion };
    this.irVersion = Number(p.irVersion);
    this.opsets = [...a.opsets].map(([domain, version]) => ({ domain, version }));
    this.opHistogram = a.histogram;
    this.initializers = a.initializerInfo;
    this.proto = p;
    this.finalActivation = a.finalActivation;
  }

  build(g: Graph, opts: BuildOptions = {}): Built {
    return replay(this.a, this.tensors, g, opts, this.notes);
  }

  async readTensor(key: string): Promise<Tensor> {
    const known = this.tensors.get(key) ?? this.a.constants.get(key);
    if (known) return known;
    const tp = this.a.initializers.get(key);
    if (!tp) {
      throw new TypeError(
        `Cannot read tensor "${key}" of ${onnxLabel(this.a.file)}: no initializer or ` +
          `Constant has that name (${this.a.initializers.size} initializers)`,
      );
    }
    return await loadTensor(this.a.file, tp);
  }

  close(): void {}
}
