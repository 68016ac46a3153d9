/**
 * Emits a graph as an ONNX model (opset 17 by default) with `@bufbuild/protobuf`.
 *
 * Only the nodes needed for the outputs are written (dead-node elimination). Initializers are
 * inline, or ONNX external data: tensors already in a file (an F32 weight inside a safetensors
 * file) are referenced in place by offset and length, and large in-memory tensors can be spilled
 * to a side file, so models over protobuf's 2 GiB limit work. `float64: true` emits the float64
 * twin of the graph: every F32 value, initializer, constant and cast becomes F64.
 *
 * @module
 */

import { create, toBinary } from "@bufbuild/protobuf";
import {
  type AttributeProto,
  AttributeProto_AttributeType as AT,
  AttributeProtoSchema,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from "../onnx/gen/onnx_pb.ts";
import { castFloat, type DType, type Tensor, toBytes, toFloat32 } from "../tensor.ts";
import {
  type Attr,
  type ExternalTensor,
  type Graph,
  type InitData,
  liveNodes,
  type Value,
} from "./graph.ts";
import { onnxDtype } from "./ops/shape.ts";

/** Options of {@link toModelProto}. */
export interface EmitOptions {
  /** Default-domain opset (default 17). */
  opset?: number;
  /** Emit the float64 twin. */
  float64?: boolean;
  /** Outputs to emit (default: the graph's outputs). */
  outputs?: readonly Value[];
  /**
   * Folder the model file will be written to: external data locations are written relative to it.
   * Required when the graph references external tensors or spills initializers.
   */
  modelDir?: string;
  /** Spill in-memory initializers of at least this many bytes to `spillFile` (default: never). */
  spillThreshold?: number;
  /** Name of the side file for spilled initializers, relative to `modelDir`. */
  spillFile?: string;
  /** Extra domains to import, e.g. `{"com.microsoft": 1}`. */
  domains?: Record<string, number>;
}

/** A chunk of a spilled side file: the bytes of one initializer at an offset. */
export interface SpillChunk {
  readonly offset: number;
  readonly bytes: Uint8Array;
}

/** An emitted model with the side file it needs, if any. */
export interface EmittedModel {
  readonly proto: ModelProto;
  /** Bytes to write to `spillFile`, in order (ONNX aligns nothing; we align each to 64 bytes). */
  readonly spill: readonly SpillChunk[];
  /** Absolute paths of files referenced in place. */
  readonly referenced: readonly string[];
}

const twin = (d: DType, f64: boolean): DType => (f64 && d === "F32" ? "F64" : d);

/** Builds the ONNX `ModelProto` of a graph. */
export function toModelProto(g: Graph, opts: EmitOptions = {}): EmittedModel {
  const f64 = opts.float64 ?? false;
  const outputs = opts.outputs ?? g.outputs;
  if (outputs.length === 0) throw new TypeError("Cannot emit a graph with no outputs");
  const nodes = liveNodes(g, outputs);
  const used = new Set<Value>(outputs);
  for (const n of nodes) for (const i of n.inputs) if (i) used.add(i);
  const spill: SpillChunk[] = [];
  const referenced: string[] = [];
  let spillOffset = 0;
  const initializer: TensorProto[] = [];
  for (const [v, data] of g.initializers) {
    if (!used.has(v)) continue;
    if ("kind" in data) {
      if (f64 && data.dtype === "F32") {
        throw new TypeError(
          `Cannot emit the float64 twin: initializer "${v.name}" is external F32 data`,
        );
      }
      referenced.push(data.path);
      initializer.push(externalProto(v.name, data, relativeTo(opts.modelDir, data.path, v.name)));
      continue;
    }
    const t = f64 && data.dtype === "F32" ? castFloat(data as Tensor<"F32">, "F64") : data;
    if (opts.spillThreshold !== undefined && t.data.byteLength >= opts.spillThreshold) {
      if (!opts.spillFile) throw new TypeError("Cannot spill initializers: spillFile is not set");
      const bytes = toBytes(t);
      const ext: ExternalTensor = {
        kind: "external",
        dtype: t.dtype,
        shape: t.shape,
        path: opts.spillFile,
        offset: spillOffset,
        length: bytes.byteLength,
      };
      spill.push({ offset: spillOffset, bytes });
      spillOffset += Math.ceil(bytes.byteLength / 64) * 64;
      initializer.push(externalProto(v.name, ext, opts.spillFile));
      continue;
    }
    initializer.push(tensorProto(t, v.name));
  }
  const graph = create(GraphProtoSchema, {
    name: "ffwd",
    node: nodes.map((n) =>
      create(NodeProtoSchema, {
        name: n.name,
        opType: n.op,
        domain: n.domain,
        input: n.inputs.map((i) => i?.name ?? ""),
        output: n.outputs.map((o) => o.name),
        attribute: Object.entries(n.attrs).map(([k, a]) => attrProto(k, n.op, a, f64)),
      })
    ),
    initializer,
    input: g.inputs.map((v) => valueInfo(v, f64)),
    output: outputs.map((v) => valueInfo(v, f64)),
  });
  const opsetImport = [
    create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(opts.opset ?? 17) }),
  ];
  for (const [domain, version] of Object.entries(opts.domains ?? {})) {
    opsetImport.push(create(OperatorSetIdProtoSchema, { domain, version: BigInt(version) }));
  }
  const proto = create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: "ffwd",
    producerVersion: "0.1.0",
    opsetImport,
    graph,
    metadataProps: [...g.metadata].map(([key, value]) =>
      create(StringStringEntryProtoSchema, { key, value })
    ),
  });
  return { proto, spill, referenced };
}

/**
 * Serializes a graph whose initializers are all in memory to ONNX bytes.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { serializeOnnx } from "./emit.ts";
 * import { relu } from "./ops/activation.ts";
 * const g = new Graph();
 * g.output(relu(g.input("x", "F32", ["batch", 4])));
 * const bytes = serializeOnnx(g);
 * ```
 */
export function serializeOnnx(g: Graph, opts: EmitOptions = {}): Uint8Array {
  const { proto, spill, referenced } = toModelProto(g, opts);
  if (spill.length || referenced.length) {
    throw new TypeError(
      "Cannot serialize a model with external data to bytes: write it to a folder",
    );
  }
  return toBinary(ModelProtoSchema, proto);
}

/** Encodes a model proto. */
export function encodeModel(proto: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, proto);
}

function relativeTo(dir: string | undefined, path: string, name: string): string {
  if (!dir) {
    throw new TypeError(
      `Cannot reference external data of "${name}": the model folder is not known`,
    );
  }
  const from = dir.replace(/\/+$/, "").split("/");
  const to = path.split("/");
  let i = 0;
  while (i < from.length && i < to.length - 1 && from[i] === to[i]) i++;
  return [...from.slice(i).map(() => ".."), ...to.slice(i)].join("/");
}

/** A `TensorProto` holding `t` inline as raw little-endian bytes. */
export function tensorProto(t: Tensor, name = ""): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: t.shape.map((d) => BigInt(d)),
    dataType: onnxDtype(t.dtype),
    rawData: toBytes(t),
  });
}

function externalProto(name: string, ext: ExternalTensor, location: string): TensorProto {
  const kv = (key: string, value: string) => create(StringStringEntryProtoSchema, { key, value });
  return create(TensorProtoSchema, {
    name,
    dims: ext.shape.map((d) => BigInt(d)),
    dataType: onnxDtype(ext.dtype),
    dataLocation: TensorProto_DataLocation.EXTERNAL,
    externalData: [
      kv("location", location),
      kv("offset", String(ext.offset)),
      kv("length", String(ext.length)),
    ],
  });
}

function valueInfo(v: Value, f64: boolean): ValueInfoProto {
  const dim = v.shape.map((d) =>
    create(TensorShapeProto_DimensionSchema, {
      value: typeof d === "number"
        ? { case: "dimValue", value: BigInt(d) }
        : { case: "dimParam", value: d },
    })
  );
  return create(ValueInfoProtoSchema, {
    name: v.name,
    type: create(TypeProtoSchema, {
      value: {
        case: "tensorType",
        value: create(TypeProto_TensorSchema, {
          elemType: onnxDtype(twin(v.dtype, f64)),
          shape: create(TensorShapeProtoSchema, { dim }),
        }),
      },
    }),
  });
}

function attrProto(name: string, op: string, a: Attr, f64: boolean): AttributeProto {
  switch (a.type) {
    case "int": {
      // The float64 twin retargets casts to float32.
      const value = f64 && op === "Cast" && name === "to" && a.value === 1 ? 11 : a.value;
      return create(AttributeProtoSchema, { name, type: AT.INT, i: BigInt(value) });
    }
    case "float":
      return create(AttributeProtoSchema, { name, type: AT.FLOAT, f: a.value });
    case "string":
      return create(AttributeProtoSchema, {
        name,
        type: AT.STRING,
        s: new TextEncoder().encode(a.value),
      });
    case "ints":
      return create(AttributeProtoSchema, {
        name,
        type: AT.INTS,
        ints: a.value.map((v) => BigInt(v)),
      });
    case "floats":
      return create(AttributeProtoSchema, { name, type: AT.FLOATS, floats: [...a.value] });
    case "strings":
      return create(AttributeProtoSchema, {
        name,
        type: AT.STRINGS,
        strings: a.value.map((s) => new TextEncoder().encode(s)),
      });
    case "tensor": {
      const t = f64 && a.value.dtype === "F32" ? castFloat(toFloat32(a.value), "F64") : a.value;
      return create(AttributeProtoSchema, { name, type: AT.TENSOR, t: tensorProto(t) });
    }
  }
}

/** Whether an initializer is held in memory. */
export function isInMemory(d: InitData): d is Tensor {
  return !("kind" in d);
}
