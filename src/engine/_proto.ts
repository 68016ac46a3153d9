/**
 * Builders of the ONNX protobuf messages the emitter writes (ONNX `onnx.proto`, IR version 8+):
 * tensors inline or as external data, value infos and attributes, each able to produce the
 * float64 twin (every F32 becomes F64, and casts or generators targeting float become double).
 *
 * @module
 */

import { create } from "npm:@bufbuild/protobuf@2.17.0";
import {
  type AttributeProto,
  AttributeProto_AttributeType as AT,
  AttributeProtoSchema,
  type NodeProto,
  NodeProtoSchema,
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
import type { Attr, Shape } from "./graph.ts";
import { onnxDtype } from "./ops/shape.ts";

/** The dtype of a value in the float64 twin. */
export const twin = (d: DType, f64: boolean): DType => (f64 && d === "F32" ? "F64" : d);

/** `t` converted for the float64 twin (F32 data becomes F64; anything else is kept). */
export function twinTensor(t: Tensor, f64: boolean): Tensor {
  return f64 && t.dtype === "F32" ? castFloat(t as Tensor<"F32">, "F64") : t;
}

/** ONNX code of float32, and the attributes that name an output element type per op. */
const FLOAT = 1;
const DOUBLE = 11;
const DTYPE_ATTRS: Readonly<Record<string, string>> = {
  Cast: "to",
  EyeLike: "dtype",
  RandomNormal: "dtype",
  RandomNormalLike: "dtype",
  RandomUniform: "dtype",
  RandomUniformLike: "dtype",
  Bernoulli: "dtype",
};

/** A `TensorProto` holding `t` inline as raw little-endian bytes. */
export function tensorProto(t: Tensor, name = ""): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: t.shape.map((d) => BigInt(d)),
    dataType: onnxDtype(t.dtype),
    rawData: toBytes(t),
  });
}

/** Where the bytes of an external tensor are: a location relative to the model's folder. */
export interface ExternalRef {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly location: string;
  readonly offset: number;
  readonly length: number;
}

/** A `TensorProto` whose bytes are ONNX external data. */
export function externalProto(name: string, ext: ExternalRef): TensorProto {
  const kv = (key: string, value: string) => create(StringStringEntryProtoSchema, { key, value });
  return create(TensorProtoSchema, {
    name,
    dims: ext.shape.map((d) => BigInt(d)),
    dataType: onnxDtype(ext.dtype),
    dataLocation: TensorProto_DataLocation.EXTERNAL,
    externalData: [
      kv("location", ext.location),
      kv("offset", String(ext.offset)),
      kv("length", String(ext.length)),
    ],
  });
}

/**
 * A `ValueInfoProto` with symbolic dimensions written as `dim_param`; without `shape`, the shape is
 * left for onnxruntime to infer (an imported graph's outputs).
 */
export function valueInfo(
  name: string,
  dtype: DType,
  shape: Shape | undefined,
  f64: boolean,
): ValueInfoProto {
  const dim = shape?.map((d) =>
    create(TensorShapeProto_DimensionSchema, {
      value: typeof d === "number"
        ? { case: "dimValue", value: BigInt(d) }
        : { case: "dimParam", value: d },
    })
  );
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: "tensorType",
        value: create(TypeProto_TensorSchema, {
          elemType: onnxDtype(twin(dtype, f64)),
          ...(dim ? { shape: create(TensorShapeProtoSchema, { dim }) } : {}),
        }),
      },
    }),
  });
}

/** An `AttributeProto`; in the float64 twin, float element types and float tensors become double. */
export function attrProto(name: string, op: string, a: Attr, f64: boolean): AttributeProto {
  switch (a.type) {
    case "int": {
      const retarget = f64 && DTYPE_ATTRS[op] === name && a.value === FLOAT;
      return create(AttributeProtoSchema, {
        name,
        type: AT.INT,
        i: BigInt(retarget ? DOUBLE : a.value),
      });
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
    case "onnx":
      return a.value.name === name ? a.value : { ...a.value, name };
    case "tensor": {
      // Constant and ConstantOfShape values: the twin computes in float64 from the start.
      const t = f64 && a.value.dtype === "F32" ? castFloat(toFloat32(a.value), "F64") : a.value;
      return create(AttributeProtoSchema, { name, type: AT.TENSOR, t: tensorProto(t) });
    }
  }
}

/** A `Cast` to double: the float64 twin reads an external F32 weight as stored, then casts it. */
export function castToDouble(from: string, to: string): NodeProto {
  return create(NodeProtoSchema, {
    name: `${to}.cast`,
    opType: "Cast",
    input: [from],
    output: [to],
    attribute: [create(AttributeProtoSchema, { name: "to", type: AT.INT, i: BigInt(DOUBLE) })],
  });
}
