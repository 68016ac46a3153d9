/**
 * The open-file side of the safetensors reader: header from the first bytes, tensors by byte range.
 *
 * @module
 */

import { allocData, numel, type Tensor } from "../tensor.ts";
import {
  checkHeaderLength,
  parseHeaderJson,
  q,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from "./_safetensors_header.ts";
import type { LazyTensor } from "./_safetensors_write.ts";
import { fileError } from "../fs/file_errors.ts";

/** An open safetensors file whose header has been read and validated. */
export interface SafetensorsFile extends Disposable {
  /** The path it was opened with. */
  readonly path: string | URL;
  /** The validated header: tensors in file order with their absolute offsets, and metadata. */
  readonly header: SafetensorsHeader;
  /** The `__metadata__` strings (same as `header.metadata`). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Whether the file has a tensor called `name`. */
  has(name: string): boolean;
  /** The header entry of `name`; throws a `RangeError` naming the file when there is none. */
  entry(name: string): SafetensorsEntry;
  /** Reads one tensor: a seek and a read of exactly its bytes, into the tensor's own buffer. */
  readTensor(name: string): Promise<Tensor>;
  /** Reads every tensor, in file order. */
  readAll(): Promise<Map<string, Tensor>>;
  /** A tensor of this file that is read only when `load()` is called (for streaming rewrites). */
  lazyTensor(name: string): LazyTensor;
  /** Closes the file. Further reads fail; closing twice is harmless. */
  close(): void;
}

/** Size of the first read: the whole header of most files, one page of the rest. */
const FIRST_READ = 4096;

/** Opens `path` and reads and validates its header. */
export async function openReader(path: string | URL): Promise<SafetensorsFile> {
  const where = `Cannot read "${path instanceof URL ? path.href : path}"`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    throw fileError(error, where);
  }
  try {
    const info = await file.stat();
    if (info.isDirectory) throw new TypeError(`${where}: it is a folder, not a file`);
    const fileSize = info.size;
    const first = new Uint8Array(Math.min(fileSize, FIRST_READ));
    if (await readAt(file, 0, first) < first.byteLength) {
      throw new RangeError(`${where}: file is shorter than its reported size of ${fileSize} bytes`);
    }
    const n = checkHeaderLength(first, fileSize, where);
    let headerBytes: Uint8Array;
    if (8 + n <= first.byteLength) {
      headerBytes = first.subarray(8, 8 + n);
    } else {
      headerBytes = new Uint8Array(n);
      headerBytes.set(first.subarray(8));
      const rest = headerBytes.subarray(first.byteLength - 8);
      if (await readAt(file, first.byteLength, rest) < rest.byteLength) {
        throw new RangeError(`${where}: file became shorter while its header was read`);
      }
    }
    const header = parseHeaderJson(headerBytes, fileSize, where, first);
    return new Reader(path, file, header, where);
  } catch (error) {
    file.close();
    throw error;
  }
}

class Reader implements SafetensorsFile {
  readonly path: string | URL;
  readonly header: SafetensorsHeader;
  readonly #file: Deno.FsFile;
  readonly #where: string;
  readonly #byName: Map<string, SafetensorsEntry>;
  /** Reads share one file position: they run one after another. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(path: string | URL, file: Deno.FsFile, header: SafetensorsHeader, where: string) {
    this.path = path;
    this.header = header;
    this.#file = file;
    this.#where = where;
    this.#byName = new Map(header.tensors.map((e) => [e.name, e]));
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  entry(name: string): SafetensorsEntry {
    const e = this.#byName.get(name);
    if (e) return e;
    const names = [...this.#byName.keys()];
    const some = names.slice(0, 5).map(q).join(", ");
    throw new RangeError(
      `${this.#where}: no tensor named ${q(name)} (it has ${names.length} tensor${
        names.length === 1 ? "" : "s"
      }${names.length ? `: ${some}${names.length > 5 ? ", ..." : ""}` : ""})`,
    );
  }

  readTensor(name: string): Promise<Tensor> {
    let e: SafetensorsEntry;
    try {
      e = this.entry(name);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#exclusive(() => this.#read(e));
  }

  async readAll(): Promise<Map<string, Tensor>> {
    const out = new Map<string, Tensor>();
    for (const e of this.header.tensors) {
      out.set(
        e.name,
        await this.#exclusive(() => this.#read(e)),
      );
    }
    return out;
  }

  lazyTensor(name: string): LazyTensor {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: e.shape, load: () => this.readTensor(name) };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #exclusive<T>(run: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(run);
    this.#queue = result.catch(() => {});
    return result;
  }

  async #read(e: SafetensorsEntry): Promise<Tensor> {
    if (this.#closed) throw new TypeError(`${this.#where}: the file is closed`);
    const data = allocData(e.dtype, numel(e.shape));
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (await readAt(this.#file, e.fileOffset, bytes) < bytes.byteLength) {
      const size = (await this.#file.stat()).size;
      throw new RangeError(
        `${this.#where}: file is now ${size} bytes, but tensor ${
          q(e.name)
        } needs bytes ${e.fileOffset} to ${
          e.fileOffset + e.byteLength
        }: it was truncated after it was opened`,
      );
    }
    return { dtype: e.dtype, shape: [...e.shape], data };
  }
}

/** Reads the file's bytes from `position` into `into`; returns how many (fewer at end of file). */
async function readAt(file: Deno.FsFile, position: number, into: Uint8Array): Promise<number> {
  if (into.byteLength === 0) return 0;
  await file.seek(position, Deno.SeekMode.Start);
  let done = 0;
  while (done < into.byteLength) {
    const n = await file.read(done === 0 ? into : into.subarray(done));
    if (n === null || n === 0) break;
    done += n;
  }
  return done;
}
