/**
 * ONNX `TensorProto` ⇄ ffwd {@link Tensor}: data types, and inline data in `raw_data` or in the
 * typed fields (onnx/onnx.proto, "TensorProto"): `float_data` for FLOAT; `int32_data` for INT32,
 * INT16, INT8, UINT16, UINT8, BOOL and the bit patterns of FLOAT16, BFLOAT16 and FLOAT8;
 * `int64_data` for INT64; `double_data` for DOUBLE; `uint64_data` for UINT32 and UINT64.
 * External data is handled by `read.ts`.
 *
 * @module
 */

import {
  type TensorProto,
  TensorProto_DataLocation,
  TensorProto_DataType as DT,
} from "../../onnx/gen/onnx_pb.ts";
import { allocData, type DType, fromBytes, ITEMSIZE, numel, type Tensor } from "../../tensor.ts";

const DTYPE_OF_CODE: Readonly<Record<number, DType>> = {
  [DT.FLOAT]: "F32",
  [DT.UINT8]: "U8",
  [DT.INT8]: "I8",
  [DT.UINT16]: "U16",
  [DT.INT16]: "I16",
  [DT.INT32]: "I32",
  [DT.INT64]: "I64",
  [DT.BOOL]: "BOOL",
  [DT.FLOAT16]: "F16",
  [DT.DOUBLE]: "F64",
  [DT.UINT32]: "U32",
  [DT.UINT64]: "U64",
  [DT.BFLOAT16]: "BF16",
  [DT.FLOAT8E4M3FN]: "F8_E4M3",
  [DT.FLOAT8E5M2]: "F8_E5M2",
};

/**
 * The ffwd dtype of an ONNX `TensorProto.DataType` code; throws a `TypeError` naming `what` (the
 * file and tensor) for types ffwd cannot hold (STRING, COMPLEX, the FNUZ float8 variants).
 *
 * @example
 * ```ts
 * import { dtypeOfCode } from "./tensor_proto.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(dtypeOfCode(10, "model.onnx: tensor \"w\""), "F16");
 * ```
 */
export function dtypeOfCode(code: number, what: string): DType {
  const d = DTYPE_OF_CODE[code];
  if (d === undefined) {
    const name = DT[code] ?? String(code);
    throw new TypeError(
      `Cannot read ${what}: ONNX data type ${name} (${code}) is not supported, expected one of ` +
        Object.values(DTYPE_OF_CODE).join(", "),
    );
  }
  return d;
}

/**
 * The dims of a tensor proto as numbers.
 *
 * @example
 * ```ts
 * import { create } from "npm:@bufbuild/protobuf@2.17.0";
 * import { TensorProtoSchema } from "../../onnx/gen/onnx_pb.ts";
 * import { dimsOf } from "./tensor_proto.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(dimsOf(create(TensorProtoSchema, { dims: [2n, 3n] })), [2, 3]);
 * ```
 */
export function dimsOf(tp: TensorProto): number[] {
  return tp.dims.map((d) => Number(d));
}

/**
 * Whether the tensor's bytes are in another file (`data_location = EXTERNAL`).
 *
 * @example
 * ```ts
 * import { create } from "npm:@bufbuild/protobuf@2.17.0";
 * import { TensorProtoSchema } from "../../onnx/gen/onnx_pb.ts";
 * import { isExternal } from "./tensor_proto.ts";
 * import { ok } from "node:assert/strict";
 * ok(isExternal(create(TensorProtoSchema, { dataLocation: 1 })));
 * ```
 */
export function isExternal(tp: TensorProto): boolean {
  return tp.dataLocation === TensorProto_DataLocation.EXTERNAL;
}

/**
 * Decodes a tensor proto whose data is inline (raw or typed fields) into a tensor in its storage
 * dtype. Half-precision and float8 values stay as bit patterns. `what` names the file and tensor
 * in errors.
 *
 * @example
 * ```ts
 * import { create } from "npm:@bufbuild/protobuf@2.17.0";
 * import { TensorProtoSchema } from "../../onnx/gen/onnx_pb.ts";
 * import { tensorFromProto } from "./tensor_proto.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const tp = create(TensorProtoSchema, { dims: [2n], dataType: 1, floatData: [1, 2] });
 * deepStrictEqual(tensorFromProto(tp, "example").data, new Float32Array([1, 2]));
 * ```
 */
export function tensorFromProto(tp: TensorProto, what: string): Tensor {
  const dtype = dtypeOfCode(tp.dataType, what);
  const shape = dimsOf(tp);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(`Cannot read ${what}: invalid dims [${shape.join(", ")}]`);
  }
  if (isExternal(tp)) {
    throw new TypeError(`Cannot read ${what} inline: its data is external`);
  }
  if (tp.segment) throw new TypeError(`Cannot read ${what}: segmented tensors are not supported`);
  const n = numel(shape);
  if (tp.rawData.byteLength > 0 || n === 0) {
    const want = n * ITEMSIZE[dtype];
    if (tp.rawData.byteLength !== want) {
      throw new RangeError(
        `Cannot read ${what}: raw_data has ${tp.rawData.byteLength} bytes, expected ${want} for ` +
          `${dtype} [${shape.join(", ")}]`,
      );
    }
    // fromBytes copies when the protobuf slice is not aligned for the typed array.
    return fromBytes(dtype, shape, tp.rawData);
  }
  return { dtype, shape, data: typedData(tp, dtype, n, what) };
}

function typedData(tp: TensorProto, dtype: DType, n: number, what: string) {
  const check = (field: string, len: number) => {
    if (len !== n) {
      throw new RangeError(
        `Cannot read ${what}: ${field} has ${len} values, expected ${n} for ${dtype}`,
      );
    }
  };
  const out = allocData(dtype, n);
  switch (dtype) {
    case "F32":
      check("float_data", tp.floatData.length);
      (out as Float32Array).set(tp.floatData);
      return out;
    case "F64":
      check("double_data", tp.doubleData.length);
      (out as Float64Array).set(tp.doubleData);
      return out;
    case "I64":
      check("int64_data", tp.int64Data.length);
      (out as BigInt64Array).set(tp.int64Data);
      return out;
    case "U32":
      check("uint64_data", tp.uint64Data.length);
      (out as Uint32Array).set(tp.uint64Data.map((v) => Number(v)));
      return out;
    case "U64":
      check("uint64_data", tp.uint64Data.length);
      (out as BigUint64Array).set(tp.uint64Data);
      return out;
    default: {
      // int32_data carries every narrower type, half floats as their 16-bit patterns.
      check("int32_data", tp.int32Data.length);
      const dst = out as Int32Array | Int16Array | Int8Array | Uint16Array | Uint8Array;
      for (let i = 0; i < n; i++) dst[i] = tp.int32Data[i]!;
      return out;
    }
  }
}
