/**
 * Layout and streaming for the safetensors writer.
 *
 * The layout follows the Rust reference writer (`safetensors/src/tensor.rs`, `prepare`): tensors
 * sorted by dtype alignment, largest first (the order of its `Dtype` enum), then by name; offsets
 * assigned back to back from 0; the JSON header lists `__metadata__` first and then the tensors in
 * offset order, each as `{"dtype","shape","data_offsets"}`, with no whitespace; the header is padded
 * with spaces to a multiple of 8 bytes so the data region starts 8-byte aligned.
 *
 * @module
 */

import type { DType, Tensor } from "../tensor.ts";
import {
  MAX_HEADER_LENGTH,
  q,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from "./_safetensors_header.ts";
import {
  checkData,
  checkInput,
  checkName,
  compareNames,
  metadataEntries,
} from "./_safetensors_input.ts";
import { writeAll } from "../fs/atomic.ts";

/** A tensor known by dtype and shape now, whose data is produced only when it is written. */
export interface LazyTensor {
  /** Element type `load` will produce; written to the header before the data exists. */
  readonly dtype: DType;
  /** Dimensions `load` will produce; written to the header before the data exists. */
  readonly shape: readonly number[];
  /** Produces the data; called once, when the writer reaches this tensor. */
  load(): Tensor | Promise<Tensor>;
}

/** A tensor to write: in memory, or lazy. */
export type TensorInput = Tensor | LazyTensor;

/** One named tensor of an iterable input. */
export interface NamedTensor<T extends TensorInput = TensorInput> {
  /** The tensor's key in the file. */
  readonly name: string;
  /** The tensor, in memory or lazy. */
  readonly tensor: T;
}

/** Metadata strings, as a record or a map. */
export type MetadataInput = Readonly<Record<string, string>> | ReadonlyMap<string, string>;

/** The `Dtype` enum order of the reference implementation: increasing alignment. */
const ALIGNMENT_RANK: Readonly<Record<DType, number>> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  F8_E5M2: 3,
  F8_E4M3: 4,
  I16: 5,
  U16: 6,
  F16: 7,
  BF16: 8,
  I32: 9,
  U32: 10,
  F32: 11,
  F64: 12,
  I64: 13,
  U64: 14,
};

/** A tensor placed in the file, with where its data comes from. */
export interface Placed extends SafetensorsEntry {
  readonly source: TensorInput;
}

/** The planned file: its first `8 + N` bytes and the tensors in write order. */
export interface Plan {
  readonly prefix: Uint8Array;
  readonly placed: readonly Placed[];
  readonly header: SafetensorsHeader;
}

/** Puts the tensors in the reference order and builds the header bytes. */
export function planLayout(
  items: readonly NamedTensor[],
  metadata: MetadataInput | undefined,
  where: string,
): Plan {
  const seen = new Set<string>();
  const specs = items.map(({ name, tensor }) => {
    checkName(name, where);
    if (seen.has(name)) throw new TypeError(`${where}: tensor ${q(name)} is given twice`);
    seen.add(name);
    return { name, tensor, byteLength: checkInput(name, tensor, where) };
  });
  specs.sort((a, b) =>
    ALIGNMENT_RANK[b.tensor.dtype] - ALIGNMENT_RANK[a.tensor.dtype] || compareNames(a.name, b.name)
  );
  const meta = metadataEntries(metadata, where);
  let json = "{";
  if (meta) {
    json += `"__metadata__":{${meta.map(([k, v]) => `${q(k)}:${q(v)}`).join(",")}}`;
  }
  let offset = 0;
  const spans: [number, number][] = [];
  specs.forEach((s, i) => {
    spans.push([offset, offset + s.byteLength]);
    if (meta || i > 0) json += ",";
    json += `${q(s.name)}:{"dtype":"${s.tensor.dtype}","shape":[${
      s.tensor.shape.join(",")
    }],"data_offsets":[${offset},${offset + s.byteLength}]}`;
    offset += s.byteLength;
  });
  json += "}";
  const text = new TextEncoder().encode(json);
  const headerLength = text.length + ((8 - (text.length % 8)) % 8);
  if (headerLength > MAX_HEADER_LENGTH) {
    throw new RangeError(
      `${where}: header would be ${headerLength} bytes, over the ${MAX_HEADER_LENGTH}-byte limit readers accept`,
    );
  }
  const prefix = new Uint8Array(8 + headerLength).fill(0x20, 8 + text.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerLength), true);
  prefix.set(text, 8);
  const dataStart = 8 + headerLength;
  const placed: Placed[] = specs.map((s, i) => ({
    name: s.name,
    dtype: s.tensor.dtype,
    shape: [...s.tensor.shape],
    dataOffsets: spans[i]!,
    byteLength: s.byteLength,
    fileOffset: dataStart + spans[i]![0],
    source: s.tensor,
  }));
  const header: SafetensorsHeader = {
    headerLength,
    dataStart,
    dataLength: offset,
    fileSize: dataStart + offset,
    tensors: placed.map(({ source: _, ...entry }) => entry),
    metadata: Object.fromEntries(meta ?? []),
  };
  return { prefix, placed, header };
}

/** Resolves a placed tensor to its data, checking a lazy tensor delivers what it promised. */
export async function materialize(p: Placed, where: string): Promise<Tensor> {
  const source = p.source;
  if (!("load" in source)) return source;
  const t = await source.load();
  const what = `tensor ${q(p.name)} was declared ${p.dtype} [${p.shape.join(", ")}]`;
  if (
    !t || typeof t !== "object" || t.dtype !== p.dtype || t.shape.length !== p.shape.length ||
    t.shape.some((d, i) => d !== p.shape[i])
  ) {
    const got = t && typeof t === "object" && "dtype" in t
      ? `${t.dtype} [${t.shape.join(", ")}]`
      : String(t);
    throw new TypeError(`${where}: ${what}, but load() returned ${got}`);
  }
  checkData(p.name, t, where);
  return t;
}

/** Collects small writes into 1 MiB blocks; large ones go straight from the caller's buffer. */
export class BlockWriter {
  readonly #file: Deno.FsFile;
  readonly #block = new Uint8Array(1 << 20);
  #used = 0;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (bytes.byteLength >= this.#block.byteLength / 4) {
      await this.flush();
      await writeAll(this.#file, bytes);
      return;
    }
    if (this.#used + bytes.byteLength > this.#block.byteLength) await this.flush();
    this.#block.set(bytes, this.#used);
    this.#used += bytes.byteLength;
  }

  async flush(): Promise<void> {
    if (this.#used > 0) await writeAll(this.#file, this.#block.subarray(0, this.#used));
    this.#used = 0;
  }
}
