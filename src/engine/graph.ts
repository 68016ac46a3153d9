/**
 * The graph IR of ffwd's engine: values with a dtype and a (possibly symbolic) shape, nodes that
 * are ONNX operators with attributes, frozen initializers and graph inputs.
 *
 * Builders (in `ops/`) append nodes in order, so `graph.nodes` is always topologically sorted.
 * Shapes are inferred when a node is built: a wrong shape fails there, naming the op and the shapes.
 *
 * @module
 */

import type { AttributeProto } from "../onnx/gen/onnx_pb.ts";
import { type DType, ITEMSIZE, numel, type Tensor } from "../tensor.ts";

/** A dimension: a size, or the name of a symbolic dimension such as `"batch"`. */
export type Dim = number | string;

/** A shape whose dimensions may be symbolic. */
export type Shape = readonly Dim[];

/** An ONNX attribute, tagged with its ONNX type (a JS number cannot say int or float). */
export type Attr =
  | { readonly type: "int"; readonly value: number }
  | { readonly type: "float"; readonly value: number }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "ints"; readonly value: readonly number[] }
  | { readonly type: "floats"; readonly value: readonly number[] }
  | { readonly type: "strings"; readonly value: readonly string[] }
  | { readonly type: "tensor"; readonly value: Tensor }
  /**
   * An attribute of an imported file carried as it is (the subgraphs of If, Loop, Scan, …), with
   * the values of the enclosing graph its subgraphs read by name (`reads`): the node depends on
   * them although they are not among its inputs.
   */
  | {
    readonly type: "onnx";
    readonly value: OnnxAttribute;
    readonly reads?: readonly Value[];
  };

/**
 * An ONNX `AttributeProto` (ffwd's generated protobuf type). Tagged internal: the type is generated
 * from onnx.proto, whose documentation covers it; the alias lets {@link Attr} name it without
 * `deno doc` documenting the generated code.
 *
 * @internal
 */
type OnnxAttribute = AttributeProto;

/** Integer attribute. */
export const int = (value: number): Attr => ({ type: "int", value });
/** Float attribute. */
export const float = (value: number): Attr => ({ type: "float", value });
/** String attribute. */
export const str = (value: string): Attr => ({ type: "string", value });
/** Integer-list attribute. */
export const ints = (value: readonly number[]): Attr => ({ type: "ints", value });
/** Float-list attribute. */
export const floats = (value: readonly number[]): Attr => ({ type: "floats", value });
/** Tensor attribute. */
export const tensorAttr = (value: Tensor): Attr => ({ type: "tensor", value });

/**
 * An initializer whose bytes stay in another file (ONNX external data): for example an F32 weight
 * inside a safetensors file, referenced in place by absolute path, offset and length.
 */
export interface ExternalTensor {
  /** Tells an external tensor from an in-memory {@link Tensor}. */
  readonly kind: "external";
  /** Element type of the bytes in the file. */
  readonly dtype: DType;
  /** Static dimensions; the bytes are row-major, little-endian. */
  readonly shape: readonly number[];
  /** Absolute path of the file that holds the bytes. */
  readonly path: string;
  /** Position of the first byte in the file. */
  readonly offset: number;
  /** Number of bytes: elements × item size of `dtype`. */
  readonly length: number;
}

/** What an initializer holds: tensor data in memory or a reference to bytes in a file. */
export type InitData = Tensor | ExternalTensor;

/** Where a value comes from. */
export type ValueKind = "input" | "initializer" | "node";

/**
 * One tensor-valued edge of the graph. Values are made by {@link Graph.input},
 * {@link Graph.initializer} and the op builders, never directly.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { strictEqual } from "node:assert/strict";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4]);
 * strictEqual(x.kind, "input");
 * strictEqual(`${x}`, "[batch, 4]");
 * ```
 */
export class Value {
  /**
   * Makes a value of `graph`; the graph's methods register it, so call those instead.
   *
   * @param graph The graph the value belongs to.
   * @param name Unique name in the graph (the ONNX value name).
   * @param dtype Element type.
   * @param shape Dimensions; strings are symbolic (`"batch"`).
   * @param kind Whether it is a graph input, an initializer or a node output.
   * @param producer The node that computes it (`null` for inputs and initializers).
   * @param detached Whether the autograd treats it as a constant (see `detach` in `ops/detach.ts`).
   */
  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly kind: ValueKind,
    readonly producer: Node | null = null,
    readonly detached: boolean = false,
  ) {}

  /** Number of dimensions, symbolic ones included (0 for a scalar). */
  get rank(): number {
    return this.shape.length;
  }

  /** `[a, b, c]` for error messages. */
  toString(): string {
    return formatShape(this.shape);
  }
}

/** One ONNX operator application. */
export interface Node {
  /** The ONNX op type (`"Gemm"`). */
  readonly op: string;
  /** The op's domain (`""` for the default ONNX domain). */
  readonly domain: string;
  /** Unique node name in the graph. */
  readonly name: string;
  /** `null` marks an omitted optional input. */
  readonly inputs: readonly (Value | null)[];
  /** The values the node computes, in the op's output order. */
  readonly outputs: readonly Value[];
  /** ONNX attributes by name. */
  readonly attrs: Readonly<Record<string, Attr>>;
}

/** Shape and dtype of a node output, as computed by an op's shape rule. */
export interface OutputSpec {
  /** The output's element type; {@linkcode Graph.node} takes it as given. */
  readonly dtype: DType;
  /** The output's dimensions, symbolic ones by name; taken as given, like `dtype`. */
  readonly shape: Shape;
  /** Name to give the output; default a fresh name from the op type. Must not be taken. */
  readonly name?: string;
  /** No gradient flows back through the output (default false): what `detach` builds. */
  readonly detached?: boolean;
}

/** Formats a shape as `[batch, 784]`. */
export function formatShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

/**
 * A computation graph. Frozen weights are initializers, trainable parameters and data are inputs.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4]);
 * g.output(x);
 * ```
 */
export class Graph {
  /** The nodes in the order they were built: always topologically sorted. */
  readonly nodes: Node[] = [];
  /** Graph inputs (data and trainable parameters), in the order they were added. */
  readonly inputs: Value[] = [];
  /** Frozen initializers and the data each holds. */
  readonly initializers: Map<Value, InitData> = new Map();
  /** Graph outputs, in the order they were marked. */
  readonly outputs: Value[] = [];
  /** Free-form key/value pairs emitted as ONNX `metadata_props`. */
  readonly metadata: Map<string, string> = new Map();
  /** Lowest default-domain opset that can express every node (ops newer than 17 raise it). */
  minOpset = 17;
  /** Opset of each other domain the nodes use (`com.microsoft` → 1), imported when emitted. */
  readonly domains: Map<string, number> = new Map();
  /** Every value by name (a name is claimed before its value exists: the entry may lag). */
  readonly #names = new Map<string, Value | null>();
  #counter = 0;

  /** Adds a graph input (data or a trainable parameter). */
  input(name: string, dtype: DType, shape: Shape): Value {
    for (const d of shape) {
      if (typeof d === "number" ? !Number.isInteger(d) || d < 0 : d === "") {
        throw new TypeError(`Cannot add input "${name}": invalid shape ${formatShape(shape)}`);
      }
    }
    const v = this.#register(new Value(this, this.#claim(name), dtype, shape, "input"));
    this.inputs.push(v);
    return v;
  }

  /**
   * Adds a frozen initializer. External tensors are checked here: an absolute path, and a byte
   * length that matches the dtype and shape.
   */
  initializer(name: string, data: InitData): Value {
    if ("kind" in data) checkExternal(name, data);
    const v = this.#register(
      new Value(this, this.#claim(name), data.dtype, [...data.shape], "initializer"),
    );
    this.initializers.set(v, data);
    return v;
  }

  /** Adds an anonymous constant (an initializer with a generated name). */
  constant(t: Tensor, hint = "const"): Value {
    return this.initializer(this.freshName(hint), t);
  }

  /** Appends a node; the op's shape rule has already computed `outputs`. */
  node(
    op: string,
    inputs: readonly (Value | null)[],
    attrs: Record<string, Attr>,
    outputs: readonly OutputSpec[],
    domain = "",
  ): Value[] {
    for (const v of inputs) {
      if (v && v.graph !== this) {
        throw new TypeError(`Cannot use value "${v.name}" of another graph in ${op}`);
      }
    }
    const outs: Value[] = [];
    const node: Node = {
      op,
      domain,
      name: this.freshName(op),
      inputs: [...inputs],
      outputs: outs,
      attrs,
    };
    for (const o of outputs) {
      const name = this.#claim(o.name ?? this.freshName(op.toLowerCase()));
      outs.push(this.#register(new Value(this, name, o.dtype, o.shape, "node", node, o.detached)));
    }
    this.nodes.push(node);
    return outs;
  }

  /** Records that a node needs at least `opset` (e.g. the opset-20 Gelu). */
  requireOpset(opset: number): void {
    this.minOpset = Math.max(this.minOpset, opset);
  }

  /** Marks a value as a graph output (marking it again does nothing) and returns it. */
  output(v: Value): Value {
    if (v.graph !== this) throw new TypeError(`Cannot output value "${v.name}" of another graph`);
    if (!this.outputs.includes(v)) this.outputs.push(v);
    return v;
  }

  /** A name not used yet in this graph, starting with `hint`. */
  freshName(hint: string): string {
    let name: string;
    do name = `${hint}_${this.#counter++}`; while (this.#names.has(name));
    return name;
  }

  /** Whether a value name is taken. */
  has(name: string): boolean {
    return this.#names.has(name);
  }

  /** Finds an input, initializer or node output by name. */
  find(name: string): Value | undefined {
    const v = this.#names.get(name);
    if (v) return v;
    // Values placed in the public containers directly, without the builders.
    for (const i of this.initializers.keys()) if (i.name === name) return i;
    return this.inputs.find((i) => i.name === name);
  }

  #claim(name: string): string {
    if (name === "") throw new TypeError("Cannot name a value with the empty string");
    if (this.#names.has(name)) throw new TypeError(`Cannot add value "${name}": the name is taken`);
    this.#names.set(name, null);
    return name;
  }

  #register(v: Value): Value {
    this.#names.set(v.name, v);
    return v;
  }
}

function checkExternal(name: string, ext: ExternalTensor): void {
  const fail = (why: string) => {
    throw new TypeError(`Cannot add external initializer "${name}": ${why}`);
  };
  if (!ext.path.startsWith("/")) fail(`its path "${ext.path}" is not absolute`);
  if (!Number.isSafeInteger(ext.offset) || ext.offset < 0) fail(`invalid offset ${ext.offset}`);
  const want = numel(ext.shape) * ITEMSIZE[ext.dtype];
  if (ext.length !== want) {
    fail(`${ext.length} bytes, expected ${want} for ${ext.dtype} ${formatShape(ext.shape)}`);
  }
}

/**
 * The nodes needed to compute `outputs`, in order (dead-node elimination). Values in `fed` come
 * from outside (a cached frozen prefix): their producers are not needed for them.
 */
export function liveNodes(
  graph: Graph,
  outputs: readonly Value[] = graph.outputs,
  fed: ReadonlySet<Value> = new Set(),
): Node[] {
  const live = new Set<Node>();
  const stack: Value[] = [...outputs];
  while (stack.length) {
    const v = stack.pop()!;
    const p = fed.has(v) ? null : v.producer;
    if (!p || live.has(p)) continue;
    live.add(p);
    for (const i of p.inputs) if (i) stack.push(i);
    for (const a of Object.values(p.attrs)) if (a.type === "onnx") stack.push(...a.reads ?? []);
  }
  return graph.nodes.filter((n) => live.has(n));
}
