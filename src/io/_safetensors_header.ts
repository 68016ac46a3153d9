/**
 * Parsing and validation of safetensors headers, and recognising files that are not safetensors.
 *
 * Format (https://github.com/huggingface/safetensors, README "Format"): an unsigned 64-bit
 * little-endian header length N, N bytes of UTF-8 JSON mapping tensor names to
 * `{"dtype", "shape", "data_offsets": [begin, end]}` plus an optional `"__metadata__"` object of
 * strings, then the data region. Offsets are relative to the data region, which the tensors must
 * cover exactly, without gaps or overlaps. The rules and the 100 MB header limit follow the Rust
 * reference reader (`safetensors/src/tensor.rs`, `read_metadata` and `Metadata::validate`).
 *
 * @module
 */

import { type DType, DTYPES, isDType, ITEMSIZE } from "../tensor.ts";
import { findDuplicateKey } from "./_json_duplicates.ts";
import { identify } from "./_sniff.ts";

/** Largest header the reference implementation accepts, in bytes. */
export const MAX_HEADER_LENGTH = 100_000_000;

/** One tensor as a safetensors header describes it. */
export interface SafetensorsEntry {
  /** The tensor's key in the header. */
  readonly name: string;
  /** Element type as stored. */
  readonly dtype: DType;
  /** Dimensions (`[]` for a scalar). */
  readonly shape: readonly number[];
  /** `[begin, end)` of the tensor's bytes, relative to the start of the data region. */
  readonly dataOffsets: readonly [number, number];
  /** `end - begin`: the tensor's size in bytes. */
  readonly byteLength: number;
  /** Absolute position of the tensor's first byte in the file (`8 + headerLength + begin`). */
  readonly fileOffset: number;
}

/** A parsed and validated safetensors header. */
export interface SafetensorsHeader {
  /** N: the JSON header's length in bytes, padding included. */
  readonly headerLength: number;
  /** Where the data region starts in the file: `8 + headerLength`. */
  readonly dataStart: number;
  /** Size of the data region in bytes. */
  readonly dataLength: number;
  /** Size of the whole file: `dataStart + dataLength`. */
  readonly fileSize: number;
  /** The tensors in file order (ascending data offsets). */
  readonly tensors: readonly SafetensorsEntry[];
  /** The `__metadata__` strings (empty when the file has none or `null`). */
  readonly metadata: Readonly<Record<string, string>>;
}

/** Quotes a tensor name or key for an error message (escapes newlines and quotes). */
export const q = (s: string): string => JSON.stringify(s);

/** Describes an arbitrary JSON value for an error message. */
export function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return `the string ${q(value.slice(0, 40))}`;
  return `the ${typeof value} ${String(value)}`;
}

/**
 * Checks the header length read from the first 8 bytes against the file size and returns it.
 * `prefix` holds the first bytes of the file (up to a few KiB), used to name what the file is
 * when it is not safetensors.
 */
export function checkHeaderLength(prefix: Uint8Array, fileSize: number, where: string): number {
  if (fileSize < 8) {
    const what = fileSize === 0 ? "the file is empty" : `it is only ${fileSize} bytes long`;
    throw new SyntaxError(
      `${where}: not a safetensors file: ${what}, and safetensors files start with an 8-byte header length`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  const other = identify(prefix);
  if (n === 0n) {
    throw new SyntaxError(`${where}: ${other ?? "not a safetensors file: its header length is 0"}`);
  }
  if (n > BigInt(MAX_HEADER_LENGTH)) {
    if (other) throw new SyntaxError(`${where}: ${other}`);
    throw new RangeError(
      `${where}: header length ${n} is over the ${MAX_HEADER_LENGTH}-byte limit: not a safetensors file, or a corrupt one`,
    );
  }
  const length = Number(n);
  if (8 + length > fileSize) {
    if (other) throw new SyntaxError(`${where}: ${other}`);
    throw new RangeError(
      `${where}: file is truncated: it is ${fileSize} bytes, but its header alone needs 8 + ${length} bytes`,
    );
  }
  return length;
}

/**
 * Parses and validates the JSON header (`headerBytes`, the N bytes after the length) of a file of
 * `fileSize` bytes, whose data region the tensors must cover exactly. `prefix` (the file's first
 * bytes) serves to say what the file is when the header is not JSON at all.
 */
export function parseHeaderJson(
  headerBytes: Uint8Array,
  fileSize: number,
  where: string,
  prefix: Uint8Array = headerBytes,
): SafetensorsHeader {
  const headerLength = headerBytes.byteLength;
  let first = 0;
  while (first < headerLength && isSpaceByte(headerBytes[first]!)) first++;
  if (headerBytes[first] !== 0x7b /* { */) {
    const other = identify(prefix);
    if (other) throw new SyntaxError(`${where}: ${other}`);
    const found = first < headerLength
      ? `byte 0x${headerBytes[first]!.toString(16).padStart(2, "0")}`
      : "only spaces";
    throw new SyntaxError(
      `${where}: not a safetensors file: the header should start with "{", found ${found}`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new SyntaxError(`${where}: header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new SyntaxError(`${where}: header is not valid JSON: ${detail}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new SyntaxError(`${where}: header is ${kindOf(json)}, expected a JSON object`);
  }
  const duplicate = findDuplicateKey(text);
  if (duplicate) throw new SyntaxError(`${where}: ${describeDuplicate(duplicate)}`);

  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const tensors: SafetensorsEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") metadata = checkMetadata(value, where);
    else tensors.push(checkEntry(name, value, dataStart, where));
  }
  // Stable: ties (zero-size tensors at one offset) keep the header's order.
  tensors.sort((a, b) =>
    a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]
  );
  checkCoverage(tensors, dataLength, fileSize, dataStart, where);
  return { headerLength, dataStart, dataLength, fileSize, tensors, metadata };
}

function checkMetadata(value: unknown, where: string): Record<string, string> {
  if (value === null) return {}; // MLX and others write null for "no metadata"
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new SyntaxError(
      `${where}: "__metadata__" is ${kindOf(value)}, expected an object of strings`,
    );
  }
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== "string") {
      throw new SyntaxError(
        `${where}: "__metadata__" maps ${q(key)} to ${kindOf(item)}, expected a string`,
      );
    }
  }
  return Object.fromEntries(Object.entries(value as Record<string, string>));
}

function checkEntry(
  name: string,
  value: unknown,
  dataStart: number,
  where: string,
): SafetensorsEntry {
  const tensor = `tensor ${q(name)}`;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new SyntaxError(`${where}: ${tensor} is ${kindOf(value)}, expected an object`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== "string") {
    throw new SyntaxError(
      `${where}: ${tensor} has ${dtype === undefined ? "no dtype" : `dtype ${kindOf(dtype)}`}`,
    );
  }
  if (!isDType(dtype)) {
    throw new TypeError(
      `${where}: ${tensor} has dtype ${q(dtype)}, which ffwd does not know (known: ${
        DTYPES.join(", ")
      })`,
    );
  }
  if (!isIntegerList(shape)) {
    throw new SyntaxError(
      `${where}: ${tensor} has ${
        shape === undefined ? "no shape" : `shape ${show(shape)}`
      }, expected an array of integers >= 0`,
    );
  }
  if (!isIntegerList(offsets) || offsets.length !== 2) {
    throw new SyntaxError(
      `${where}: ${tensor} has ${
        offsets === undefined ? "no data_offsets" : `data_offsets ${show(offsets)}`
      }, expected [begin, end] with integers >= 0`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) {
    throw new RangeError(
      `${where}: ${tensor} has data_offsets [${begin}, ${end}] that end before they begin`,
    );
  }
  let count = 1;
  for (const d of shape) count *= d;
  const need = count * ITEMSIZE[dtype];
  if (!Number.isSafeInteger(need)) {
    throw new RangeError(
      `${where}: ${tensor} has shape [${shape.join(", ")}], too large to address`,
    );
  }
  if (need !== end - begin) {
    throw new TypeError(
      `${where}: ${tensor} of dtype ${dtype} and shape [${
        shape.join(", ")
      }] needs ${need} bytes, but its data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return {
    name,
    dtype,
    shape: [...shape],
    dataOffsets: [begin, end],
    byteLength: need,
    fileOffset: dataStart + begin,
  };
}

function checkCoverage(
  tensors: readonly SafetensorsEntry[],
  dataLength: number,
  fileSize: number,
  dataStart: number,
  where: string,
): void {
  // A tensor past the end is most often a cut-off download: say that before anything else.
  let last: SafetensorsEntry | undefined;
  for (const t of tensors) if (!last || t.dataOffsets[1] > last.dataOffsets[1]) last = t;
  if (last && last.dataOffsets[1] > dataLength) {
    throw new RangeError(
      `${where}: file is truncated: it is ${fileSize} bytes, but tensor ${
        q(last.name)
      } ends at byte ${dataStart + last.dataOffsets[1]}`,
    );
  }
  let at = 0;
  let previous: SafetensorsEntry | undefined;
  for (const t of tensors) {
    const [begin, end] = t.dataOffsets;
    if (begin < at && previous) {
      throw new RangeError(
        `${where}: tensor ${q(t.name)} at data_offsets [${begin}, ${end}] overlaps tensor ${
          q(previous.name)
        } at [${previous.dataOffsets[0]}, ${previous.dataOffsets[1]}]`,
      );
    }
    if (begin > at) {
      throw new RangeError(
        `${where}: data bytes [${at}, ${begin}) belong to no tensor (a gap before tensor ${
          q(t.name)
        })`,
      );
    }
    at = end;
    previous = t;
  }
  if (at < dataLength) {
    throw new RangeError(
      `${where}: the last ${
        dataLength - at
      } bytes of the file belong to no tensor (the tensors cover ${at} of the ${dataLength} data bytes)`,
    );
  }
}

function describeDuplicate(d: { path: readonly string[]; key: string }): string {
  if (d.path.length === 0) {
    return d.key === "__metadata__"
      ? `header has "__metadata__" twice`
      : `header names tensor ${q(d.key)} twice`;
  }
  const owner = d.path[0] === "__metadata__" && d.path.length === 1
    ? `"__metadata__"`
    : `tensor ${q(d.path[0]!)}${d.path.slice(1).map((k) => `.${k}`).join("")}`;
  return `${owner} has the key ${q(d.key)} twice`;
}

function isSpaceByte(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function isIntegerList(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isSafeInteger(d) && d >= 0);
}

function show(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
