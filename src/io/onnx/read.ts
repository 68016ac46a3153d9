/**
 * Reading ONNX files: decoding the `ModelProto`, refusing unsafe external data locations, and
 * loading initializers from inline or external data (onnx/docs/ExternalData.md: keys `location`,
 * `offset`, `length`; a missing offset means 0, a missing length means "to the end of the file").
 *
 * External data locations that are absolute or leave the model's folder are refused before any
 * byte is read: onnxruntime-node's native code would otherwise read them outside Deno's sandbox.
 *
 * @module
 */

import { fromBinary } from "npm:@bufbuild/protobuf@2.17.0";
import { type ModelProto, ModelProtoSchema, type TensorProto } from "../../onnx/gen/onnx_pb.ts";
import { type DType, fromBytes, ITEMSIZE, numel, type Tensor } from "../../tensor.ts";
import { dimsOf, dtypeOfCode, isExternal, tensorFromProto } from "./tensor_proto.ts";

/** A decoded ONNX file. */
export interface OnnxFile {
  /** Absolute path of the model file. */
  readonly path: string;
  /** Absolute path of the folder that holds it (external data is resolved against it). */
  readonly dir: string;
  readonly proto: ModelProto;
  /**
   * How messages name the model; default `ONNX model "<path>"`. A graph converted from another
   * format names what the user opened (`TF.js model "<model.json>"`).
   */
  readonly label?: string;
}

/**
 * How messages name `file`: its `label`, or `ONNX model "<path>"`.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert/strict";
 * import { onnxLabel } from "./read.ts";
 * strictEqual(onnxLabel({ path: "/m/model.onnx" }), 'ONNX model "/m/model.onnx"');
 * ```
 */
export function onnxLabel(file: { readonly path: string; readonly label?: string }): string {
  return file.label ?? `ONNX model "${file.path}"`;
}

/** Where an initializer's bytes live when they are external. */
export interface ExternalLocation {
  /** Location as written in the model (relative to the model's folder). */
  readonly location: string;
  /** Absolute path of the data file. */
  readonly path: string;
  /** Position of the first byte in the data file (0 when the model gives none). */
  readonly offset: number;
  /** Byte length, or undefined when the model leaves it to the end of the file. */
  readonly length?: number;
}

/** An initializer's name, storage dtype, shape, size and location. */
export interface InitializerInfo {
  /** The initializer's name in the graph. */
  readonly name: string;
  /** Element type as stored in the file. */
  readonly dtype: DType;
  /** ONNX's int64 dims as numbers; `[]` for a scalar. */
  readonly shape: readonly number[];
  /** Size of the data in bytes (elements × item size). */
  readonly bytes: number;
  /** Where the data lives, when it is outside the model file; absent for inline data. */
  readonly external?: ExternalLocation;
}

import { absolutePath } from "../../fs/paths.ts";

export { absolutePath };

/**
 * Reads and decodes an ONNX model, refusing unsafe external data locations before anything
 * else is read.
 *
 * @example
 * ```ts ignore
 * import { readOnnxFile } from "./read.ts";
 * const file = await readOnnxFile("model.onnx");
 * file.proto.graph?.node.length;
 * ```
 */
export async function readOnnxFile(path: string): Promise<OnnxFile> {
  const abs = absolutePath(path);
  const bytes = await Deno.readFile(abs);
  const first = bytes.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09);
  if (first === 0x7b || first === 0x5b) {
    throw new SyntaxError(
      `Cannot read ONNX model "${path}": the file is JSON (a TF.js model.json?), not an ONNX ` +
        "ModelProto",
    );
  }
  let proto: ModelProto;
  try {
    proto = fromBinary(ModelProtoSchema, bytes);
  } catch (e) {
    throw new SyntaxError(
      `Cannot read ONNX model "${path}": not a valid ModelProto (${(e as Error).message})`,
    );
  }
  if (!proto.graph || proto.irVersion <= 0n) {
    throw new SyntaxError(
      `Cannot read ONNX model "${path}": not an ONNX ModelProto (ir_version ${proto.irVersion}, ` +
        `${proto.graph ? "with" : "no"} graph)`,
    );
  }
  const file: OnnxFile = { path: abs, dir: abs.slice(0, abs.lastIndexOf("/")) || "/", proto };
  // Every external location is checked before any tensor data is read, Constant tensors included.
  const attrTensors = proto.graph.node.flatMap((n) =>
    n.attribute.flatMap((a) => (a.t ? [a.t, ...a.tensors] : a.tensors)).map((t) =>
      t.name ? t : { ...t, name: `${n.name || n.opType} (attribute)` }
    )
  );
  for (const tp of [...proto.graph.initializer, ...attrTensors]) {
    if (isExternal(tp)) externalLocation(file, tp);
  }
  return file;
}

/**
 * The external location of a tensor, checked: absolute locations and locations that leave the
 * model's folder throw a `RangeError` naming the model, the tensor and the location.
 *
 * @example
 * ```ts ignore
 * import { externalLocation, readOnnxFile } from "./read.ts";
 * const file = await readOnnxFile("model.onnx");
 * externalLocation(file, file.proto.graph!.initializer[0]!).offset;
 * ```
 */
export function externalLocation(file: OnnxFile, tp: TensorProto): ExternalLocation {
  const kv = new Map(tp.externalData.map((e) => [e.key, e.value]));
  const location = kv.get("location");
  const what = `${onnxLabel(file)}: tensor "${tp.name}"`;
  if (!location) throw new SyntaxError(`Cannot read ${what}: external data has no location`);
  if (/^([/\\]|[A-Za-z]:)/.test(location) || escapes(location)) {
    throw new RangeError(
      `Refusing to read ${what}: external data location "${location}" is ` +
        `${
          /^([/\\]|[A-Za-z]:)/.test(location) ? "absolute" : "outside the model's folder"
        }; it must be a relative path inside "${file.dir}"`,
    );
  }
  const num = (key: string): number | undefined => {
    const v = kv.get(key);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`Cannot read ${what}: external data ${key} is "${v}"`);
    }
    return n;
  };
  return {
    location,
    path: absolutePath(`${file.dir}/${location}`),
    offset: num("offset") ?? 0,
    length: num("length"),
  };
}

/** Whether a relative location climbs above its starting folder. */
function escapes(location: string): boolean {
  let depth = 0;
  for (const part of location.split(/[/\\]/)) {
    if (part === "..") depth--;
    else if (part !== "" && part !== ".") depth++;
    if (depth < 0) return true;
  }
  return false;
}

/**
 * Name, dtype, shape, byte size and location of an initializer (reads no data).
 *
 * @example
 * ```ts ignore
 * import { initializerInfo, readOnnxFile } from "./read.ts";
 * const file = await readOnnxFile("model.onnx");
 * initializerInfo(file, file.proto.graph!.initializer[0]!).bytes;
 * ```
 */
export function initializerInfo(file: OnnxFile, tp: TensorProto): InitializerInfo {
  const dtype = dtypeOfCode(tp.dataType, `${onnxLabel(file)}: tensor "${tp.name}"`);
  const shape = dimsOf(tp);
  const bytes = numel(shape) * ITEMSIZE[dtype];
  return isExternal(tp)
    ? { name: tp.name, dtype, shape, bytes, external: externalLocation(file, tp) }
    : { name: tp.name, dtype, shape, bytes };
}

/**
 * Loads an initializer (or any tensor proto of the file) in its storage dtype, reading external
 * data from its file.
 *
 * @example
 * ```ts ignore
 * import { loadTensor, readOnnxFile } from "./read.ts";
 * const file = await readOnnxFile("model.onnx");
 * const w = await loadTensor(file, file.proto.graph!.initializer[0]!);
 * ```
 */
export async function loadTensor(file: OnnxFile, tp: TensorProto): Promise<Tensor> {
  const what = `${onnxLabel(file)}: tensor "${tp.name}"`;
  if (!isExternal(tp)) return tensorFromProto(tp, what);
  const info = initializerInfo(file, tp);
  const ext = info.external!;
  await assertInside(file, ext, what);
  const f = await Deno.open(ext.path, { read: true }).catch((e) => {
    throw new Error(`Cannot read ${what}: cannot open external file "${ext.path}"`, { cause: e });
  });
  try {
    const size = (await f.stat()).size;
    const length = ext.length ?? size - ext.offset;
    if (length !== info.bytes || ext.offset + length > size) {
      throw new RangeError(
        `Cannot read ${what}: external data in "${ext.location}" at offset ${ext.offset} has ` +
          `${Math.min(length, Math.max(0, size - ext.offset))} bytes, expected ${info.bytes} ` +
          `for ${info.dtype} [${info.shape.join(", ")}]`,
      );
    }
    const buf = new Uint8Array(length);
    await f.seek(ext.offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < length) {
      const n = await f.read(buf.subarray(done));
      if (n === null) throw new RangeError(`Cannot read ${what}: "${ext.path}" ended early`);
      done += n;
    }
    return fromBytes(info.dtype, info.shape, buf);
  } finally {
    f.close();
  }
}

/** Second guard: the resolved file (after symlinks) must still be inside the model's folder. */
async function assertInside(file: OnnxFile, ext: ExternalLocation, what: string): Promise<void> {
  const [dir, target] = await Promise.all([
    Deno.realPath(file.dir),
    Deno.realPath(ext.path).catch(() => ext.path),
  ]);
  if (!target.startsWith(dir.endsWith("/") ? dir : dir + "/")) {
    throw new RangeError(
      `Refusing to read ${what}: external data location "${ext.location}" resolves to ` +
        `"${target}", outside the model's folder "${file.dir}"`,
    );
  }
}
