/**
 * Output shapes of the frozen-context nodes (ops ffwd has no builder for, carried into the graph as
 * they are), found by running the file itself in onnxruntime. ffwd's builders infer shapes as they
 * build; an op without a builder has no shape rule, and exporters rarely write `value_info`. So the
 * file runs with those nodes' outputs as extra graph outputs, on placeholder inputs: once with every
 * symbolic input dimension at a base size, then once per symbolic dimension with that one size
 * doubled plus one (a strided convolution hides a change of one). An output dimension that follows
 * one input dimension exactly becomes that symbol; one that moves otherwise (a sequence shortened by
 * a convolution) becomes a symbol of its own; the rest are fixed.
 *
 * Base sizes grow (2, 16, 512, 16000) until the file runs: a spectrogram's sample axis needs a
 * window's worth of samples, a batch of 2 suffices elsewhere.
 *
 * @module
 */

import * as ort from "npm:onnxruntime-node@1.30.0";
import { clone, create, toBinary } from "npm:@bufbuild/protobuf@2.17.0";
import type { Dim } from "../../engine/graph.ts";
import { fromOrt, ortSessionOptions, toOrt } from "../../engine/runtime.ts";
import {
  ModelProtoSchema,
  TensorShapeProto_DimensionSchema,
  ValueInfoProtoSchema,
} from "../../onnx/gen/onnx_pb.ts";
import { type OnnxFile, onnxLabel } from "../../io/onnx/read.ts";
import { allocData, type DType, type Tensor } from "../../tensor.ts";
import type { InputDecl } from "./_analyze.ts";

/** The dtype and (possibly symbolic) shape of a value, as the file computes it. */
export interface Probed {
  readonly dtype: DType;
  readonly shape: readonly Dim[];
}

const BASE_SIZES = [2, 16, 512, 16000];
const grown = (size: number) => 2 * size + 1;

/**
 * Dtype and shape of each of `names` (values the file computes) when it runs on `inputs` (their
 * declared or freed shapes). `nodes` describes the frozen nodes for messages. Throws a `TypeError`
 * naming the file, the nodes and onnxruntime's reason when no base size lets the file run.
 */
export async function probeShapes(
  file: OnnxFile,
  inputs: readonly InputDecl[],
  names: readonly string[],
  nodes: readonly string[],
): Promise<Map<string, Probed>> {
  const refuse = (why: unknown): never => {
    const reason = why instanceof Error ? why.message.split("\n")[0] : String(why);
    const listed = nodes.slice(0, 3).join(", ") + (nodes.length > 3 ? `, … (${nodes.length})` : "");
    throw new TypeError(
      `Cannot import ${onnxLabel(file)}: onnxruntime cannot run its frozen context ` +
        `(${listed}): ${reason}`,
    );
  };
  const symbols = [...new Set(inputs.flatMap((i) => i.shape.filter((d) => typeof d === "string")))];
  const session = await ort.InferenceSession.create(probeModel(file, inputs, names), {
    ...ortSessionOptions(1, { optimization: "disabled", prepack: false }, file.dir),
    logSeverityLevel: 4, // a failed size is expected; the last failure is reported below
  }).catch(refuse);
  try {
    let failure: unknown;
    for (const base of BASE_SIZES) {
      const sizes = new Map(symbols.map((s, k) => [s, base + 2 * k] as const));
      let first: Map<string, Tensor>;
      try {
        first = await run(session, inputs, sizes, names);
      } catch (e) {
        failure = e;
        if (symbols.length === 0) break;
        continue;
      }
      const moved = new Map<string, Map<string, Tensor>>();
      for (const s of symbols) {
        const resized = new Map([...sizes, [s, grown(sizes.get(s)!)]]);
        moved.set(s, await run(session, inputs, resized, names));
      }
      const derived = new Map<string, string>();
      return new Map(names.map((n) => [n, describe(n, first, sizes, moved, derived)]));
    }
    return refuse(failure);
  } finally {
    await session.release();
  }
}

/** The file with `names` as its outputs, inputs declared as `inputs`, no value_info. */
function probeModel(file: OnnxFile, inputs: readonly InputDecl[], names: readonly string[]) {
  const proto = clone(ModelProtoSchema, file.proto);
  const g = proto.graph!;
  const decl = new Map(inputs.map((i) => [i.name, i]));
  for (const v of g.input) {
    const d = decl.get(v.name);
    if (!d || v.type?.value.case !== "tensorType" || !v.type.value.value.shape) continue;
    v.type.value.value.shape.dim = d.shape.map((s) =>
      create(TensorShapeProto_DimensionSchema, {
        value: typeof s === "number"
          ? { case: "dimValue", value: BigInt(s) }
          : { case: "dimParam", value: s },
      })
    );
  }
  // Declared intermediate shapes may hold the fixed batch the import freed.
  g.valueInfo = [];
  g.output = names.map((name) => create(ValueInfoProtoSchema, { name }));
  return toBinary(ModelProtoSchema, proto);
}

async function run(
  session: ort.InferenceSession,
  inputs: readonly InputDecl[],
  sizes: ReadonlyMap<string, number>,
  names: readonly string[],
): Promise<Map<string, Tensor>> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of inputs) {
    const shape = i.shape.map((d) => typeof d === "number" ? d : sizes.get(d)!);
    const dtype = i.dtype === "F16" || i.dtype === "BF16" ? "F32" : i.dtype;
    const n = shape.reduce((a, b) => a * b, 1);
    feeds[i.name] = toOrt({ dtype, shape, data: allocData(dtype, n) } as Tensor);
  }
  const out = await session.run(feeds);
  return new Map(names.map((n) => [n, fromOrt(out[n]!)]));
}

/**
 * The probed dtype and shape of `name`. Derived dimensions that took the same size in every run
 * share one symbol (`derived`, by their sizes), so that the frames of two convolutions over the same
 * samples still broadcast together.
 */
function describe(
  name: string,
  first: ReadonlyMap<string, Tensor>,
  sizes: ReadonlyMap<string, number>,
  moved: ReadonlyMap<string, ReadonlyMap<string, Tensor>>,
  derived: Map<string, string>,
): Probed {
  const t = first.get(name)!;
  const shape = t.shape.map((d, axis): Dim => {
    const runs = [...moved].map(([s, run]) => [s, run.get(name)!.shape[axis]!] as const);
    if (runs.every(([, d2]) => d2 === d)) return d;
    const changed = runs.filter(([, d2]) => d2 !== d);
    const [s, d2] = changed[0]!;
    if (changed.length === 1 && d === sizes.get(s) && d2 === grown(d)) return s;
    const key = JSON.stringify([d, ...runs.map(([, x]) => x)]);
    if (!derived.has(key)) derived.set(key, `${name}_dim${axis}`);
    return derived.get(key)!;
  });
  return { dtype: t.dtype, shape };
}
