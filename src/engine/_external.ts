/**
 * ONNX external data for the emitter and the runtime: how each initializer is written (inline,
 * spilled to a side file, copied into it, or referenced in place), relative locations, and
 * writing the side file. Spilled and copied tensors start on 4096-byte boundaries: onnxruntime
 * then maps them from the file instead of reading them into its own memory.
 *
 * onnxruntime 1.30 refuses external-data locations that are absolute or that resolve (through
 * `..` or symbolic links) outside the model's folder:
 * `External data path escapes model directory`, `Absolute path not allowed for external data
 * location`. Hard links are accepted but fail across file systems. So the runtime creates the
 * session from bytes and names the folder external data is relative to through the session
 * config key `session.model_external_initializers_file_folder_path`, set to the common ancestor
 * of the referenced files' real paths: locations stay relative, nothing is linked or copied.
 *
 * @module
 */

import type { NodeProto, TensorProto } from "../onnx/gen/onnx_pb.ts";
import type { Tensor } from "../tensor.ts";
import type { EmitOptions } from "./emit.ts";
import type { ExternalTensor, Graph, InitData, Value } from "./graph.ts";
import { freeName } from "./_opset.ts";
import { castToDouble, externalProto, tensorProto, twinTensor } from "./_proto.ts";

/**
 * Inline initializers are kept below this many bytes: protobuf cannot encode a message of 2 GiB
 * or more, and the rest of the model needs some room.
 */
export const INLINE_LIMIT = Math.floor(1.8 * 2 ** 30);

/** Spilled tensors start on page boundaries, so onnxruntime can map them instead of reading. */
export const SPILL_ALIGN = 4096;

/**
 * Once the inline limit is exceeded, every initializer of at least this size is spilled, not
 * just enough of them: onnxruntime maps page-aligned external data from the file, while an inline
 * tensor costs a copy in the encoded model, another when onnxruntime parses it, and its own.
 */
export const AUTO_SPILL_MIN = 2 ** 20;

/**
 * Which in-memory initializers to move to the side file: those of at least `spillThreshold`
 * bytes, and when the rest would exceed `inlineLimit`, every one of at least 1 MiB and then the
 * largest until the inline ones fit.
 */
export function planSpill(
  inits: ReadonlyMap<Value, Tensor>,
  opts: { float64?: boolean; spillThreshold?: number; inlineLimit?: number },
): Set<Value> {
  const sizes = [...inits].map(([v, t]) =>
    [v, t.data.byteLength * (opts.float64 && t.dtype === "F32" ? 2 : 1)] as const
  );
  const spill = new Set<Value>();
  let inline = 0;
  for (const [v, size] of sizes) {
    if (opts.spillThreshold !== undefined && size >= opts.spillThreshold) spill.add(v);
    else inline += size;
  }
  const limit = opts.inlineLimit ?? INLINE_LIMIT;
  if (inline <= limit) return spill;
  const rest = sizes.filter(([v]) => !spill.has(v)).sort((a, b) => b[1] - a[1]);
  for (const [v, size] of rest) {
    if (inline <= limit && size < AUTO_SPILL_MIN) break;
    spill.add(v);
    inline -= size;
  }
  return spill;
}

/** Rounds `n` up to the spill alignment. */
export const alignUp = (n: number): number => Math.ceil(n / SPILL_ALIGN) * SPILL_ALIGN;

/** The path of `path` relative to the folder `root`, or `null` when it is not inside `root`. */
export function relativeInside(root: string, path: string): string | null {
  const r = normalize(root);
  const p = normalize(path);
  if (p.length <= r.length || r.some((s, i) => p[i] !== s)) return null;
  return p.slice(r.length).join("/");
}

/** The location of `ext` relative to the model folder `dir`, failing when ORT would refuse it. */
export function locate(dir: string | undefined, ext: ExternalTensor, name: string): string {
  if (!dir) {
    throw new TypeError(
      `Cannot reference external data of "${name}": the model folder is not known`,
    );
  }
  const location = relativeInside(dir, ext.path);
  if (location === null) {
    throw new TypeError(
      `Cannot reference external data of "${name}": "${ext.path}" is outside the model folder ` +
        `"${dir}" and onnxruntime refuses such locations; save the model with saveOnnx()`,
    );
  }
  return location;
}

/** The deepest folder containing every path (`/` at worst). */
export function commonRoot(paths: readonly string[]): string {
  const parts = paths.map(normalize);
  const first = parts[0] ?? [];
  let n = first.length;
  for (const p of parts) {
    let i = 0;
    while (i < n && i < p.length && p[i] === first[i]) i++;
    n = i;
  }
  return "/" + first.slice(0, n).join("/");
}

/** The folder of an absolute path. */
export function dirname(path: string): string {
  const parts = normalize(path);
  return "/" + parts.slice(0, -1).join("/");
}

/** Absolute-path segments, with `.` and `..` resolved lexically. */
function normalize(path: string): string[] {
  if (!path.startsWith("/")) throw new TypeError(`Expected an absolute path, got "${path}"`);
  const out: string[] = [];
  for (const s of path.split("/")) {
    if (s === "" || s === ".") continue;
    if (s === "..") out.pop();
    else out.push(s);
  }
  return out;
}

/** Initializer protos, with the side-file chunks and in-place references they need. */
export interface EmittedInitializers {
  readonly initializer: TensorProto[];
  /** Casts to double of external F32 tensors (float64 twin). */
  readonly casts: NodeProto[];
  readonly spill: SpillChunk[];
  readonly copies: CopyChunk[];
  readonly referenced: string[];
}

/** The initializers as written: inline, spilled, copied or referenced in place. */
export function emitInitializers(
  g: Graph,
  live: readonly [Value, InitData][],
  opts: EmitOptions,
): EmittedInitializers {
  const f64 = opts.float64 ?? false;
  const inMemory = new Map(live.filter((e): e is [Value, Tensor] => !("kind" in e[1])));
  const spilled = planSpill(inMemory, opts);
  const spillFile = opts.spillFile ?? "model.onnx.data";
  const out: EmittedInitializers = {
    initializer: [],
    casts: [],
    spill: [],
    copies: [],
    referenced: [],
  };
  let end = 0; // of the side file
  for (const [v, data] of live) {
    if (!("kind" in data)) {
      const t = twinTensor(data, f64);
      if (!spilled.has(v)) {
        out.initializer.push(tensorProto(t, v.name));
        continue;
      }
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      out.spill.push({ offset: end, bytes });
      const length = bytes.byteLength;
      out.initializer.push(
        externalProto(v.name, { ...t, location: spillFile, offset: end, length }),
      );
      end = alignUp(end + length);
      continue;
    }
    let name = v.name;
    if (f64 && data.dtype === "F32") {
      name = freeName(g, `${v.name}.f32`, []);
      out.casts.push(castToDouble(name, v.name));
    }
    if (opts.externalData === "copy") {
      const { path, offset: sourceOffset, length } = data;
      out.copies.push({ offset: end, path, sourceOffset, length });
      out.initializer.push(externalProto(name, { ...data, location: spillFile, offset: end }));
      end = alignUp(end + length);
    } else {
      out.referenced.push(data.path);
      const location = opts.locations?.get(data.path) ?? locate(opts.modelDir, data, v.name);
      out.initializer.push(externalProto(name, { ...data, location }));
    }
  }
  return out;
}

/** Bytes of the side file taken from memory. */
export interface SpillChunk {
  readonly offset: number;
  readonly bytes: Uint8Array;
}

/** Bytes of the side file copied from a range of another file. */
export interface CopyChunk {
  readonly offset: number;
  readonly path: string;
  readonly sourceOffset: number;
  readonly length: number;
}

const COPY_BUFFER = 16 << 20;

/** Writes the chunks into `file` at their offsets (zeros in the alignment gaps). */
export async function writeSideFile(
  file: Deno.FsFile,
  spill: readonly SpillChunk[],
  copies: readonly CopyChunk[],
): Promise<void> {
  const chunks = [...spill, ...copies].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const c of chunks) {
    if (c.offset !== end) await file.seek(c.offset, Deno.SeekMode.Start);
    if ("bytes" in c) {
      await writeAll(file, c.bytes);
      end = c.offset + c.bytes.byteLength;
    } else {
      await copyRange(file, c);
      end = c.offset + c.length;
    }
  }
  await file.truncate(end);
}

async function copyRange(to: Deno.FsFile, c: CopyChunk): Promise<void> {
  using from = await Deno.open(c.path, { read: true });
  await from.seek(c.sourceOffset, Deno.SeekMode.Start);
  const buf = new Uint8Array(Math.min(COPY_BUFFER, Math.max(c.length, 1)));
  let left = c.length;
  while (left > 0) {
    const n = await from.read(buf.subarray(0, Math.min(buf.byteLength, left)));
    if (n === null) {
      throw new RangeError(
        `Cannot copy external data: "${c.path}" ends before offset ${c.sourceOffset + c.length}`,
      );
    }
    await writeAll(to, buf.subarray(0, n));
    left -= n;
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) done += await file.write(bytes.subarray(done));
}
