/**
 * Prepares a graph for an onnxruntime session: the model bytes, and when initializers live in
 * files, the folder their locations are relative to (see `_external.ts` for why the session is
 * created from bytes with `session.model_external_initializers_file_folder_path` rather than from
 * a model file beside links to the referenced files).
 *
 * @module
 */

import type { Tensor } from "../tensor.ts";
import { type ExternalTensor, liveNodes, type Value } from "./graph.ts";
import type { Graph } from "./graph.ts";
import { type EmitOptions, encodeModel, isInMemory, toModelProto } from "./emit.ts";
import { commonRoot, dirname, planSpill, relativeInside, writeSideFile } from "./_external.ts";

/** What `Session.compile` hands to onnxruntime. */
export interface Staged {
  readonly model: Uint8Array;
  /** Folder external data locations are relative to, or `null` when every tensor is inline. */
  readonly folder: string | null;
  /** Temporary folder holding the spill file, or `null`. */
  readonly tempDir: string | null;
}

/** Emits `graph` for a session, writing spilled initializers to a temporary side file. */
export async function stage(graph: Graph, opts: EmitOptions): Promise<Staged> {
  const outputs = opts.outputs ?? graph.outputs;
  const used = new Set<Value>(outputs);
  for (const n of liveNodes(graph, outputs, new Set(opts.fed ?? []))) {
    for (const i of n.inputs) if (i) used.add(i);
    for (const a of Object.values(n.attrs)) {
      if (a.type === "onnx") a.reads?.forEach((r) => used.add(r));
    }
  }
  const inMemory = new Map<Value, Tensor>();
  const external: [Value, ExternalTensor][] = [];
  for (const [v, d] of graph.initializers) {
    if (!used.has(v)) continue;
    if (isInMemory(d)) inMemory.set(v, d);
    else external.push([v, d]);
  }
  const spills = planSpill(inMemory, opts).size > 0;
  const emitOpts: EmitOptions = { ...opts, externalData: "reference" };
  if (!spills && external.length === 0) {
    return { model: encodeModel(toModelProto(graph, emitOpts).proto), folder: null, tempDir: null };
  }
  const real = new Map<string, string>();
  for (const [v, ext] of external) real.set(ext.path, await checkedRealPath(v, ext));
  const tempDir = spills ? await Deno.makeTempDir({ prefix: "ffwd-session-" }) : null;
  try {
    // Real paths: onnxruntime resolves symbolic links before checking a location is inside.
    const spillPath = tempDir ? `${await Deno.realPath(tempDir)}/model.onnx.data` : null;
    const folders = [...real.values()].map(dirname);
    if (spillPath) folders.push(dirname(spillPath));
    const folder = commonRoot(folders);
    const inside = (p: string) => relativeInside(folder, p)!;
    const emitted = toModelProto(graph, {
      ...emitOpts,
      locations: new Map([...real].map(([p, r]) => [p, inside(r)])),
      spillFile: spillPath ? inside(spillPath) : undefined,
    });
    if (spillPath) {
      using file = await Deno.open(spillPath, { write: true, createNew: true });
      await writeSideFile(file, emitted.spill, emitted.copies);
    }
    return { model: encodeModel(emitted.proto), folder, tempDir };
  } catch (e) {
    if (tempDir) await Deno.remove(tempDir, { recursive: true }).catch(() => {});
    throw e;
  }
}

async function checkedRealPath(v: Value, ext: ExternalTensor): Promise<string> {
  let info: Deno.FileInfo;
  let real: string;
  try {
    real = await Deno.realPath(ext.path);
    info = await Deno.stat(real);
  } catch (e) {
    throw new TypeError(
      `Cannot read external data of "${v.name}" from "${ext.path}": ${
        e instanceof Error ? e.message : String(e)
      }`,
      { cause: e },
    );
  }
  if (!info.isFile || info.size < ext.offset + ext.length) {
    throw new RangeError(
      `Cannot read external data of "${v.name}": bytes ${ext.offset}..${
        ext.offset + ext.length
      } are past the end of "${ext.path}" (${info.size} bytes)`,
    );
  }
  return real;
}
