/**
 * Emits a graph as an ONNX model with `@bufbuild/protobuf`, at opset 17 unless a node needs a
 * newer one (`graph.minOpset`; see `_opset.ts` for the nodes rewritten on the way).
 *
 * Only the nodes needed for the outputs are written (dead-node elimination). Initializers are
 * inline, or ONNX external data: tensors already in a file (an F32 weight inside a safetensors
 * file) are referenced in place by offset and length, and large in-memory tensors are spilled to
 * a side file, so models over protobuf's 2 GiB limit work (see `_external.ts`). `float64: true`
 * emits the float64 twin of the graph: every F32 input, output, initializer, constant and cast
 * becomes F64 (external F32 weights are read as F32 and cast inside the graph).
 *
 * @module
 */

import { create } from "npm:@bufbuild/protobuf@2.17.0";
import { encodeModelFast } from "../onnx/encode.ts";
import {
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
} from "../onnx/gen/onnx_pb.ts";
import type { Tensor } from "../tensor.ts";
import { withAtomicFile, writeAll } from "../fs/atomic.ts";
import type { Graph, InitData, Value } from "./graph.ts";
import { liveNodes } from "./graph.ts";
import { type AddedTensor, irVersionFor, nodeForm, resolveOpset } from "./_opset.ts";
import { attrProto, tensorProto, valueInfo } from "./_proto.ts";
import { type CopyChunk, emitInitializers, type SpillChunk, writeSideFile } from "./_external.ts";

export { externalProto, tensorProto, valueInfo } from "./_proto.ts";
export type { CopyChunk, SpillChunk } from "./_external.ts";
export { INLINE_LIMIT } from "./_external.ts";

/** Options of {@link toModelProto}. */
export interface EmitOptions {
  /** Default-domain opset (default 17; raised to `graph.minOpset` when that is higher). */
  opset?: number;
  /** Emit the float64 twin: every F32 value becomes F64 (see the module documentation). */
  float64?: boolean;
  /** Outputs to emit (default: the graph's outputs). */
  outputs?: readonly Value[];
  /**
   * Folder the model file will be written to: external data locations are written relative to it.
   * Required when the graph references external tensors in place.
   */
  modelDir?: string;
  /** Spill in-memory initializers of at least this many bytes to `spillFile` (default: never). */
  spillThreshold?: number;
  /**
   * Spill the largest in-memory initializers until the inline ones total at most this many bytes
   * (default {@link INLINE_LIMIT}, about 1.8 GiB: protobuf cannot hold 2 GiB).
   */
  inlineLimit?: number;
  /** Name of the side file for spilled initializers, relative to the model (default `model.onnx.data`). */
  spillFile?: string;
  /**
   * External tensors are referenced in place (`"reference"`, the default) or their bytes are
   * copied into `spillFile` (`"copy"`: a self-contained model).
   */
  externalData?: "reference" | "copy";
  /** Locations to write for referenced files, by absolute path (default: relative to `modelDir`). */
  locations?: ReadonlyMap<string, string>;
  /** Extra domains to import, e.g. `{"com.microsoft": 1}`. */
  domains?: Record<string, number>;
  /**
   * Values fed from outside instead of computed (the outputs of a cached frozen prefix): their
   * producers are left out and they become graph inputs. When given (even empty), graph inputs
   * nothing reads are left out too.
   */
  fed?: readonly Value[];
}

/** An emitted model with the side file it needs, if any. */
export interface EmittedModel {
  readonly proto: ModelProto;
  /** In-memory bytes to write to `spillFile` at their offsets (each aligned to 4096 bytes). */
  readonly spill: readonly SpillChunk[];
  /** File ranges to copy into `spillFile` at their offsets (`externalData: "copy"`). */
  readonly copies: readonly CopyChunk[];
  /** Absolute paths of files referenced in place. */
  readonly referenced: readonly string[];
  /** The default-domain opset written. */
  readonly opset: number;
}

/**
 * Builds the ONNX `ModelProto` of a graph.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { toModelProto } from "./emit.ts";
 * import { relu } from "./ops/activation.ts";
 * import { strictEqual } from "node:assert/strict";
 * const g = new Graph();
 * g.output(relu(g.input("x", "F32", ["batch", 4])));
 * const { proto, opset } = toModelProto(g, { opset: 18 });
 * strictEqual(opset, 18);
 * strictEqual(proto.graph!.node[0]!.opType, "Relu");
 * ```
 */
export function toModelProto(g: Graph, opts: EmitOptions = {}): EmittedModel {
  const outputs = opts.outputs ?? g.outputs;
  if (outputs.length === 0) throw new TypeError("Cannot emit a graph with no outputs");
  for (const o of outputs) {
    if (o.graph !== g) throw new TypeError(`Cannot emit output "${o.name}" of another graph`);
  }
  const opset = resolveOpset(g, opts.opset);
  const f64 = opts.float64 ?? false;
  const fed = new Set(opts.fed ?? []);
  const nodes = liveNodes(g, outputs, fed);
  const added: AddedTensor[] = [];
  const forms = nodes.map((n) => nodeForm(n, opset, added));
  const used = new Set(outputs.map((o) => o.name));
  for (const f of forms) for (const i of f.inputs) used.add(i);
  for (const n of nodes) {
    for (const a of Object.values(n.attrs)) {
      if (a.type === "onnx") { for (const r of a.reads ?? []) used.add(r.name); }
    }
  }
  const live = [...g.initializers].filter(([v]) => used.has(v.name));
  const { initializer, casts, spill, copies, referenced } = emitInitializers(g, live, opts);
  for (const a of added) initializer.push(tensorProto(a.tensor, a.name));
  const graph = create(GraphProtoSchema, {
    name: "ffwd",
    node: [
      ...casts,
      ...nodes.map((n, k) =>
        create(NodeProtoSchema, {
          name: n.name,
          opType: n.op,
          domain: n.domain,
          input: [...forms[k]!.inputs],
          output: n.outputs.map((o) => o.name),
          attribute: Object.entries(forms[k]!.attrs).map(([key, a]) =>
            attrProto(key, n.op, a, f64)
          ),
        })
      ),
    ],
    initializer,
    input: (opts.fed ? [...g.inputs.filter((v) => used.has(v.name)), ...fed] : g.inputs)
      .map((v) => valueInfo(v.name, v.dtype, v.shape, f64)),
    output: outputs.map((v) => valueInfo(v.name, v.dtype, v.shape, f64)),
  });
  const opsetImport = [create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(opset) })];
  const domains = { ...Object.fromEntries(g.domains), ...opts.domains };
  for (const [domain, version] of Object.entries(domains)) {
    opsetImport.push(create(OperatorSetIdProtoSchema, { domain, version: BigInt(version) }));
  }
  const proto = create(ModelProtoSchema, {
    irVersion: BigInt(irVersionFor(opset)),
    producerName: "ffwd",
    producerVersion: "0.1.0",
    opsetImport,
    graph,
    metadataProps: [...g.metadata].map(([key, value]) =>
      create(StringStringEntryProtoSchema, { key, value })
    ),
  });
  return { proto, spill, copies, referenced: [...new Set(referenced)], opset };
}

/**
 * Serializes a graph whose initializers all fit inline to ONNX bytes.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { serializeOnnx } from "./emit.ts";
 * import { relu } from "./ops/activation.ts";
 * const g = new Graph();
 * g.output(relu(g.input("x", "F32", ["batch", 4])));
 * const bytes = serializeOnnx(g);
 * ```
 */
export function serializeOnnx(g: Graph, opts: EmitOptions = {}): Uint8Array {
  const { proto, spill, copies, referenced } = toModelProto(g, opts);
  if (spill.length || copies.length || referenced.length) {
    throw new TypeError(
      "Cannot serialize a model with external data to bytes: save it with saveOnnx()",
    );
  }
  return encodeModelFast(proto);
}

/**
 * Encodes a `ModelProto` as ONNX file bytes, splicing large initializers in with one copy each
 * (`src/onnx/encode.ts`); the bytes decode to the same message as `toBinary`'s.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { encodeModel, toModelProto } from "./emit.ts";
 * const g = new Graph();
 * g.output(g.input("x", "F32", [2]));
 * const bytes = encodeModel(toModelProto(g).proto);
 * ```
 */
export function encodeModel(proto: ModelProto): Uint8Array {
  return encodeModelFast(proto);
}

/** Options of {@link saveOnnx}. */
export interface SaveOptions extends Omit<EmitOptions, "modelDir" | "externalData" | "locations"> {
  /** Flush both files to disk before renaming them into place (default true). */
  sync?: boolean;
}

/** The files {@link saveOnnx} wrote. */
export interface SavedOnnx {
  /** Path of the model file (the `path` given). */
  readonly model: string;
  /** The side file, or `null` when every initializer fit inline. */
  readonly data: string | null;
}

/**
 * Writes `graph` to `path` as a self-contained ONNX model: initializers that do not fit inline
 * (and tensors referenced from other files, copied) go to `<path>.data` beside it. Both files are
 * written under temporary names and renamed into place, the side file first; a stale side file
 * from an earlier save is removed when the new model needs none.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { saveOnnx } from "./emit.ts";
 * import { relu } from "./ops/activation.ts";
 * import { strictEqual } from "node:assert/strict";
 * const g = new Graph();
 * g.output(relu(g.input("x", "F32", ["batch", 4])));
 * const dir = await Deno.makeTempDir();
 * const { model, data } = await saveOnnx(`${dir}/relu.onnx`, g);
 * strictEqual(model, `${dir}/relu.onnx`);
 * strictEqual(data, null); // every initializer fit inline: no side file
 * ```
 */
export async function saveOnnx(
  path: string,
  graph: Graph,
  opts: SaveOptions = {},
): Promise<SavedOnnx> {
  const cut = path.lastIndexOf("/") + 1;
  const dataName = opts.spillFile ?? `${path.slice(cut)}.data`;
  if (dataName === "" || dataName.includes("/") || dataName.startsWith(".")) {
    throw new TypeError(`Cannot save "${path}": invalid side file name "${dataName}"`);
  }
  const emitted = toModelProto(graph, { ...opts, spillFile: dataName, externalData: "copy" });
  const bytes = encodeModel(emitted.proto);
  const dataPath = path.slice(0, cut) + dataName;
  const hasData = emitted.spill.length > 0 || emitted.copies.length > 0;
  const sync = { sync: opts.sync ?? true };
  await withAtomicFile(path, async (file) => {
    await writeAll(file, bytes);
    if (hasData) {
      await withAtomicFile(dataPath, (f) => writeSideFile(f, emitted.spill, emitted.copies), sync);
    }
  }, sync);
  if (!hasData) {
    await Deno.remove(dataPath).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
  return { model: path, data: hasData ? dataPath : null };
}

/** Whether an initializer is held in memory. */
export function isInMemory(d: InitData): d is Tensor {
  return !("kind" in d);
}
