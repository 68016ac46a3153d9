/**
 * Runs graphs on onnxruntime-node: compile once into a session (weights are pre-packed there),
 * then run with named feeds and fetches as often as needed.
 *
 * Graph I/O stays in float32/float64/int64: under Deno, `Float16Array` breaks float16 tensors
 * crossing into ORT and bfloat16 I/O is unsupported, so half-precision weights are cast inside the
 * graph instead.
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import { type DType, numel, type Tensor } from "../tensor.ts";
import { formatShape, type Graph, type Value } from "./graph.ts";
import { type EmitOptions, encodeModel, toModelProto } from "./emit.ts";

/** Options of {@link Session.compile}. */
export interface SessionOptions extends EmitOptions {
  /** Intra-op threads (default: the number of cores). */
  threads?: number;
  /** ORT graph optimisation level (default `"all"`). */
  optimization?: "disabled" | "basic" | "extended" | "all";
}

const ORT_TYPE: Partial<Record<DType, ort.Tensor.Type>> = {
  F32: "float32",
  F64: "float64",
  I64: "int64",
  I32: "int32",
  I16: "int16",
  I8: "int8",
  U8: "uint8",
  U16: "uint16",
  U32: "uint32",
  U64: "uint64",
  BOOL: "bool",
};

const FROM_ORT: Record<string, DType> = Object.fromEntries(
  Object.entries(ORT_TYPE).map(([k, v]) => [v, k as DType]),
);

/** Converts a host tensor to an ORT tensor without copying its data. */
export function toOrt(t: Tensor): ort.Tensor {
  const type = ORT_TYPE[t.dtype];
  if (!type) {
    throw new TypeError(`Cannot pass a ${t.dtype} tensor to onnxruntime: cast it inside the graph`);
  }
  const data = t.dtype === "BOOL" ? new Uint8Array(t.data as Uint8Array) : t.data;
  return new ort.Tensor(type, data as ort.Tensor.DataType, [...t.shape]);
}

/** Converts an ORT tensor to a host tensor (no copy). */
export function fromOrt(t: ort.Tensor): Tensor {
  const dtype = FROM_ORT[t.type];
  if (!dtype) throw new TypeError(`Cannot read an ORT tensor of type ${t.type}`);
  const data = dtype === "BOOL" ? Uint8Array.from(t.data as unknown as ArrayLike<number>) : t.data;
  return { dtype, shape: [...t.dims], data } as Tensor;
}

/** Number of cores, for the default thread count. */
export function defaultThreads(): number {
  return navigator.hardwareConcurrency || 1;
}

/**
 * A compiled graph.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { Session } from "./runtime.ts";
 * import { relu } from "./ops/activation.ts";
 * const g = new Graph();
 * g.output(relu(g.input("x", "F32", ["batch", 2])));
 * const s = await Session.compile(g);
 * const out = await s.run({ x: { dtype: "F32", shape: [1, 2], data: new Float32Array([-1, 2]) } });
 * await s.release();
 * ```
 */
export class Session {
  private constructor(
    readonly inner: ort.InferenceSession,
    readonly inputs: readonly Value[],
    readonly outputs: readonly Value[],
    readonly float64: boolean,
    private readonly tempDir: string | null,
  ) {}

  /** Compiles `graph` into an onnxruntime-node session. */
  static async compile(graph: Graph, opts: SessionOptions = {}): Promise<Session> {
    const outputs = opts.outputs ?? graph.outputs;
    const options: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: opts.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      graphOptimizationLevel: opts.optimization ?? "all",
      executionMode: "sequential",
    };
    const needsFolder = [...graph.initializers.values()].some((d) => "kind" in d) ||
      opts.spillThreshold !== undefined;
    let inner: ort.InferenceSession;
    let tempDir: string | null = null;
    try {
      if (!needsFolder) {
        inner = await ort.InferenceSession.create(
          encodeModel(toModelProto(graph, opts).proto),
          options,
        );
      } else {
        // External data is only read when the session is created from a path.
        tempDir = await Deno.makeTempDir({ prefix: "ffwd-session-" });
        const path = await writeModelFolder(graph, tempDir, opts);
        inner = await ort.InferenceSession.create(path, options);
      }
    } catch (e) {
      if (tempDir) await Deno.remove(tempDir, { recursive: true }).catch(() => {});
      throw new Error(`Cannot compile graph (${graph.nodes.length} nodes): ${message(e)}`, {
        cause: e,
      });
    }
    return new Session(inner, graph.inputs, outputs, opts.float64 ?? false, tempDir);
  }

  /**
   * Runs the session. Feeds are checked against the graph's inputs first (name, dtype, static
   * dimensions), so mistakes fail with the input's name and both shapes.
   */
  async run(
    feeds: Record<string, Tensor | ort.Tensor>,
    fetches?: readonly string[],
  ): Promise<Record<string, Tensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const v of this.inputs) {
      const f = feeds[v.name];
      if (f === undefined) throw new TypeError(`Missing feed for input "${v.name}" ${v}`);
      ortFeeds[v.name] = isHostTensor(f) ? toOrt(f) : f;
      this.#checkFeed(v, ortFeeds[v.name]!);
    }
    for (const k of Object.keys(feeds)) {
      if (!this.inputs.some((v) => v.name === k)) {
        throw new TypeError(
          `Unknown feed "${k}": the graph's inputs are ${
            this.inputs.map((v) => v.name).join(", ")
          }`,
        );
      }
    }
    const names = fetches ?? this.outputs.map((o) => o.name);
    let result: ort.InferenceSession.ReturnType;
    try {
      result = await this.inner.run(ortFeeds, [...names]);
    } catch (e) {
      const shapes = Object.entries(ortFeeds).map(([k, t]) => `${k} ${formatShape(t.dims)}`).join(
        ", ",
      );
      throw new Error(`Cannot run graph: ${message(e)} (feeds: ${shapes})`, { cause: e });
    }
    const out: Record<string, Tensor> = {};
    for (const n of names) out[n] = fromOrt(result[n]!);
    return out;
  }

  #checkFeed(v: Value, t: ort.Tensor): void {
    const want = this.float64 && v.dtype === "F32" ? "F64" : v.dtype;
    const got = FROM_ORT[t.type];
    const fail = (why: string) => {
      throw new TypeError(
        `Cannot feed input "${v.name}": ${why}, expected ${want} ${v}, got ${got ?? t.type} ${
          formatShape(t.dims)
        }`,
      );
    };
    if (got !== want) fail("dtype differs");
    if (t.dims.length !== v.rank) fail("rank differs");
    v.shape.forEach((d, i) => {
      if (typeof d === "number" && t.dims[i] !== d) fail(`dimension ${i} differs`);
    });
    if (numel(t.dims) !== t.data.length) fail("data length does not match its shape");
  }

  /** Frees the native session. */
  async release(): Promise<void> {
    await this.inner.release();
    if (this.tempDir) await Deno.remove(this.tempDir, { recursive: true }).catch(() => {});
  }
}

/**
 * Writes `graph` as `model.onnx` into `dir`, with spilled initializers in `model.onnx.data` and
 * in-place references to other files; returns the model's path.
 */
export async function writeModelFolder(
  graph: Graph,
  dir: string,
  opts: EmitOptions = {},
): Promise<string> {
  const spillFile = opts.spillFile ?? "model.onnx.data";
  const emitted = toModelProto(graph, { ...opts, modelDir: dir, spillFile });
  if (emitted.spill.length) {
    const f = await Deno.open(`${dir}/${spillFile}`, { write: true, create: true, truncate: true });
    try {
      for (const c of emitted.spill) {
        await f.seek(c.offset, Deno.SeekMode.Start);
        let done = 0;
        while (done < c.bytes.byteLength) done += await f.write(c.bytes.subarray(done));
      }
    } finally {
      f.close();
    }
  }
  const path = `${dir}/model.onnx`;
  await Deno.writeFile(path, encodeModel(emitted.proto));
  return path;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isHostTensor(t: Tensor | ort.Tensor): t is Tensor {
  return "dtype" in t && typeof (t as Tensor).dtype === "string" && !("dims" in t);
}
