/**
 * The pre-packed cache behind `SessionOptions.prepackCache`: onnxruntime's optimized model of a
 * session, saved with its pre-packed GEMM weights, reopened on the next start.
 *
 * onnxruntime 1.30 writes the optimized model with every initializer of 1 KiB or more, and the
 * blobs it pre-packed from them, to an external data file
 * (`session.save_external_prepacked_constant_initializers`). A session opened from that model
 * maps the pre-packed blobs from the file instead of holding its own copy on the heap: the
 * private memory of a big base drops by about the weights' size, and servers of one base share
 * the pages. It does not skip the packing: onnxruntime finds a saved blob by the hash of the
 * bytes it has just packed (`op_type + "+" + hash`, `PrepackedWeightsForGraph` in
 * onnxruntime's `prepacked_weights_container.h`), so it packs every weight again.
 *
 * An entry is `<cache>/<key>/` with `model.onnx`, `model.onnx.data` (the weights and their
 * pre-packed blobs: about twice the weights' size) and `entry.json`, written last, with each
 * file's size and the model's SHA-256. It is filled in a staging folder, flushed to disk and
 * renamed into place (`writeFolderAtomic`), so a reader finds a complete entry or none. The data
 * file is checked by its size only: hashing it would read all of it at each start, the original
 * weights that a hit never touches included.
 *
 * The key is the SHA-256 of everything onnxruntime's result depends on: the staged model bytes
 * (the spill file's random folder masked), the in-memory initializers' bytes, each external
 * file's real path, size, mtime, ctime and inode, the session options, onnxruntime's version and
 * the CPU (an optimized model at level `all` carries hardware-specific layouts, onnxruntime
 * warns). An entry that fails its checks or that onnxruntime refuses is removed and filled
 * again; when the cache cannot be used at all the session starts normally: the cache never
 * fails a start.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, type Hash } from "node:crypto";
import * as ort from "npm:onnxruntime-node@1.30.0";
import { writeAll } from "../fs/atomic.ts";
import { writeFolderAtomic } from "../fs/atomic_folder.ts";
import { absolutePath } from "../fs/paths.ts";
import type { Graph } from "./graph.ts";
import { isInMemory } from "./emit.ts";
import { relativeInside } from "./_external.ts";
import type { Staged } from "./_stage.ts";

/** How a session used the pre-packed cache (`Session.cache`). */
export interface PrepackCacheUse {
  /** The entry's folder (the cache's own when the cache could not be used at all). */
  readonly entry: string;
  /**
   * `hit`: opened from the entry; `filled`: created normally and saved into the entry;
   * `unsaved`: created normally, the entry could not be written (`error` says why).
   */
  readonly outcome: "hit" | "filled" | "unsaved";
  /** Why an existing entry was discarded before filling it again. */
  readonly replaced?: string;
  /** Why the entry could not be written. */
  readonly error?: string;
}

type Options = ort.InferenceSession.SessionOptions;

const FORMAT = "ffwd-prepack-cache/1";
const MODEL = "model.onnx";
const DATA = "model.onnx.data";
const MANIFEST = "entry.json";
const OWNED = [MODEL, DATA, MANIFEST];
/** Staging and discarded folders this old belong to a process that died (a fill takes minutes). */
const STALE_MS = 60 * 60 * 1000;
const STRAY = /^\.[0-9a-f]{64}\.[0-9a-z]+\.(tmp|old)$/;

interface Manifest {
  readonly format: string;
  readonly key: string;
  readonly onnxruntime: string;
  readonly files: Record<string, { readonly bytes: number; readonly sha256?: string }>;
}

/**
 * Creates the session of `staged` through the cache folder `dir`: from the entry of its key when
 * that entry is complete, else normally while saving the entry. `options` are those of a normal
 * start. Only the normal start's own failure is thrown.
 */
export async function createCached(
  dir: string,
  graph: Graph,
  staged: Staged,
  options: Options,
): Promise<{ session: ort.InferenceSession; cache: PrepackCacheUse }> {
  const root = absolutePath(dir);
  let entry = root;
  let key: string;
  try {
    await Deno.mkdir(root, { recursive: true });
    await sweep(root);
    key = await entryKey(graph, staged, options);
    entry = `${root}/${key}`;
  } catch (e) {
    const session = await ort.InferenceSession.create(staged.model, options);
    return { session, cache: { entry, outcome: "unsaved", error: message(e) } };
  }
  return await openOrFill(entry, key, staged, options);
}

async function openOrFill(
  entry: string,
  key: string,
  staged: Staged,
  options: Options,
): Promise<{ session: ort.InferenceSession; cache: PrepackCacheUse }> {
  const problem = await checkEntry(entry, key).catch((e) => `cannot check it: ${message(e)}`);
  let replaced: string | undefined;
  if (problem === null) {
    try {
      const session = await ort.InferenceSession.create(`${entry}/${MODEL}`, hitOptions(options));
      return { session, cache: { entry, outcome: "hit" } };
    } catch (e) {
      replaced = `onnxruntime cannot open it: ${message(e)}`;
    }
  } else if (problem !== ABSENT) replaced = problem;
  if (replaced !== undefined) await discard(entry);
  const made: { session?: ort.InferenceSession } = {};
  try {
    await writeFolderAtomic(entry, OWNED, async (staging) => {
      made.session = await ort.InferenceSession.create(staged.model, fillOptions(options, staging));
      await writeManifest(staging, key);
    }, "pre-packed cache entry");
    return { session: made.session!, cache: { entry, outcome: "filled", replaced } };
  } catch (e) {
    // A fill that failed before the session existed may have failed over the saving only.
    const session = made.session ?? await ort.InferenceSession.create(staged.model, options);
    return { session, cache: { entry, outcome: "unsaved", replaced, error: message(e) } };
  }
}

/** The key of `staged` with `options`: a SHA-256 in hex. */
async function entryKey(graph: Graph, staged: Staged, options: Options): Promise<string> {
  const h = createHash("sha256");
  const field = (name: string, value: string | Uint8Array) => {
    h.update(`${name}:${typeof value === "string" ? Buffer.byteLength(value) : value.byteLength}:`);
    h.update(value);
  };
  field("format", FORMAT);
  field("onnxruntime", ortVersion());
  field("machine", await machine());
  field("options", JSON.stringify(hitOptions(options)));
  // The spill file sits in a fresh temporary folder whose name is in the model's locations.
  const spill = staged.tempDir && staged.folder
    ? relativeInside(staged.folder, await Deno.realPath(staged.tempDir))
    : null;
  hashMasked(h, staged.model, spill);
  const paths = new Set<string>();
  for (const d of graph.initializers.values()) if (!isInMemory(d)) paths.add(d.path);
  for (const p of [...paths].sort()) field("source", await fileIdentity(p));
  for (const [v, d] of graph.initializers) {
    if (!isInMemory(d)) continue;
    field("tensor", `${v.name} ${d.dtype} [${d.shape.join(",")}]`);
    field("bytes", new Uint8Array(d.data.buffer, d.data.byteOffset, d.data.byteLength));
  }
  return h.digest("hex");
}

/** Hashes `bytes` with every occurrence of `mask` replaced by a fixed marker. */
function hashMasked(h: Hash, bytes: Uint8Array, mask: string | null): void {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  h.update(`model:${bytes.byteLength}:`);
  if (!mask) return void h.update(buf);
  let from = 0;
  for (let at = buf.indexOf(mask, from); at >= 0; at = buf.indexOf(mask, from)) {
    h.update(buf.subarray(from, at));
    h.update("\0spill\0");
    from = at + Buffer.byteLength(mask);
  }
  h.update(buf.subarray(from));
}

async function fileIdentity(path: string): Promise<string> {
  try {
    const real = await Deno.realPath(path);
    const s = await Deno.stat(real);
    return [real, s.size, s.mtime?.getTime(), s.ctime?.getTime(), s.dev, s.ino].join(" ");
  } catch (e) {
    return `${path} unreadable: ${message(e)}`;
  }
}

/** The CPU an optimized model was made for: target triple, and on Linux its model and flags. */
async function machine(): Promise<string> {
  let cpu = "";
  if (Deno.build.os === "linux") {
    const info = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
    cpu = ["model name", "flags", "Features"]
      .map((k) => info.match(new RegExp(`^${k}\\s*:(.*)$`, "m"))?.[1]?.trim() ?? "")
      .join("\n");
  }
  return `${Deno.build.target}\n${cpu}`;
}

function ortVersion(): string {
  const v = ort.env.versions;
  return `${v.common} ${v.node ?? ""}`;
}

/** The normal start's options less the external data folder: a saved entry needs none. */
function hitOptions(options: Options): Options {
  const session = { ...(options.extra?.session as Record<string, string> | undefined) };
  delete session.model_external_initializers_file_folder_path;
  const { extra: _extra, ...rest } = options;
  return Object.keys(session).length ? { ...rest, extra: { session } } : rest;
}

function fillOptions(options: Options, staging: string): Options {
  return {
    ...options,
    optimizedModelFilePath: `${staging}/${MODEL}`,
    // Its warning that the saved model suits this machine only: the key names the machine.
    logSeverityLevel: 3,
    extra: {
      ...options.extra,
      session: {
        ...(options.extra?.session as Record<string, string> | undefined),
        optimized_model_external_initializers_file_name: DATA,
        optimized_model_external_initializers_min_size_in_bytes: "1024",
        save_external_prepacked_constant_initializers: "1",
      },
    },
  };
}

/** Flushes the files onnxruntime wrote and describes them in the manifest, written last. */
async function writeManifest(staging: string, key: string): Promise<void> {
  const files: Record<string, { bytes: number; sha256?: string }> = {};
  for (const name of [MODEL, DATA]) {
    const path = `${staging}/${name}`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true });
    } catch (e) {
      if (name === DATA && e instanceof Deno.errors.NotFound) continue; // nothing of 1 KiB
      throw new Error(`onnxruntime did not write "${path}": ${message(e)}`, { cause: e });
    }
    using _ = file;
    await file.syncData();
    const bytes = (await file.stat()).size;
    files[name] = name === MODEL ? { bytes, sha256: sha256(await Deno.readFile(path)) } : { bytes };
  }
  const manifest: Manifest = { format: FORMAT, key, onnxruntime: ortVersion(), files };
  using file = await Deno.open(`${staging}/${MANIFEST}`, { write: true, createNew: true });
  await writeAll(file, new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n"));
  await file.syncData();
}

const ABSENT = Symbol("absent");

/** `null` when the entry is complete, `ABSENT` when there is none, else what is wrong with it. */
async function checkEntry(entry: string, key: string): Promise<string | null | typeof ABSENT> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${entry}/${MANIFEST}`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) return `cannot read ${MANIFEST}: ${message(e)}`;
    const there = await Deno.lstat(entry).then(() => true, () => false);
    return there ? `${MANIFEST} is missing` : ABSENT;
  }
  let m: Manifest;
  try {
    m = JSON.parse(text);
  } catch {
    return `${MANIFEST} is not JSON`;
  }
  if (m?.format !== FORMAT || m.key !== key || typeof m.files !== "object" || !m.files?.[MODEL]) {
    return `${MANIFEST} does not describe an entry of key ${key} in format ${FORMAT}`;
  }
  for (const [name, want] of Object.entries(m.files)) {
    if (!OWNED.includes(name)) return `${MANIFEST} lists "${name}", expected ${MODEL} and ${DATA}`;
    const size = await Deno.stat(`${entry}/${name}`).then((s) => s.size, () => null);
    if (size === null) return `${name} is missing`;
    if (size !== want?.bytes) return `${name} has ${size} bytes, expected ${want?.bytes}`;
    if (
      want.sha256 !== undefined && sha256(await Deno.readFile(`${entry}/${name}`)) !== want.sha256
    ) {
      return `${name} does not match its SHA-256 in ${MANIFEST}`;
    }
  }
  return null;
}

/** Moves `entry` aside, then removes it: readers see it whole or not at all. */
async function discard(entry: string): Promise<void> {
  const cut = entry.lastIndexOf("/");
  const aside = `${entry.slice(0, cut)}/.${entry.slice(cut + 1)}.${randomName()}.old`;
  try {
    await Deno.rename(entry, aside);
  } catch {
    return; // gone already, or never there
  }
  await Deno.remove(aside, { recursive: true }).catch(() => {});
}

/** Removes staging and discarded folders left by processes that died during a fill. */
async function sweep(root: string): Promise<void> {
  const now = Date.now();
  for await (const e of Deno.readDir(root)) {
    if (!e.isDirectory || !STRAY.test(e.name)) continue;
    const path = `${root}/${e.name}`;
    try {
      let newest = (await Deno.stat(path)).mtime?.getTime() ?? now;
      for await (const f of Deno.readDir(path)) {
        newest = Math.max(newest, (await Deno.stat(`${path}/${f.name}`)).mtime?.getTime() ?? now);
      }
      if (now - newest > STALE_MS) await Deno.remove(path, { recursive: true });
    } catch { /* another process removed or renamed it */ }
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function randomName(): string {
  return crypto.getRandomValues(new Uint32Array(2)).reduce((s, v) => s + v.toString(36), "");
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
