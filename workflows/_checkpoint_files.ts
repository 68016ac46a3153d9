/**
 * The files of a safetensors checkpoint, for the whole-checkpoint merge (`merge_checkpoint.ts`
 * only): one `.safetensors` file, or shards named by a Hugging Face index
 * (`model.safetensors.index.json`: `{"metadata": {"total_size": …}, "weight_map": {key: file}}`,
 * as `transformers`' `save_pretrained` writes it), or the folder holding either; and where the
 * merged files go.
 *
 * @module
 */

import {
  openSafetensors,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from "../src/io/safetensors.ts";
import { absolutePath } from "../src/fs/paths.ts";
import { writeAll } from "../src/fs/atomic.ts";
import { fileError } from "../src/fs/file_errors.ts";

/** One safetensors file of a checkpoint. */
export interface Shard {
  /** The file's name, as the index names it. */
  readonly name: string;
  /** Absolute path. */
  readonly path: string;
  /** Its validated header (offsets of every tensor). */
  readonly header: SafetensorsHeader;
}

/** A checkpoint: its shards, and its index when it is sharded. */
export interface Checkpoint {
  /** The path as given. */
  readonly source: string;
  /** Absolute folder of the files. */
  readonly dir: string;
  /** The index file's name, or `null` for a single file. */
  readonly index: string | null;
  /** The files, in the index's order of first appearance. */
  readonly shards: readonly Shard[];
  /** Every tensor by key, with the file that holds it. */
  readonly tensors: ReadonlyMap<string, Located>;
}

/** A tensor's header entry and its file. */
export interface Located {
  readonly shard: Shard;
  readonly entry: SafetensorsEntry;
}

const SINGLE = "model.safetensors";
const INDEX = "model.safetensors.index.json";

/**
 * Whether `path` names a safetensors checkpoint: a `.safetensors` or `.index.json` file, or a
 * folder holding `model.safetensors.index.json` or `model.safetensors`.
 */
export async function isCheckpoint(path: string): Promise<boolean> {
  return /\.(safetensors|index\.json)$/i.test(path) || await folderFile(path) !== null;
}

/** The checkpoint file of a folder: its index, else its single file; `null` if neither. */
async function folderFile(dir: string): Promise<string | null> {
  for (const name of [INDEX, SINGLE]) {
    if (await Deno.stat(`${dir}/${name}`).then((i) => i.isFile, () => false)) {
      return `${dir}/${name}`;
    }
  }
  return null;
}

/**
 * Opens a checkpoint: a `.safetensors` file, a `.index.json`, or a folder holding
 * `model.safetensors.index.json` or `model.safetensors`. Reads only headers.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  const where = `Cannot open checkpoint "${path}"`;
  let file = absolutePath(path);
  const info = await Deno.stat(file).catch((e) => {
    throw fileError(e, where);
  });
  if (info.isDirectory) {
    const found = await folderFile(file);
    if (!found) {
      throw new Deno.errors.NotFound(`${where}: the folder holds neither ${INDEX} nor ${SINGLE}`);
    }
    file = found;
  }
  const cut = file.lastIndexOf("/");
  const dir = file.slice(0, cut) || "/", name = file.slice(cut + 1);
  const names = name.endsWith(".index.json") ? await indexShards(file, where) : null;
  const shards: Shard[] = [];
  const tensors = new Map<string, Located>();
  for (const shardName of names ? new Set(names.values()) : [name]) {
    using st = await openSafetensors(`${dir}/${shardName}`);
    const shard = { name: shardName, path: `${dir}/${shardName}`, header: st.header };
    shards.push(shard);
    for (const e of st.header.tensors) {
      const other = tensors.get(e.name);
      if (other) {
        throw new RangeError(
          `${where}: tensor "${e.name}" is in both "${other.shard.name}" and "${shardName}"`,
        );
      }
      tensors.set(e.name, { shard, entry: e });
    }
  }
  for (const [key, shardName] of names ?? []) {
    if (tensors.get(key)?.shard.name !== shardName) {
      throw new RangeError(
        `${where}: the index maps tensor "${key}" to "${shardName}", which does not hold it`,
      );
    }
  }
  return { source: path, dir, index: names ? name : null, shards, tensors };
}

/** The index's `weight_map`, checked: shard files are plain names in the index's folder. */
async function indexShards(path: string, where: string): Promise<Map<string, string>> {
  const text = await Deno.readTextFile(path).catch((e) => {
    throw fileError(e, where);
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${where}: not JSON (${(e as Error).message})`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    throw new TypeError(`${where}: it has no "weight_map" object`);
  }
  const out = new Map<string, string>();
  for (const [key, shard] of Object.entries(map)) {
    if (typeof shard !== "string" || !/^[^/\\]+\.safetensors$/.test(shard)) {
      throw new TypeError(
        `${where}: "weight_map" maps "${key}" to ${
          JSON.stringify(shard)
        }, expected a .safetensors file name in the index's folder`,
      );
    }
    out.set(key, shard);
  }
  if (out.size === 0) throw new TypeError(`${where}: its "weight_map" is empty`);
  return out;
}

/** Where the merged files go: the folder, and the output name of each input file. */
export interface OutputFiles {
  /** Absolute, existing folder. */
  readonly dir: string;
  /** Input file name → output file name (shards, then the index if any). */
  readonly names: ReadonlyMap<string, string>;
  /** The file a reader opens: the single file, or the index. */
  readonly main: string;
}

/**
 * The output of merging `ck` into `out`: a `.safetensors` file (single-file checkpoints), a
 * `.index.json` (sharded ones; shards keep their names, beside it), or an existing folder (every
 * file keeps its name). Refuses to write over any file of the checkpoint itself.
 */
export async function outputFiles(
  ck: Checkpoint,
  out: string,
  where: string,
): Promise<OutputFiles> {
  const inputs = [...ck.shards.map((s) => s.name), ...(ck.index ? [ck.index] : [])];
  const isDir = out.endsWith("/") ||
    await Deno.stat(out).then((i) => i.isDirectory, () => false);
  let dir: string, main: string | null = null;
  if (isDir) dir = out;
  else {
    const cut = out.lastIndexOf("/");
    dir = cut < 0 ? "." : out.slice(0, cut) || "/";
    main = out.slice(cut + 1);
    const sharded = main.endsWith(".index.json");
    if (!sharded && !main.endsWith(".safetensors")) {
      throw new TypeError(`${where}: give a .safetensors file, a .index.json file or a folder`);
    }
    if (sharded !== (ck.index !== null)) {
      throw new TypeError(
        ck.index
          ? `${where}: the checkpoint is sharded (${ck.shards.length} files); give a folder or a .index.json path`
          : `${where}: the checkpoint is a single file; give a .safetensors path or a folder`,
      );
    }
  }
  try {
    dir = await Deno.realPath(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${where}: its folder does not exist`);
    }
    throw e;
  }
  const names = new Map(inputs.map((n) => [n, n]));
  if (main) names.set(ck.index ?? ck.shards[0]!.name, main);
  const sources = new Set<string>();
  for (const n of inputs) sources.add(await Deno.realPath(`${ck.dir}/${n}`).catch(() => n));
  for (const n of names.values()) {
    const target = await Deno.realPath(`${dir}/${n}`).catch(() => `${dir}/${n}`);
    if (sources.has(target)) {
      throw new TypeError(`${where}: "${dir}/${n}" is a file of the checkpoint itself`);
    }
  }
  return { dir, names, main: names.get(ck.index ?? ck.shards[0]!.name)! };
}

/** Reads exactly `into.byteLength` bytes of `file` from `offset`; `where` starts the error. */
export async function readAt(
  file: Deno.FsFile,
  offset: number,
  into: Uint8Array,
  where: string,
): Promise<void> {
  await file.seek(offset, Deno.SeekMode.Start);
  for (let done = 0; done < into.byteLength;) {
    const n = await file.read(into.subarray(done));
    if (n === null) throw new RangeError(`${where}: the file ends at byte ${offset + done}`);
    done += n;
  }
}

/** Writes all of `bytes` to `file` at `offset` (in 1 MiB pieces, see `writeAll`). */
export async function writeAt(file: Deno.FsFile, offset: number, bytes: Uint8Array): Promise<void> {
  await file.seek(offset, Deno.SeekMode.Start);
  await writeAll(file, bytes);
}

/** `[start, end)` byte offsets. */
export type Range = readonly [number, number];

/**
 * Copies each range of `src` to the same offsets of the existing file `dst` (which may be shorter:
 * it grows), through one buffer of up to 16 MiB. Only the ranges are copied, not the whole file
 * (`Deno.copyFile`), since a merge rewrites the rest. The kernel's `copy_file_range` is not used:
 * Deno has no API that copies a byte range, so it would take hand-written FFI bindings to libc for
 * a Linux-only call that macOS and Windows lack, with this loop kept as their fallback anyway.
 */
export async function copyRanges(
  src: string,
  dst: string,
  ranges: readonly Range[],
): Promise<void> {
  if (ranges.length === 0) return;
  using from = await Deno.open(src, { read: true });
  using to = await Deno.open(dst, { write: true });
  const buf = new Uint8Array(Math.min(16 << 20, Math.max(...ranges.map(([a, b]) => b - a))));
  for (const [start, end] of ranges) {
    for (let at = start; at < end; at += buf.length) {
      const part = buf.subarray(0, Math.min(buf.length, end - at));
      await readAt(from, at, part, `Cannot read "${src}"`);
      await writeAt(to, at, part);
    }
  }
}
