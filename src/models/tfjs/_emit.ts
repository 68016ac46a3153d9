/**
 * The ONNX graph a Keras model converts to, as it is written: nodes named `<layer>/<Op>` (their
 * first output has the node's name), float32 initializers named `<layer>/<weight>`, int64 and
 * float constants, and the layout cache that keeps chains of convolutions channels-first.
 *
 * Keras computes channels-last (`[batch, …spatial, channels]`); ONNX Conv and pooling read
 * channels-first. A converted convolution transposes its input, runs, and transposes back; the
 * channels-first result is remembered as the *twin* of the channels-last value, so the next
 * convolution (or an element-wise layer between two) reads the twin instead of transposing twice.
 * Transposes nobody reads are pruned when the model is finished.
 *
 * @module
 */

import { create } from "npm:@bufbuild/protobuf@2.17.0";
import {
  type AttributeProto,
  AttributeProto_AttributeType as AT,
  AttributeProtoSchema,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  type TensorProto,
} from "../../onnx/gen/onnx_pb.ts";
import { tensorProto, valueInfo } from "../../engine/emit.ts";

/** A Keras dimension: a size, or `null` when unknown (the batch, a free sequence length). */
export type Dim = number | null;

/** The element types of converted graph inputs: floats, and int32 or int64 ids. */
export type InputDtype = "F32" | "I32" | "I64";

/** A Keras tensor as converted: the ONNX value that holds it (Keras layout) and its shape. */
export interface KTensor {
  readonly name: string;
  /** Leading batch dimension included. */
  readonly shape: readonly Dim[];
}

/** An attribute value, tagged with its ONNX type. */
export type Attr =
  | { readonly i: number }
  | { readonly ints: readonly number[] }
  | { readonly f: number }
  | { readonly floats: readonly number[] }
  | { readonly s: string }
  | { readonly strings: readonly string[] };

/** The opset the converted graph imports (ReduceMean/Max still take `axes` as an attribute). */
export const OPSET = 17;

/** Writes the nodes and initializers of one converted model. */
export class Emitter {
  private readonly nodes: NodeProto[] = [];
  private readonly inits = new Map<string, TensorProto>();
  private readonly names = new Set<string>();
  private readonly inputs: { name: string; dtype: InputDtype; shape: (string | number)[] }[] = [];
  /** Channels-first twin of a channels-last value. */
  private readonly twins = new Map<string, string>();

  /** `base`, or `base_1`, `base_2`, … when taken. */
  fresh(base: string): string {
    let name = base;
    for (let k = 1; this.names.has(name); k++) name = `${base}_${k}`;
    this.names.add(name);
    return name;
  }

  /** Declares a graph input; unknown dimensions become `batch` (first) or `<name>_dim<i>`. */
  input(name: string, shape: readonly Dim[], dtype: InputDtype): KTensor {
    this.names.add(name);
    this.inputs.push({
      name,
      dtype,
      shape: shape.map((d, i) => d ?? (i === 0 ? "batch" : `${name}_dim${i}`)),
    });
    return { name, shape: [null, ...shape.slice(1)] };
  }

  /**
   * Adds a node named `<scope>/<label>` (the op by default); returns its outputs (`""` where
   * `outputs[i]` is false).
   */
  node(
    scope: string,
    op: string,
    inputs: readonly string[],
    attrs: Readonly<Record<string, Attr>> = {},
    outputs: readonly boolean[] = [true],
    label = op,
  ): string[] {
    const name = this.fresh(`${scope}/${label}`);
    const outs = outputs.map((used, i) => {
      if (!used) return "";
      return i === 0 ? name : this.fresh(`${name}:${i}`);
    });
    while (outs.length > 1 && outs[outs.length - 1] === "") outs.pop();
    this.nodes.push(create(NodeProtoSchema, {
      name,
      opType: op,
      input: [...inputs],
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    }));
    return outs;
  }

  /** A one-output node; returns its output. */
  op(
    scope: string,
    op: string,
    inputs: readonly string[],
    attrs?: Readonly<Record<string, Attr>>,
    label = op,
  ): string {
    return this.node(scope, op, inputs, attrs, [true], label)[0]!;
  }

  /** A float32 initializer; a name already given returns the existing one (shared layers). */
  weight(name: string, shape: readonly number[], data: () => Float32Array): string {
    if (!this.inits.has(name)) {
      const bytes = data();
      this.inits.set(name, tensorProto({ dtype: "F32", shape: [...shape], data: bytes }, name));
    }
    return name;
  }

  /** A 1-D int64 constant. */
  ints(scope: string, values: readonly number[]): string {
    const name = this.fresh(`${scope}/const`);
    const data = new BigInt64Array(values.map((v) => BigInt(v)));
    this.inits.set(name, tensorProto({ dtype: "I64", shape: [values.length], data }, name));
    return name;
  }

  /** A float32 constant of `shape` (a scalar by default). */
  floats(scope: string, values: readonly number[], shape: readonly number[] = []): string {
    const name = this.fresh(`${scope}/const`);
    this.inits.set(
      name,
      tensorProto({ dtype: "F32", shape: [...shape], data: Float32Array.from(values) }, name),
    );
    return name;
  }

  /** The channels-first form of a channels-last value of rank `rank` (its twin, or a Transpose). */
  toFirst(scope: string, x: string, rank: number): string {
    const known = this.twins.get(x);
    if (known) return known;
    const perm = [0, rank - 1, ...range(1, rank - 1)];
    const y = this.op(scope, "Transpose", [x], { perm: { ints: perm } });
    this.twins.set(x, y);
    return y;
  }

  /** The channels-last form of a channels-first value, remembering `y` as its twin. */
  fromFirst(scope: string, y: string, rank: number): string {
    const perm = [0, ...range(2, rank), 1];
    const x = this.op(scope, "Transpose", [y], { perm: { ints: perm } });
    this.twins.set(x, y);
    return x;
  }

  /** The twin of `x`, if a convolution left one. */
  twinOf(x: string): string | undefined {
    return this.twins.get(x);
  }

  /** Records `first` as the channels-first twin of `last`. */
  pair(last: string, first: string): void {
    this.twins.set(last, first);
  }

  /**
   * The model with `outputs` as its outputs, renamed `names[i]` (names reserved with `fresh`);
   * nodes and initializers no output needs are dropped.
   */
  finish(outputs: readonly string[], names: readonly string[], graphName: string): ModelProto {
    const rename = new Map<string, string>();
    const extra: NodeProto[] = [];
    outputs.forEach((v, i) => {
      const isInput = this.inputs.some((inp) => inp.name === v);
      if (isInput || rename.has(v)) {
        extra.push(create(NodeProtoSchema, {
          name: `${names[i]}/Identity`,
          opType: "Identity",
          input: [rename.get(v) ?? v],
          output: [names[i]!],
        }));
      } else rename.set(v, names[i]!);
    });
    const nodes = [...this.nodes, ...extra];
    for (const n of nodes) {
      n.input = n.input.map((v) => rename.get(v) ?? v);
      n.output = n.output.map((v) => rename.get(v) ?? v);
    }
    const live = prune(nodes, [...names]);
    const reads = new Set(live.flatMap((n) => n.input));
    return create(ModelProtoSchema, {
      irVersion: 8n,
      producerName: "ffwd",
      producerVersion: "tfjs-converter",
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(OPSET) })],
      graph: create(GraphProtoSchema, {
        name: graphName,
        node: live,
        initializer: [...this.inits.values()].filter((t) => reads.has(t.name)),
        input: this.inputs.map((i) => valueInfo(i.name, i.dtype, i.shape, false)),
        output: names.map((n) => valueInfo(n, "F32", undefined, false)),
      }),
    });
  }
}

/** The nodes some output needs, in their order. */
function prune(nodes: readonly NodeProto[], outputs: readonly string[]): NodeProto[] {
  const needed = new Set(outputs);
  const keep = new Set<NodeProto>();
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    if (!n.output.some((o) => o !== "" && needed.has(o))) continue;
    keep.add(n);
    for (const v of n.input) needed.add(v);
  }
  return nodes.filter((n) => keep.has(n));
}

/** `[from, from + 1, …, to - 1]`. */
export function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}

function attribute(name: string, v: Attr): AttributeProto {
  if ("i" in v) return create(AttributeProtoSchema, { name, type: AT.INT, i: BigInt(v.i) });
  if ("ints" in v) {
    return create(AttributeProtoSchema, {
      name,
      type: AT.INTS,
      ints: v.ints.map((x) => BigInt(x)),
    });
  }
  if ("f" in v) return create(AttributeProtoSchema, { name, type: AT.FLOAT, f: v.f });
  if ("floats" in v) {
    return create(AttributeProtoSchema, { name, type: AT.FLOATS, floats: [...v.floats] });
  }
  const enc = new TextEncoder();
  if ("s" in v) return create(AttributeProtoSchema, { name, type: AT.STRING, s: enc.encode(v.s) });
  return create(AttributeProtoSchema, {
    name,
    type: AT.STRINGS,
    strings: v.strings.map((x) => enc.encode(x)),
  });
}
