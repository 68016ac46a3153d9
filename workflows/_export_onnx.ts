/**
 * Writing exported ONNX files (imported by `export.ts` only):
 *
 * - {@linkcode writePatchedOnnx}: an ONNX base's own graph, decoded (`OnnxModel.proto`), with only
 *   the changed initializers (or `Constant` values) replaced: names, inputs, outputs, opsets and
 *   every other tensor stay as they were, each replaced tensor in its original dtype. Tensors the
 *   source kept as external data are copied into `<name>.data` beside the new file, and inline
 *   tensors of 1 MiB or more go there too when the model would pass protobuf's 2 GiB limit.
 * - {@linkcode writeGraphOnnx}: a graph built by ffwd (opset 17, symbolic batch) through `saveOnnx`.
 *   Weights that a safetensors base references in place are inlined when the model is small, so a
 *   small export is one self-contained file; large ones go to the side file.
 *
 * @module
 */

import { create } from "npm:@bufbuild/protobuf@2.17.0";
import {
  type GraphProto,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from "../src/onnx/gen/onnx_pb.ts";
import { encodeModel, INLINE_LIMIT, saveOnnx, tensorProto } from "../src/engine/emit.ts";
import { Graph } from "../src/engine/graph.ts";
import { externalProto } from "../src/engine/emit.ts";
import { writeAll } from "../src/fs/atomic.ts";
import type { OnnxModel } from "../src/models/onnx/import.ts";
import type { BaseModel } from "../src/models/model.ts";
import { dtypeOfCode, isExternal, tensorFromProto } from "../src/io/onnx/tensor_proto.ts";
import { fromBytes, ITEMSIZE, numel, type Tensor, toBytes } from "../src/tensor.ts";

const ALIGN = 4096;
const SPILL_MIN = 2 ** 20;

/**
 * Where the import made a fixed leading input dimension the symbolic batch (see the ONNX
 * importer), the export declares it so too: the inputs, and the outputs whose leading dimension
 * was that same number, get the dimension `batch`, and the intermediate value infos, which may
 * carry the old size, are dropped (onnxruntime infers them). Otherwise nothing changes.
 */
function freedBatch(model: OnnxModel): Partial<Pick<GraphProto, "input" | "output" | "valueInfo">> {
  const graph = model.proto.graph!;
  const imported = new Map(model.inputs.map((i) => [i.name, i.shape]));
  const lead = (v: ValueInfoProto) => {
    const t = v.type?.value.case === "tensorType" ? v.type.value.value : undefined;
    const d = t?.shape?.dim[0]?.value;
    return t && d?.case === "dimValue" ? { t, size: d.value } : undefined;
  };
  const freed = graph.input.filter((v) => imported.get(v.name)?.[0] === "batch" && lead(v));
  if (freed.length === 0) return {};
  const size = lead(freed[0]!)!.size;
  const relabel = (v: ValueInfoProto, when: boolean): ValueInfoProto => {
    const l = lead(v);
    if (!when || !l || l.size !== size || !l.t.shape) return v;
    const dim = [
      create(TensorShapeProto_DimensionSchema, { value: { case: "dimParam", value: "batch" } }),
      ...l.t.shape.dim.slice(1),
    ];
    const tensorType = create(TypeProto_TensorSchema, {
      ...l.t,
      shape: create(TensorShapeProtoSchema, { ...l.t.shape, dim }),
    });
    return create(ValueInfoProtoSchema, {
      ...v,
      type: create(TypeProtoSchema, {
        denotation: v.type!.denotation,
        value: { case: "tensorType", value: tensorType },
      }),
    });
  };
  return {
    input: graph.input.map((v) => relabel(v, freed.includes(v))),
    output: graph.output.map((v) =>
      relabel(v, model.outputs.find((o) => o.name === v.name)?.shape[0] === "batch")
    ),
    valueInfo: [],
  };
}

/** Bytes of a tensor proto's data (inline or not). */
function protoBytes(tp: TensorProto): number {
  const dtype = dtypeOfCode(tp.dataType, `tensor "${tp.name}"`);
  return numel(tp.dims.map(Number)) * ITEMSIZE[dtype];
}

/**
 * Writes `model`'s graph to `path` with the tensors of `values` replaced (by initializer or
 * `Constant` output name) and `metadata` added to `metadata_props`. Returns the files written
 * (the model, then the side file if any, by base name).
 *
 * @example
 * ```ts ignore
 * await writePatchedOnnx(`${dir}/merged.onnx`, model, merged.tensors, { "ffwd.adapter": "rot45" });
 * ```
 */
export async function writePatchedOnnx(
  path: string,
  model: OnnxModel,
  values: ReadonlyMap<string, Tensor>,
  metadata: Readonly<Record<string, string>>,
): Promise<string[]> {
  const graph = model.proto.graph!;
  const known = new Set([
    ...graph.initializer.map((t) => t.name),
    ...graph.node.filter((n) => n.opType === "Constant").map((n) => n.output[0]),
  ]);
  for (const key of values.keys()) {
    if (!known.has(key)) {
      throw new TypeError(
        `Cannot export "${model.source}": tensor "${key}" is neither an initializer nor a Constant of its graph`,
      );
    }
  }
  const name = path.slice(path.lastIndexOf("/") + 1);
  const dataName = `${name}.data`;
  let inline = 0;
  for (const tp of graph.initializer) if (!isExternal(tp)) inline += protoBytes(tp);
  const spill = inline > INLINE_LIMIT; // then every inline tensor of 1 MiB or more moves out
  const side = new SideFile(`${path}.data`, dataName);
  const initializer: TensorProto[] = [];
  try {
    for (const tp of graph.initializer) {
      const replaced = values.get(tp.name);
      const big = protoBytes(tp) >= SPILL_MIN;
      if (replaced) {
        initializer.push(
          isExternal(tp) || (spill && big)
            ? await side.place(replaced, tp.name)
            : tensorProto(replaced, tp.name),
        );
      } else if (isExternal(tp)) {
        initializer.push(await side.place(await model.readTensor(tp.name), tp.name));
      } else if (spill && big) {
        initializer.push(await side.place(tensorFromProto(tp, `tensor "${tp.name}"`), tp.name));
      } else initializer.push(tp);
    }
  } finally {
    await side.close();
  }
  const node = graph.node.map((n) => patchConstant(n, values));
  const proto: ModelProto = create(ModelProtoSchema, {
    ...model.proto,
    graph: create(GraphProtoSchema, { ...graph, initializer, node, ...freedBatch(model) }),
    metadataProps: [
      ...model.proto.metadataProps.filter((p) => !(p.key in metadata)),
      ...Object.entries(metadata).map(([key, value]) =>
        create(StringStringEntryProtoSchema, { key, value })
      ),
    ],
  });
  const bytes = encodeModel(proto);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  await writeAll(file, bytes);
  return side.used ? [name, dataName] : [name];
}

/** The side file of external data, created on first use; tensors start on 4096-byte pages. */
class SideFile {
  #file: Deno.FsFile | null = null;
  #end = 0;

  constructor(readonly path: string, readonly location: string) {}

  get used(): boolean {
    return this.#end > 0 || this.#file !== null;
  }

  /** Appends `t` and returns its external tensor proto. */
  async place(t: Tensor, name: string): Promise<TensorProto> {
    this.#file ??= await Deno.open(this.path, { write: true, create: true, truncate: true });
    const offset = this.#end;
    await this.#file.seek(offset, Deno.SeekMode.Start);
    await writeAll(this.#file, toBytes(t));
    const length = t.data.byteLength;
    this.#end = Math.ceil((offset + length) / ALIGN) * ALIGN;
    return externalProto(name, { ...t, location: this.location, offset, length });
  }

  async close(): Promise<void> {
    if (!this.#file) return;
    await this.#file.truncate(this.#end);
    this.#file.close();
  }
}

/** A `Constant` node whose output is replaced gets the new value; other nodes are kept. */
function patchConstant(n: NodeProto, values: ReadonlyMap<string, Tensor>): NodeProto {
  const t = n.opType === "Constant" && n.domain === "" ? values.get(n.output[0] ?? "") : undefined;
  if (!t) return n;
  return create(NodeProtoSchema, {
    ...n,
    attribute: n.attribute.map((a) => a.name === "value" ? { ...a, t: tensorProto(t) } : a),
  });
}

/**
 * Saves a graph built by ffwd to `path` (opset 17, or higher when an op needs it). External
 * tensors (F32 weights a safetensors base references in place) are read into the graph first when
 * all initializers total under 1 GiB. Returns the files written, by base name.
 *
 * @example
 * ```ts ignore
 * const g = new Graph();
 * for (const o of model.build(g, { overrides: merged.tensors }).outputs) g.output(o);
 * await writeGraphOnnx(`${dir}/merged.onnx`, g);
 * ```
 */
export async function writeGraphOnnx(path: string, g: Graph): Promise<string[]> {
  let total = 0;
  for (const d of g.initializers.values()) total += "kind" in d ? d.length : d.data.byteLength;
  if (total <= 2 ** 30) {
    for (const [v, d] of g.initializers) {
      if (!("kind" in d)) continue;
      using f = await Deno.open(d.path, { read: true });
      await f.seek(d.offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(d.length);
      for (let done = 0; done < d.length;) {
        const n = await f.read(buf.subarray(done));
        if (n === null) {
          throw new RangeError(`Cannot read "${d.path}": it ends before ${d.offset + d.length}`);
        }
        done += n;
      }
      g.initializers.set(v, fromBytes(d.dtype, d.shape, buf));
    }
  }
  const saved = await saveOnnx(path, g, { sync: false });
  return [saved.model, ...(saved.data ? [saved.data] : [])].map((p) =>
    p.slice(p.lastIndexOf("/") + 1)
  );
}

/** The lowest default-domain opset onnxruntime runs (it has no kernels for older Gemm etc.). */
const ORT_MIN_OPSET = 7;

/**
 * Whether an ONNX base's own graph is kept: yes, unless its opset predates what onnxruntime
 * runs; then the export is ffwd's rewrite of the same graph at opset 17 (names kept), with a note.
 *
 * @example
 * ```ts ignore
 * const notes: string[] = [];
 * keepsGraph(await openOnnxModel("test_Linear/model.onnx"), notes); // false: opset 6
 * ```
 */
export function keepsGraph(model: BaseModel, notes: string[]): boolean {
  if (!("proto" in model)) return false;
  const opset = (model as OnnxModel).opsets.find((o) => o.domain === "" || o.domain === "ai.onnx");
  if (!opset || opset.version >= ORT_MIN_OPSET) return true;
  notes.push(
    `the base's opset ${opset.version} predates onnxruntime's (${ORT_MIN_OPSET}), which cannot load its graph: the export is ffwd's opset-17 rewrite of it, with the same input and output names`,
  );
  return false;
}

/**
 * A graph of `model` built with `build`, its outputs marked and `meta` as metadata.
 *
 * @example
 * ```ts ignore
 * const g = graphOf(model, { overrides: merged.tensors }, { "ffwd.adapter": "rot45" });
 * ```
 */
export function graphOf(
  model: BaseModel,
  build: Parameters<BaseModel["build"]>[1],
  meta: Readonly<Record<string, string>>,
): Graph {
  const g = new Graph();
  for (const o of model.build(g, build).outputs) g.output(o);
  for (const [k, v] of Object.entries(meta)) g.metadata.set(k, v);
  return g;
}
