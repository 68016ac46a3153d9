/**
 * Reading and writing safetensors files (https://github.com/huggingface/safetensors).
 *
 * The reader parses and validates the header without touching tensor data, then reads each tensor
 * by its byte range straight into the tensor's own buffer: inspecting a multi-gigabyte file reads
 * only its header, and loading one tensor reads only that tensor. Each entry also gives the
 * absolute file offset of its bytes, so a float32 tensor can be referenced in place (as ONNX
 * external data). The writer streams one tensor at a time into an atomically replaced file, in the
 * reference implementation's layout. Header rules: `_safetensors_header.ts`; layout:
 * `_safetensors_write.ts`.
 *
 * @module
 */

import { type DType, fromBytes, numel, type Tensor } from "../tensor.ts";
import {
  checkHeaderLength,
  parseHeaderJson,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from "./_safetensors_header.ts";
import { openReader, type SafetensorsFile } from "./_safetensors_reader.ts";
import { collect, collectSync } from "./_safetensors_input.ts";
import {
  BlockWriter,
  type LazyTensor,
  materialize,
  type MetadataInput,
  type NamedTensor,
  planLayout,
  type TensorInput,
} from "./_safetensors_write.ts";
import { type AtomicWriteOptions, withAtomicFile } from "../fs/atomic.ts";

export { MAX_HEADER_LENGTH } from "./_safetensors_header.ts";
export type {
  LazyTensor,
  MetadataInput,
  NamedTensor,
  SafetensorsEntry,
  SafetensorsFile,
  SafetensorsHeader,
  TensorInput,
};

/** Tensors and metadata of a whole safetensors file. */
export interface SafetensorsContents {
  /** The tensors in file order. */
  readonly tensors: Map<string, Tensor>;
  /** The `__metadata__` strings (empty when the file has none). */
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * What {@linkcode writeSafetensors} accepts: a map, a record, or (async) iterable `{name, tensor}`
 * entries. The header comes first in the file and needs every dtype and shape, so an iterable is
 * drained before writing starts: to stream, give {@linkcode LazyTensor}s, whose data is loaded only
 * when written.
 */
export type TensorCollection =
  | ReadonlyMap<string, TensorInput>
  | Readonly<Record<string, TensorInput>>
  | Iterable<NamedTensor>
  | AsyncIterable<NamedTensor>;

/** What {@linkcode serializeSafetensors} accepts: in-memory tensors only. */
export type InMemoryTensors =
  | ReadonlyMap<string, Tensor>
  | Readonly<Record<string, Tensor>>
  | Iterable<NamedTensor<Tensor>>;

/** Options of {@linkcode writeSafetensors}. */
export interface WriteSafetensorsOptions extends AtomicWriteOptions {
  /** String metadata stored as `__metadata__` (for PEFT adapters: `{ format: "pt" }`). */
  readonly metadata?: MetadataInput;
}

/** Options of {@linkcode parseSafetensorsHeader}. */
export interface ParseHeaderOptions {
  /** Size of the whole file, when `bytes` holds only its beginning. Default: `bytes.length`. */
  readonly fileSize?: number;
  /** Name for error messages (a path). */
  readonly source?: string;
}

/**
 * Opens a safetensors file and reads and validates its header. Close it when done (or declare it
 * with `using`).
 *
 * @example
 * ```ts
 * import { openSafetensors, writeSafetensors } from "./safetensors.ts";
 * import { tensor } from "../tensor.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/model.safetensors";
 * await writeSafetensors(path, { "fc1.weight": tensor("F32", [4, 3]) });
 *
 * using file = await openSafetensors(path);
 * const [entry] = file.header.tensors;
 * deepStrictEqual([entry!.name, entry!.dtype, entry!.shape], ["fc1.weight", "F32", [4, 3]]);
 * const weight = await file.readTensor("fc1.weight"); // reads exactly entry.byteLength bytes
 * strictEqual(weight.data.byteLength, entry!.byteLength);
 * ```
 */
export function openSafetensors(path: string | URL): Promise<SafetensorsFile> {
  return openReader(path);
}

/**
 * Reads every tensor and the metadata of a safetensors file.
 *
 * @example
 * ```ts
 * import { readSafetensors, writeSafetensors } from "./safetensors.ts";
 * import { tensor } from "../tensor.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/adapter_model.safetensors";
 * await writeSafetensors(path, { a: tensor("F32", [8, 4]) }, { metadata: { format: "pt" } });
 *
 * const { tensors, metadata } = await readSafetensors(path);
 * deepStrictEqual(tensors.get("a")!.shape, [8, 4]);
 * strictEqual(metadata.format, "pt");
 * ```
 */
export async function readSafetensors(path: string | URL): Promise<SafetensorsContents> {
  using file = await openReader(path);
  return { tensors: await file.readAll(), metadata: file.metadata };
}

/** A header-only description of a safetensors file, as `ffwd inspect` shows it. */
export interface SafetensorsSummary {
  /** Always `"safetensors"`, to tell summaries of different formats apart. */
  readonly format: "safetensors";
  /** The tensors in file order; `bytes` is each tensor's data size. */
  readonly tensors: readonly {
    readonly name: string;
    readonly dtype: DType;
    readonly shape: readonly number[];
    readonly bytes: number;
  }[];
  /** The `__metadata__` strings (empty when the file has none). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Total number of elements over all tensors (integer buffers included). */
  readonly parameters: number;
  /** Size of the file in bytes. */
  readonly fileSize: number;
}

/**
 * Describes a safetensors file from its header alone: however large the file, only the header is
 * read.
 *
 * @example
 * ```ts
 * import { inspectSafetensors, writeSafetensors } from "./safetensors.ts";
 * import { tensor } from "../tensor.ts";
 * import { strictEqual } from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/model.safetensors";
 * await writeSafetensors(path, { w: tensor("F16", [3, 2]), b: tensor("F16", [3]) });
 *
 * const { tensors, parameters } = await inspectSafetensors(path);
 * strictEqual(tensors.length, 2);
 * strictEqual(parameters, 9);
 * ```
 */
export async function inspectSafetensors(path: string | URL): Promise<SafetensorsSummary> {
  using file = await openReader(path);
  const { tensors, metadata, fileSize } = file.header;
  let parameters = 0;
  for (const e of tensors) parameters += numel(e.shape);
  return {
    format: "safetensors",
    tensors: tensors.map((e) => ({
      name: e.name,
      dtype: e.dtype,
      shape: e.shape,
      bytes: e.byteLength,
    })),
    metadata,
    parameters,
    fileSize,
  };
}

/**
 * Parses and validates a safetensors header from the first bytes of a file (or a whole file).
 * Without `fileSize`, `bytes` is taken as the whole file and the tensors must cover it exactly.
 *
 * @example
 * ```ts
 * import { parseSafetensorsHeader, serializeSafetensors } from "./safetensors.ts";
 * import { tensor } from "../tensor.ts";
 * import { strictEqual } from "node:assert/strict";
 * const bytes = serializeSafetensors({ w: tensor("F32", [2]) });
 * // 8 length bytes, then the JSON header padded to a multiple of 8 (56 bytes here)
 * strictEqual(parseSafetensorsHeader(bytes).tensors[0]!.fileOffset, 64);
 * ```
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  options: ParseHeaderOptions = {},
): SafetensorsHeader {
  const where = options.source === undefined
    ? "Cannot parse safetensors bytes"
    : `Cannot read "${options.source}"`;
  const fileSize = options.fileSize ?? bytes.byteLength;
  if (bytes.byteLength < Math.min(8, fileSize)) {
    throw new RangeError(`${where}: need the first 8 bytes, got ${bytes.byteLength}`);
  }
  const n = checkHeaderLength(bytes, fileSize, where);
  if (bytes.byteLength < 8 + n) {
    throw new RangeError(
      `${where}: the header needs the first ${8 + n} bytes, got ${bytes.byteLength}`,
    );
  }
  return parseHeaderJson(bytes.subarray(8, 8 + n), fileSize, where, bytes);
}

/**
 * Decodes a whole safetensors file held in memory. The tensors are copies: they do not share
 * memory with `bytes`.
 *
 * @example
 * ```ts
 * import { deserializeSafetensors, serializeSafetensors } from "./safetensors.ts";
 * import { tensor } from "../tensor.ts";
 * import { strictEqual } from "node:assert/strict";
 * const bytes = serializeSafetensors({ b: tensor("I64", [], new BigInt64Array([7n])) });
 * strictEqual(deserializeSafetensors(bytes).tensors.get("b")!.data[0], 7n);
 * ```
 */
export function deserializeSafetensors(
  bytes: Uint8Array,
  options: { readonly source?: string } = {},
): SafetensorsContents {
  const header = parseSafetensorsHeader(bytes, { source: options.source });
  const tensors = new Map<string, Tensor>();
  for (const e of header.tensors) {
    const copy = bytes.slice(e.fileOffset, e.fileOffset + e.byteLength);
    tensors.set(e.name, fromBytes(e.dtype, e.shape, copy));
  }
  return { tensors, metadata: header.metadata };
}

/**
 * Writes tensors to a safetensors file, atomically, and returns the header it wrote (with the
 * absolute offset of every tensor). Tensors are written one at a time straight from their buffers;
 * a {@linkcode LazyTensor} is loaded only when its turn comes, so a merge can stream a model
 * through memory one tensor at a time. The layout is the reference implementation's: tensors
 * sorted by dtype alignment (largest first) then name, 8-byte aligned data.
 *
 * @example
 * ```ts
 * import { writeSafetensors } from "./safetensors.ts";
 * import { tensor } from "../tensor.ts";
 * const path = (await Deno.makeTempDir()) + "/adapter_model.safetensors";
 * await writeSafetensors(path, {
 *   "fc1.lora_A.weight": tensor("F32", [8, 784]),
 *   "fc1.lora_B.weight": { dtype: "F32", shape: [512, 8], load: () => tensor("F32", [512, 8]) },
 * }, { metadata: { format: "pt" } });
 * ```
 */
export async function writeSafetensors(
  path: string | URL,
  tensors: TensorCollection,
  options: WriteSafetensorsOptions = {},
): Promise<SafetensorsHeader> {
  const where = `Cannot write "${path instanceof URL ? path.href : path}"`;
  const plan = planLayout(await collect(tensors, where), options.metadata, where);
  await withAtomicFile(path, async (file) => {
    const out = new BlockWriter(file);
    await out.write(plan.prefix);
    for (const placed of plan.placed) {
      const t = await materialize(placed, where);
      await out.write(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
    await out.flush();
  }, options);
  return plan.header;
}

/**
 * Encodes tensors as safetensors bytes in memory, in the same layout as
 * {@linkcode writeSafetensors}. For small files (tests, adapters); large ones should be written.
 *
 * @example
 * ```ts
 * import { serializeSafetensors } from "./safetensors.ts";
 * import { tensor } from "../tensor.ts";
 * const bytes = serializeSafetensors({ w: tensor("F16", [2, 2]) }, { metadata: { format: "pt" } });
 * ```
 */
export function serializeSafetensors(
  tensors: InMemoryTensors,
  options: { readonly metadata?: MetadataInput } = {},
): Uint8Array {
  const where = "Cannot serialize safetensors";
  const plan = planLayout(collectSync(tensors, where), options.metadata, where);
  const out = new Uint8Array(plan.header.fileSize);
  out.set(plan.prefix);
  for (const p of plan.placed) {
    if ("load" in p.source) {
      throw new TypeError(
        `${where}: tensor ${JSON.stringify(p.name)} is lazy: use writeSafetensors()`,
      );
    }
    const t = p.source;
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p.fileOffset);
  }
  return out;
}
