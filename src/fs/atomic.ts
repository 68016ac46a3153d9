/**
 * Atomic file writing: the bytes go to a temporary file in the destination's folder, which is
 * flushed to disk (fsync) and then renamed over the destination. A reader sees the old file or the
 * new one, never a half-written one, and a failed write leaves the old file untouched and no
 * temporary file behind. The temporary file is named `.<name>.<random>.tmp`, next to the
 * destination, because a rename is only atomic within one file system.
 *
 * @module
 */

/** Options of {@linkcode withAtomicFile} and {@linkcode writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** Permission bits of the new file, before the umask. Default `0o644`. */
  readonly mode?: number;
  /**
   * Flush the file (and the folder entry) to disk before and after the rename. Default `true`;
   * `false` still gives atomic replacement but not durability across a power cut.
   */
  readonly sync?: boolean;
}

/** Bytes to write: one buffer, or chunks from a (possibly async) iterable or a stream. */
export type ByteSource =
  | Uint8Array
  | Iterable<Uint8Array>
  | AsyncIterable<Uint8Array>
  | ReadableStream<Uint8Array>;

/**
 * Largest single write: one large `write` call into the page cache is at times many times slower
 * than the same bytes in 1 MiB pieces (`bench/write_bench.ts`: 512 MiB in one call 0.16–4.43 s,
 * in pieces 0.20–0.26 s, on a Linux guest with ext4).
 */
const WRITE_PIECE = 1 << 20;

/**
 * Writes all of `bytes` to `file`, in pieces of at most 1 MiB (large `write` calls are many
 * times slower, see `WRITE_PIECE`), looping over partial writes.
 *
 * @example
 * ```ts
 * import { writeAll } from "./atomic.ts";
 * const path = await Deno.makeTempFile();
 * using file = await Deno.open(path, { write: true });
 * await writeAll(file, new TextEncoder().encode("hello"));
 * ```
 */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.byteLength;) {
    done += await file.write(bytes.subarray(done, Math.min(bytes.byteLength, done + WRITE_PIECE)));
  }
}

/**
 * Creates a temporary file next to `path`, lets `write` fill it, then flushes it and renames it
 * over `path`. When `write` throws, the temporary file is removed and `path` is left as it was.
 * The file handle is positioned at 0 and is closed by this function: `write` must not close it.
 *
 * @example
 * ```ts
 * import { withAtomicFile, writeAll } from "./atomic.ts";
 * const path = (await Deno.makeTempDir()) + "/out.txt";
 * await withAtomicFile(path, async (file) => {
 *   await writeAll(file, new TextEncoder().encode("all or nothing"));
 * });
 * ```
 */
export async function withAtomicFile<T>(
  path: string | URL,
  write: (file: Deno.FsFile) => Promise<T>,
  options: AtomicWriteOptions = {},
): Promise<T> {
  const sync = options.sync ?? true;
  const temp = tempPathFor(path);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(temp, {
      write: true,
      createNew: true,
      mode: options.mode ?? 0o644,
    });
  } catch (error) {
    throw rewrap(error, `Cannot write "${show(path)}": ${reason(error)}`);
  }
  let closed = false;
  try {
    const result = await write(file);
    if (sync) await file.syncData();
    file.close();
    closed = true;
    await Deno.rename(temp, path);
    if (sync) await syncFolder(path);
    return result;
  } catch (error) {
    if (!closed) {
      try {
        file.close();
      } catch { /* already closed by the callback */ }
    }
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

/**
 * Atomically replaces the file at `path` with `data`: a buffer, or chunks from an iterable, an
 * async iterable or a `ReadableStream`, written one at a time as they arrive.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "./atomic.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/data.bin";
 * await writeFileAtomic(path, [new Uint8Array([1, 2]), new Uint8Array([3])]);
 * deepStrictEqual(await Deno.readFile(path), new Uint8Array([1, 2, 3]));
 * ```
 */
export async function writeFileAtomic(
  path: string | URL,
  data: ByteSource,
  options: AtomicWriteOptions = {},
): Promise<void> {
  await withAtomicFile(path, async (file) => {
    if (data instanceof Uint8Array) {
      await writeAll(file, data);
      return;
    }
    const chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array> = data instanceof ReadableStream
      ? streamChunks(data)
      : data;
    for await (const chunk of chunks) {
      if (!(chunk instanceof Uint8Array)) {
        throw new TypeError(
          `Cannot write "${show(path)}": a chunk is ${describe(chunk)}, expected a Uint8Array`,
        );
      }
      await writeAll(file, chunk);
    }
  }, options);
}

async function* streamChunks(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** `.<name>.<random>.tmp` in the folder of `path`. */
function tempPathFor(path: string | URL): string | URL {
  const random = crypto.getRandomValues(new Uint32Array(2));
  const suffix = `.${random[0]!.toString(36)}${random[1]!.toString(36)}.tmp`;
  if (path instanceof URL) {
    const name = decodeURIComponent(path.pathname.slice(path.pathname.lastIndexOf("/") + 1));
    if (name === "") throw new TypeError(`Cannot write "${path.href}": it names a folder`);
    return new URL(encodeURIComponent(`.${name}${suffix}`), path);
  }
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")) + 1;
  const name = path.slice(cut);
  if (name === "" || name === "." || name === "..") {
    throw new TypeError(`Cannot write "${path}": it names a folder`);
  }
  return `${path.slice(0, cut)}.${name}${suffix}`;
}

/** Makes the rename itself durable by flushing the folder (POSIX; a no-op where unsupported). */
async function syncFolder(path: string | URL): Promise<void> {
  if (Deno.build.os === "windows") return;
  const folder = path instanceof URL ? new URL(".", path) : folderOf(path);
  try {
    using dir = await Deno.open(folder, { read: true });
    await dir.sync();
  } catch { /* some file systems refuse to open or sync folders: the data is already synced */ }
}

function folderOf(path: string): string {
  const cut = path.lastIndexOf("/");
  if (cut < 0) return ".";
  return cut === 0 ? "/" : path.slice(0, cut);
}

function show(path: string | URL): string {
  return path instanceof URL ? path.href : path;
}

function reason(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "its folder does not exist";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied by the system";
  return error instanceof Error ? error.message : String(error);
}

/** Keeps the error's class (callers may test for `Deno.errors.NotFound`) with a clearer message. */
function rewrap(error: unknown, message: string): Error {
  for (
    const Class of [Deno.errors.NotFound, Deno.errors.PermissionDenied, Deno.errors.NotCapable]
  ) {
    if (error instanceof Class) return new Class(message, { cause: error });
  }
  return new Error(message, { cause: error });
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return `a ${typeof value}`;
  return `a ${value.constructor?.name ?? "object"}`;
}
