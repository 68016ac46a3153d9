/**
 * Checking what callers hand to the safetensors writer: collections, names, tensors, metadata.
 *
 * @module
 */

import { allocData, isDType, numel, type Tensor } from "../tensor.ts";
import { q } from "./_safetensors_header.ts";
import type { MetadataInput, NamedTensor, TensorInput } from "./_safetensors_write.ts";

/** Compares by Unicode code points, which is the byte order of UTF-8 (Rust's `String` order). */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** Turns any accepted collection into a list of named tensors (async iterables are drained). */
export async function collect(
  tensors:
    | ReadonlyMap<string, TensorInput>
    | Readonly<Record<string, TensorInput>>
    | Iterable<NamedTensor>
    | AsyncIterable<NamedTensor>,
  where: string,
): Promise<NamedTensor[]> {
  if (tensors instanceof Map) {
    return [...(tensors as ReadonlyMap<string, TensorInput>)].map(([name, tensor]) => ({
      name,
      tensor,
    }));
  }
  if (Symbol.asyncIterator in tensors || Symbol.iterator in tensors) {
    const out: NamedTensor[] = [];
    for await (const item of tensors as AsyncIterable<NamedTensor>) {
      out.push(checkItem(item, where));
    }
    return out;
  }
  return Object.entries(tensors as Record<string, TensorInput>).map(([name, tensor]) => ({
    name,
    tensor,
  }));
}

/** The synchronous twin of {@linkcode collect}, for in-memory tensors. */
export function collectSync(
  tensors:
    | ReadonlyMap<string, Tensor>
    | Readonly<Record<string, Tensor>>
    | Iterable<NamedTensor<Tensor>>,
  where: string,
): NamedTensor[] {
  if (tensors instanceof Map) {
    return [...(tensors as ReadonlyMap<string, Tensor>)].map(([name, tensor]) => ({
      name,
      tensor,
    }));
  }
  if (Symbol.iterator in tensors) {
    return [...(tensors as Iterable<NamedTensor>)].map((item) => checkItem(item, where));
  }
  return Object.entries(tensors as Record<string, Tensor>).map(([name, tensor]) => ({
    name,
    tensor,
  }));
}

function checkItem(item: unknown, where: string): NamedTensor {
  if (
    item === null || typeof item !== "object" || !("name" in item) || !("tensor" in item) ||
    typeof item.name !== "string"
  ) {
    throw new TypeError(`${where}: each item must be {name, tensor}, got ${String(item)}`);
  }
  return item as NamedTensor;
}

export function checkName(name: string, where: string): void {
  if (typeof name !== "string") {
    throw new TypeError(`${where}: tensor name ${String(name)} is not a string`);
  }
  if (name === "__metadata__") {
    throw new TypeError(`${where}: "__metadata__" is reserved and cannot name a tensor`);
  }
  if (!name.isWellFormed()) {
    throw new TypeError(`${where}: tensor name ${q(name)} is not valid Unicode (lone surrogate)`);
  }
}

/** Validates dtype and shape (and the data of an in-memory tensor); returns the byte length. */
export function checkInput(name: string, t: TensorInput, where: string): number {
  if (t === null || typeof t !== "object" || !("dtype" in t) || !("shape" in t)) {
    throw new TypeError(
      `${where}: tensor ${q(name)} is ${String(t)}, expected a Tensor or {dtype, shape, load}`,
    );
  }
  if (typeof t.dtype !== "string" || !isDType(t.dtype)) {
    throw new TypeError(`${where}: tensor ${q(name)} has unknown dtype ${q(String(t.dtype))}`);
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RangeError(
      `${where}: tensor ${q(name)} has shape ${JSON.stringify(t.shape)}, expected integers >= 0`,
    );
  }
  if ("load" in t) {
    if (typeof t.load !== "function") {
      throw new TypeError(`${where}: tensor ${q(name)} has a load that is not a function`);
    }
  } else {
    checkData(name, t, where);
  }
  return numel(t.shape) * allocData(t.dtype, 0).BYTES_PER_ELEMENT;
}

export function checkData(name: string, t: Tensor, where: string): void {
  const Expected = allocData(t.dtype, 0).constructor as new () => unknown;
  if (!(t.data instanceof Expected)) {
    throw new TypeError(
      `${where}: tensor ${q(name)} has dtype ${t.dtype}, but its data is a ${
        (t.data as object | undefined)?.constructor?.name ?? String(t.data)
      }, expected a ${Expected.name}`,
    );
  }
  if (t.data.length !== numel(t.shape)) {
    throw new TypeError(
      `${where}: tensor ${q(name)} has shape [${
        t.shape.join(", ")
      }] but ${t.data.length} elements of data, expected ${numel(t.shape)}`,
    );
  }
}

export function metadataEntries(
  metadata: MetadataInput | undefined,
  where: string,
): [string, string][] | undefined {
  if (metadata === undefined) return undefined;
  const entries = metadata instanceof Map
    ? [...(metadata as ReadonlyMap<string, string>)]
    : Object.entries(metadata);
  for (const [key, value] of entries) {
    if (typeof value !== "string") {
      throw new TypeError(
        `${where}: metadata ${q(key)} is ${
          value === null ? "null" : `a ${typeof value}`
        }, expected a string`,
      );
    }
    if (!key.isWellFormed() || !value.isWellFormed()) {
      throw new TypeError(`${where}: metadata ${q(key)} is not valid Unicode (lone surrogate)`);
    }
  }
  return entries.sort(([a], [b]) => compareNames(a, b));
}
