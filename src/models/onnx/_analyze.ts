/**
 * Everything known about an ONNX file before its graph is built: real inputs with their shapes,
 * sorted nodes without post-processing, linear layers, the nodes the outputs need and the ops
 * ffwd cannot import. Reads no tensor data (only `Constant` node attributes).
 *
 * @module
 */

import type { Dim } from "../../engine/graph.ts";
import type { NodeProto, TensorProto, ValueInfoProto } from "../../onnx/gen/onnx_pb.ts";
import type { DType, Tensor } from "../../tensor.ts";
import { attrInt, attrTensor } from "./_attrs.ts";
import {
  cutPostProcessing,
  domainOf,
  neededNodes,
  qualifiedOp,
  readsOf,
  sortNodes,
} from "./_graph.ts";
import { type ConstInfo, findLinearLayers, type LinearMatch } from "./linear.ts";
import { handlerOf } from "./op_map.ts";
import type { Probed } from "./_probe.ts";
import {
  type InitializerInfo,
  initializerInfo,
  type OnnxFile,
  onnxLabel,
} from "../../io/onnx/read.ts";
import { dimsOf, dtypeOfCode, tensorFromProto } from "../../io/onnx/tensor_proto.ts";

/** A real graph input (not an initializer) with its declared dtype and shape. */
export interface InputDecl {
  readonly name: string;
  /** Storage dtype as declared (half precision is fed as float32). */
  readonly dtype: DType;
  readonly shape: readonly Dim[];
}

/** The analysis of an ONNX file. */
export interface Analysis {
  readonly file: OnnxFile;
  /** Opset version per domain (`""` is the default domain). */
  readonly opsets: ReadonlyMap<string, number>;
  readonly inputs: readonly InputDecl[];
  /**
   * The inputs with a fixed batch made symbolic, when the file declares one (see freeBatch), the
   * note saying so, and the start of the note for when the import keeps the declared size.
   */
  readonly freed?: {
    readonly inputs: readonly InputDecl[];
    readonly note: string;
    readonly kept: string;
  };
  /** The network's outputs (after post-processing is cut off). */
  readonly outputs: readonly string[];
  /** Initializers by name. */
  readonly initializers: ReadonlyMap<string, TensorProto>;
  readonly initializerInfo: readonly InitializerInfo[];
  /** Tensors of `Constant` nodes by output name. */
  readonly constants: ReadonlyMap<string, Tensor>;
  /** Nodes the outputs need, sorted. */
  readonly nodes: readonly NodeProto[];
  /** Linear layers the outputs need, by the node that produces the layer's output. */
  readonly linear: ReadonlyMap<NodeProto, LinearMatch>;
  /**
   * Needed nodes no builder exists for: the frozen context, carried into the graph as they are
   * (their output shapes are probed, see `_probe.ts`; no gradient can cross them).
   */
  readonly carried: readonly NodeProto[];
  /** Position of each node in the file, for messages about unnamed nodes. */
  readonly index: ReadonlyMap<NodeProto, number>;
  /** Dtype and shape of each output of the carried nodes, probed in onnxruntime (`_probe.ts`). */
  readonly probed?: ReadonlyMap<string, Probed>;
  /** The Softmax, LogSoftmax or Sigmoid the first output comes from, and the value it reads. */
  readonly finalActivation?: { readonly op: string; readonly input: string };
  /** Op histogram of the whole file (`Op` or `domain.Op` → count). */
  readonly histogram: Readonly<Record<string, number>>;
  readonly notes: readonly string[];
}

/** Ops whose outputs are never float: their values are not network outputs. */
const NON_FLOAT_OPS = new Set([
  "ArgMax",
  "ArgMin",
  "Shape",
  "Size",
  "NonZero",
  "Equal",
  "Greater",
  "Less",
  "Not",
  "And",
  "Or",
]);

/** Options of {@link analyze}. */
export interface AnalyzeOptions {
  /**
   * The value the model ends at instead of the file's outputs: another output, or any value the
   * graph computes (the logits before a final Softmax).
   */
  readonly output?: string;
  /**
   * Nodes to carry as frozen context although a builder exists for their op (their first
   * outputs' names): nodes whose builder refused them (see `BuilderRefusal`).
   */
  readonly carry?: ReadonlySet<string>;
}

/** Analyzes a decoded file. */
export function analyze(file: OnnxFile, options: AnalyzeOptions = {}): Analysis {
  const g = file.proto.graph!;
  const notes: string[] = [];
  const opsets = new Map<string, number>();
  for (const o of file.proto.opsetImport) {
    opsets.set(o.domain === "ai.onnx" ? "" : o.domain, Number(o.version));
  }
  if (!opsets.has("")) opsets.set("", 1);
  const initializers = new Map(g.initializer.map((t) => [t.name, t]));
  const ir = Number(file.proto.irVersion);
  const shadowed = g.input.filter((i) => initializers.has(i.name)).map((i) => `"${i.name}"`);
  if (shadowed.length && ir >= 4) {
    notes.push(
      `Graph inputs ${shadowed.join(", ")} have initializers (IR ${ir}): imported as constants ` +
        "with those values; list them in `trainable` to feed them",
    );
  }
  const inputs = g.input.filter((i) => !initializers.has(i.name)).map((i) => inputDecl(file, i));
  const freed = freeBatch(inputs);
  const halfInputs = inputs.filter((i) => i.dtype === "F16" || i.dtype === "BF16");
  if (halfInputs.length) {
    notes.push(
      `Inputs ${halfInputs.map((i) => `"${i.name}" (${i.dtype})`).join(", ")} are fed as F32: ` +
        "ffwd computes half-precision models in float32",
    );
  }
  const available = new Set([...inputs.map((i) => i.name), ...initializers.keys()]);
  const sorted = sortNodes(g.node, available, onnxLabel(file));
  const constants = new Map<string, Tensor>();
  for (const n of sorted) {
    const t = n.opType === "Constant" && domainOf(n) === "" ? attrTensor(n, "value") : undefined;
    if (t && n.output[0]) constants.set(n.output[0], tensorFromProto(t, `node "${n.name}"`));
  }
  const declared = new Map<string, number>();
  for (const v of [...g.valueInfo, ...g.output, ...g.input]) {
    if (v.type?.value.case === "tensorType") declared.set(v.name, v.type.value.value.elemType);
  }
  const producer = new Map<string, NodeProto>();
  for (const n of sorted) for (const o of n.output) producer.set(o, n);
  const floatValue = (name: string) => {
    const code = declared.get(name);
    if (code !== undefined && code !== 0) return [1, 10, 11, 16].includes(code);
    const p = producer.get(name);
    if (!p) return true;
    if (p.opType === "Cast") return [1, 10, 11, 16].includes(attrInt(p, "to", 1));
    return !NON_FLOAT_OPS.has(p.opType);
  };
  const cut = cutPostProcessing(
    sorted,
    g.output.map((o) => o.name),
    new Set(inputs.map((i) => i.name)),
    floatValue,
  );
  if (cut.note) notes.push(cut.note);
  if (options.output !== undefined) {
    chooseOutput(
      options.output,
      cut,
      producer,
      new Set(inputs.map((i) => i.name)),
      onnxLabel(file),
    );
    notes.push(
      `Output "${options.output}" chosen (the file's: ${list(g.output.map((o) => o.name))})`,
    );
  }
  const constOf = (name: string): ConstInfo | undefined => {
    const t = initializers.get(name);
    if (t) return { dtype: dtypeOfCode(t.dataType, `tensor "${name}"`), shape: dimsOf(t) };
    const c = constants.get(name);
    return c ? { dtype: c.dtype, shape: c.shape } : undefined;
  };
  const matches = findLinearLayers(sorted, constOf, new Set(cut.outputs));
  const finals = new Map(matches.map((m) => [m.biasAdd ?? m.anchor, m]));
  const depsOf = (n: NodeProto): readonly string[] => {
    const m = finals.get(n);
    return m ? [m.x, m.layer.weightKey, m.layer.biasKey ?? ""] : readsOf(n);
  };
  const needed = neededNodes(sorted, cut.outputs, depsOf, (name) => producer.get(name));
  const nodes = sorted.filter((n) => needed.has(n));
  const histogram: Record<string, number> = {};
  for (const n of g.node) histogram[qualifiedOp(n)] = (histogram[qualifiedOp(n)] ?? 0) + 1;
  return {
    file,
    opsets,
    inputs,
    freed,
    outputs: cut.outputs,
    initializers,
    initializerInfo: g.initializer.map((t) => initializerInfo(file, t)),
    constants,
    nodes,
    linear: new Map([...finals].filter(([n]) => needed.has(n))),
    carried: nodes.filter((n) =>
      !finals.has(n) && (!handlerOf(domainOf(n), n.opType) || options.carry?.has(n.output[0]!))
    ),
    index: new Map(g.node.map((n, i) => [n, i])),
    histogram,
    notes,
    finalActivation: finalActivation(cut.outputs[0], producer),
  };
}

const list = (names: readonly string[]) => names.map((n) => `"${n}"`).join(", ");

/** Replaces the cut's outputs with `output`, which a node must compute (or an input be). */
function chooseOutput(
  output: string,
  cut: { outputs: string[] },
  producer: ReadonlyMap<string, NodeProto>,
  inputs: ReadonlySet<string>,
  label: string,
): void {
  if (!producer.has(output) && !inputs.has(output)) {
    throw new TypeError(
      `Cannot use output "${output}" of ${label}: no node computes a value of that ` +
        `name (the file's outputs: ${list(cut.outputs)})`,
    );
  }
  cut.outputs.splice(0, cut.outputs.length, output);
}

/** Probability-making ops at the end of a network, which losses on logits must not follow. */
const ACTIVATIONS = new Set(["Softmax", "LogSoftmax", "Sigmoid"]);

/** The Softmax, LogSoftmax or Sigmoid that computes `output`, and the value it reads. */
function finalActivation(
  output: string | undefined,
  producer: ReadonlyMap<string, NodeProto>,
): Analysis["finalActivation"] {
  const n = output === undefined ? undefined : producer.get(output);
  if (!n || domainOf(n) !== "" || !ACTIVATIONS.has(n.opType) || !n.input[0]) return undefined;
  return { op: n.opType, input: n.input[0] };
}

/**
 * Exporters without dynamic axes (`torch.onnx.export` without `dynamic_axes`, tf2onnx with a fixed
 * signature) bake the batch size into the inputs, most often 1. When every input of rank 2 or
 * more declares the same fixed leading dimension (and no input has a symbolic one), this proposes
 * the inputs with that dimension as the symbolic `batch`, and the note that says so. The importer
 * takes them only if every node acts per row (`_rows.ts`), every shape rule accepts them, and the
 * batch reaches every output as its leading dimension; otherwise a note says why it kept the size.
 */
function freeBatch(inputs: InputDecl[]): Analysis["freed"] {
  const batched = inputs.filter((i) => i.shape.length >= 2);
  const lead = new Set(batched.map((i) => i.shape[0]));
  const [fixed] = lead;
  if (batched.length === 0 || lead.size !== 1 || typeof fixed !== "number") return undefined;
  // An exporter that made some axes dynamic fixed this one on purpose (and may call one "batch").
  if (inputs.some((i) => i.shape.some((d) => typeof d === "string"))) return undefined;
  const several = batched.length > 1;
  const names = batched.map((i) => `"${i.name}"`).join(", ");
  return {
    inputs: inputs.map((i) =>
      i.shape.length >= 2 ? { ...i, shape: ["batch", ...i.shape.slice(1)] } : i
    ),
    note: `${several ? "Inputs" : "Input"} ${names} ${several ? "declare" : "declares"} a fixed ` +
      `leading dimension of ${fixed}: imported as the batch dimension (any number of rows)`,
    kept: `${several ? "Inputs" : "Input"} ${names} ${several ? "keep their" : "keeps its"} ` +
      `fixed leading dimension of ${fixed}`,
  };
}

/** Dtype and shape of a graph input; unknown dimensions get symbolic names. */
function inputDecl(file: OnnxFile, v: ValueInfoProto): InputDecl {
  const what = `${onnxLabel(file)}: input "${v.name}"`;
  if (v.type?.value.case !== "tensorType") {
    throw new TypeError(`Cannot import ${what}: it is not a tensor`);
  }
  const t = v.type.value.value;
  const dtype = dtypeOfCode(t.elemType, what);
  if (!t.shape) throw new TypeError(`Cannot import ${what}: its shape is not declared`);
  const shape = t.shape.dim.map((d, i): Dim => {
    if (d.value.case === "dimValue" && d.value.value >= 0n) return Number(d.value.value);
    if (d.value.case === "dimParam" && d.value.value !== "") return d.value.value;
    return `${v.name}_dim${i}`; // unknown (or -1): symbolic, named after the input
  });
  return { name: v.name, dtype, shape };
}
