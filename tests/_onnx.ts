/**
 * Test helpers of the ONNX importer (imported only by its `*_test.ts` files): small ONNX models
 * written by hand, and running an imported model and the original file side by side.
 *
 * @module
 */

import { create, toBinary } from "@bufbuild/protobuf";
import * as ort from "onnxruntime-node";
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
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataLocation,
  TensorProtoSchema,
  type ValueInfoProto,
} from "../src/onnx/gen/onnx_pb.ts";
import { valueInfo } from "../src/engine/emit.ts";
import { Graph } from "../src/engine/graph.ts";
import { dtypeOfOnnx } from "../src/engine/ops/cast.ts";
import { fromOrt, toOrt } from "../src/engine/runtime.ts";
import type { BuildOptions } from "../src/models/model.ts";
import type { Tensor } from "../src/tensor.ts";
import type { OnnxModel } from "../src/models/onnx/import.ts";
import { runGraph } from "./_ops.ts";

/** The realdata folder and its tests' registration, shared by the whole suite. */
export { REALDATA, realdataTest } from "./_realdata.ts";

/** An attribute value: `{ i }`, `{ f }`, `{ ints }`, `{ floats }`, `{ s }` or `{ t }`. */
export type A =
  | { i: number }
  | { f: number }
  | { ints: number[] }
  | { floats: number[] }
  | { s: string }
  | { t: TensorProto };

function attr(name: string, a: A): AttributeProto {
  if ("i" in a) return create(AttributeProtoSchema, { name, type: AT.INT, i: BigInt(a.i) });
  if ("f" in a) return create(AttributeProtoSchema, { name, type: AT.FLOAT, f: a.f });
  if ("ints" in a) {
    return create(AttributeProtoSchema, { name, type: AT.INTS, ints: a.ints.map(BigInt) });
  }
  if ("floats" in a) {
    return create(AttributeProtoSchema, { name, type: AT.FLOATS, floats: a.floats });
  }
  if ("s" in a) {
    return create(AttributeProtoSchema, {
      name,
      type: AT.STRING,
      s: new TextEncoder().encode(a.s),
    });
  }
  return create(AttributeProtoSchema, { name, type: AT.TENSOR, t: a.t });
}

/** A node. */
export function node(
  op: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, A> = {},
  extra: { name?: string; domain?: string } = {},
): NodeProto {
  return create(NodeProtoSchema, {
    opType: op,
    input: inputs,
    output: outputs,
    name: extra.name ?? "",
    domain: extra.domain ?? "",
    attribute: Object.entries(attrs).map(([k, v]) => attr(k, v)),
  });
}

/** A float32 tensor with its data in raw_data. */
export function f32(name: string, dims: number[], values: number[]): TensorProto {
  const raw = new Uint8Array(new Float32Array(values).buffer);
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: 1, rawData: raw });
}

/** An int64 tensor with its data in int64_data. */
export function i64(name: string, dims: number[], values: number[]): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: dims.map(BigInt),
    dataType: 7,
    int64Data: values.map(BigInt),
  });
}

/** A tensor whose data is external. */
export function external(
  name: string,
  dims: number[],
  dataType: number,
  kv: Record<string, string>,
): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: dims.map(BigInt),
    dataType,
    dataLocation: TensorProto_DataLocation.EXTERNAL,
    externalData: Object.entries(kv).map(([key, value]) =>
      create(StringStringEntryProtoSchema, { key, value })
    ),
  });
}

/** A graph input or output: elem type 1 is FLOAT, dims are sizes or symbolic names. */
export function io(name: string, dims: (number | string)[], elemType = 1): ValueInfoProto {
  return valueInfo(name, dtypeOfOnnx(elemType), dims, false);
}

/** What {@link model} assembles. */
export interface ModelParts {
  nodes: NodeProto[];
  inputs: ValueInfoProto[];
  outputs: ValueInfoProto[];
  inits?: TensorProto[];
  opset?: number;
  ir?: number;
  domains?: Record<string, number>;
}

/** A model proto. */
export function model(p: ModelParts): ModelProto {
  const opsetImport = [
    create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(p.opset ?? 17) }),
  ];
  for (const [domain, v] of Object.entries(p.domains ?? {})) {
    opsetImport.push(create(OperatorSetIdProtoSchema, { domain, version: BigInt(v) }));
  }
  return create(ModelProtoSchema, {
    irVersion: BigInt(p.ir ?? 8),
    producerName: "ffwd-test",
    opsetImport,
    graph: create(GraphProtoSchema, {
      name: "test",
      node: p.nodes,
      input: p.inputs,
      output: p.outputs,
      initializer: p.inits ?? [],
    }),
  });
}

/** Writes a model to `dir/name` and returns the path. */
export async function writeModel(dir: string, name: string, m: ModelProto): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeFile(path, toBinary(ModelProtoSchema, m));
  return path;
}

/** A float32 tensor. */
export const t32 = (shape: number[], values: number[]): Tensor<"F32"> => ({
  dtype: "F32",
  shape,
  data: Float32Array.from(values),
});

/** Builds and runs an imported model; feeds and results are keyed by the model's IO names. */
export async function runImported(
  m: OnnxModel,
  feeds: Record<string, Tensor>,
  opts: BuildOptions = {},
): Promise<Record<string, Tensor>> {
  const g = new Graph();
  const built = m.build(g, opts);
  const named: Record<string, Tensor> = {};
  built.inputs.forEach((v, i) => (named[v.name] = feeds[m.inputs[i]!.name]!));
  const out = await runGraph(g, named);
  return Object.fromEntries(built.outputs.map((v, i) => [m.outputs[i]!.name, out[v.name]!]));
}

/** Runs the original file in onnxruntime. */
export async function runOriginal(
  path: string,
  feeds: Record<string, Tensor>,
): Promise<Record<string, Tensor>> {
  const s = await ort.InferenceSession.create(path, { logSeverityLevel: 3 });
  try {
    const out = await s.run(
      Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, toOrt(t)])),
    );
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, fromOrt(t)]));
  } finally {
    await s.release();
  }
}
