/**
 * Runs graphs on onnxruntime-node: compile once into a session (weights are pre-packed there),
 * then run with named feeds and fetches as often as needed.
 *
 * Graph I/O stays in float32/float64/int64: under Deno, `Float16Array` breaks float16 tensors
 * crossing into ORT and bfloat16 I/O is unsupported, so half-precision weights are cast inside the
 * graph instead.
 *
 * Sessions are created from model bytes. Initializers that live in files (external tensors read
 * in place, and in-memory tensors spilled to a temporary side file when the model would not fit
 * in protobuf's 2 GiB) are found through the session config key
 * `session.model_external_initializers_file_folder_path`; see `_external.ts` and `_stage.ts`.
 *
 * @module
 */

import * as ort from "npm:onnxruntime-node@1.30.0";
import { type DType, numel, type Tensor } from "../tensor.ts";
import { formatShape, type Graph, type Value } from "./graph.ts";
import { type EmitOptions, saveOnnx } from "./emit.ts";
import { stage } from "./_stage.ts";
import { createCached, type PrepackCacheUse } from "./_prepack_cache.ts";

export type { PrepackCacheUse };

/** Options of {@link Session.compile}. */
export interface SessionOptions extends EmitOptions {
  /** Intra-op threads, an integer >= 1 (default: the number of cores). */
  threads?: number;
  /** ORT graph optimisation level (default `"all"`). */
  optimization?: "disabled" | "basic" | "extended" | "all";
  /**
   * Let onnxruntime pre-pack constant GEMM weights at session creation (default true). Packing
   * is most of the creation time of a large model; turning it off trades it for packing per run.
   */
  prepack?: boolean;
  /**
   * A folder (created if missing) where onnxruntime's optimized model is kept with its
   * pre-packed weights, one entry per model, onnxruntime version, CPU and options: the first
   * start saves the entry (about twice the weights' size on disk, written as part of the start),
   * later starts open it. The session then maps the pre-packed weights from the entry instead of
   * holding them on the heap: about the weights' size less private memory, shared by the
   * processes that serve one base. onnxruntime 1.30 still packs the weights at each start (it
   * finds the saved ones by the hash of what it packed), so creation takes as long as without.
   * A damaged entry is replaced; a cache that cannot be used never fails the start (see
   * {@link Session.cache}). Ignored when `prepack` is false.
   */
  prepackCache?: string;
  /**
   * Let the intra-op pool's threads spin after each run, waiting for more work (default true).
   * Back-to-back runs (training) gain a little; a server loses: spinning threads hold the cores
   * its HTTP loop needs. No effect with one thread (no pool).
   */
  spin?: boolean;
}

/**
 * The onnxruntime-node session options for {@link Session.compile}. Config entries go in `extra`,
 * whose nested keys onnxruntime-node joins with dots: `{ session: { disable_prepacking: "1" } }`
 * is the config entry `session.disable_prepacking`.
 *
 * @internal
 */
export function ortSessionOptions(
  threads: number,
  opts: Pick<SessionOptions, "optimization" | "prepack" | "spin">,
  externalFolder: string | null,
): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: opts.optimization ?? "all",
    executionMode: "sequential",
  };
  const session: Record<string, string> = {};
  if (externalFolder) session.model_external_initializers_file_folder_path = externalFolder;
  if (opts.prepack === false) session.disable_prepacking = "1";
  if (opts.spin === false) session["intra_op.allow_spinning"] = "0";
  if (Object.keys(session).length) options.extra = { session };
  return options;
}

/**
 * An onnxruntime-node tensor. Feeds may be given as ORT tensors (see {@link toOrt}); they go to
 * onnxruntime as they are.
 *
 * Tagged internal because the type is onnxruntime-node's and is documented there: an alias lets
 * ffwd's API name it without `deno doc` documenting that package as part of ffwd.
 *
 * @internal
 */
export type OrtTensor = ort.Tensor;

/**
 * onnxruntime-node's session, documented there; tagged internal like {@link OrtTensor}.
 *
 * @internal
 */
type OrtSession = ort.InferenceSession;

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

/** In-memory weights past which {@link Session.compile} spills initializers to a side file. */
const SPILL_MODEL_BYTES = 16 * 2 ** 20;

/**
 * onnxruntime maps a 4096-aligned side file instead of copying protobuf bytes twice, so a model
 * with many megabytes of in-memory weights compiles 2–6× faster with its initializers of 1 MiB or
 * more spilled (measured on the 1024,4096,1024 training step: 473 → 162 ms, first compile).
 */
function spillDefault(graph: Graph): number | undefined {
  let bytes = 0;
  for (const d of graph.initializers.values()) if (!("kind" in d)) bytes += d.data.byteLength;
  return bytes >= SPILL_MODEL_BYTES ? 2 ** 20 : undefined;
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
 * import { deepStrictEqual } from "node:assert/strict";
 * const g = new Graph();
 * const y = g.output(relu(g.input("x", "F32", ["batch", 2])));
 * const s = await Session.compile(g);
 * const out = await s.run({ x: { dtype: "F32", shape: [1, 2], data: new Float32Array([-1, 2]) } });
 * deepStrictEqual([...out[y.name]!.data], [0, 2]);
 * await s.release();
 * ```
 */
export class Session {
  #released = false;

  private constructor(
    readonly inner: OrtSession,
    readonly inputs: readonly Value[],
    readonly outputs: readonly Value[],
    readonly float64: boolean,
    private readonly tempDir: string | null,
    /** How the session used `prepackCache`, or `null` without one. */
    readonly cache: PrepackCacheUse | null,
  ) {}

  /**
   * Compiles `graph` into an onnxruntime-node session. Initializers over the inline limit (or
   * `spillThreshold`) go to a temporary side file; external tensors are read in place.
   */
  static async compile(graph: Graph, opts: SessionOptions = {}): Promise<Session> {
    const threads = opts.threads ?? defaultThreads();
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`Invalid threads ${threads}: expected an integer >= 1`);
    }
    const outputs = [...(opts.outputs ?? graph.outputs)];
    const staged = await stage(graph, {
      ...opts,
      spillThreshold: opts.spillThreshold ?? spillDefault(graph),
    });
    const options = ortSessionOptions(threads, opts, staged.folder);
    let inner: ort.InferenceSession;
    let cache: PrepackCacheUse | null = null;
    try {
      if (opts.prepackCache !== undefined && opts.prepack !== false) {
        ({ session: inner, cache } = await createCached(opts.prepackCache, graph, staged, options));
      } else inner = await ort.InferenceSession.create(staged.model, options);
    } catch (e) {
      await removeDir(staged.tempDir);
      throw new Error(`Cannot compile graph (${graph.nodes.length} nodes): ${message(e)}`, {
        cause: e,
      });
    }
    // The session has loaded or mapped every initializer: unlink the spill file now, so a session
    // that is never released leaves nothing behind (a mapping keeps the bytes until release;
    // Windows cannot unlink mapped files).
    let tempDir = staged.tempDir;
    if (Deno.build.os !== "windows") tempDir = await removeDir(tempDir);
    // The inputs the model declares: with `fed`, the values fed from outside and the graph
    // inputs still read.
    const declared = new Set(inner.inputNames);
    const inputs = [...graph.inputs, ...(opts.fed ?? [])].filter((v) => declared.has(v.name));
    return new Session(inner, inputs, outputs, opts.float64 ?? false, tempDir, cache);
  }

  /**
   * Runs the session. Feeds are checked against the graph's inputs first (name, dtype, static
   * dimensions, symbolic dimensions agreeing across inputs), so mistakes fail with the input's
   * name and both shapes.
   */
  async run(
    feeds: Record<string, Tensor | OrtTensor>,
    fetches?: readonly string[],
  ): Promise<Record<string, Tensor>> {
    if (this.#released) throw new Error("Cannot run a session that was released");
    for (const k of Object.keys(feeds)) {
      if (!this.inputs.some((v) => v.name === k)) {
        const f = feeds[k]!;
        const got = isHostTensor(f) ? `${f.dtype} ${formatShape(f.shape)}` : formatShape(f.dims);
        throw new TypeError(
          `Unknown feed "${k}" ${got}: the graph's inputs are ${
            this.inputs.map((v) => `"${v.name}" ${v}`).join(", ")
          }`,
        );
      }
    }
    const ortFeeds: Record<string, ort.Tensor> = {};
    const dims = new Map<string, { input: string; size: number }>();
    for (const v of this.inputs) {
      const f = feeds[v.name];
      if (f === undefined) {
        throw new TypeError(`Missing feed for input "${v.name}": expected ${this.#want(v)} ${v}`);
      }
      const t = isHostTensor(f) ? toOrt(f) : f;
      this.#checkFeed(v, t, dims);
      ortFeeds[v.name] = t;
    }
    const names = fetches ?? this.outputs.map((o) => o.name);
    for (const n of names) {
      if (!this.outputs.some((o) => o.name === n)) {
        throw new TypeError(
          `Cannot fetch "${n}": the session's outputs are ${
            this.outputs.map((o) => `"${o.name}"`).join(", ")
          }`,
        );
      }
    }
    let result: ort.InferenceSession.ReturnType;
    try {
      result = await this.inner.run(ortFeeds, [...names]);
    } catch (e) {
      const shapes = Object.entries(ortFeeds).map(([k, t]) =>
        `${k} ${FROM_ORT[t.type] ?? t.type} ${formatShape(t.dims)}`
      ).join(", ");
      throw new Error(`Cannot run graph: ${message(e)} (feeds: ${shapes})`, { cause: e });
    }
    const out: Record<string, Tensor> = {};
    for (const n of names) out[n] = fromOrt(result[n]!);
    return out;
  }

  #want(v: Value): DType {
    return this.float64 && v.dtype === "F32" ? "F64" : v.dtype;
  }

  #checkFeed(v: Value, t: ort.Tensor, dims: Map<string, { input: string; size: number }>): void {
    const want = this.#want(v);
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
      const size = t.dims[i]!;
      if (typeof d === "number") {
        if (size !== d) fail(`dimension ${i} differs`);
        return;
      }
      const bound = dims.get(d);
      if (!bound) dims.set(d, { input: v.name, size });
      else if (bound.size !== size) {
        fail(
          `dimension ${i} ("${d}") is ${size} but input "${bound.input}" has ${d} = ${bound.size}`,
        );
      }
    });
    if (numel(t.dims) !== t.data.length) fail("data length does not match its shape");
  }

  /** Whether {@link Session.release} was called. */
  get released(): boolean {
    return this.#released;
  }

  /** Frees the native session (calling it again does nothing). */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.inner.release();
    await removeDir(this.tempDir);
  }
}

/**
 * Writes `graph` as `model.onnx` into `dir`, with spilled initializers and the bytes of external
 * tensors in `model.onnx.data` (see {@link saveOnnx}); returns the model's path.
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { writeModelFolder } from "./runtime.ts";
 * import { strictEqual } from "node:assert/strict";
 * const g = new Graph();
 * g.output(g.input("x", "F32", [2]));
 * const dir = await Deno.makeTempDir();
 * strictEqual(await writeModelFolder(g, dir), `${dir}/model.onnx`);
 * ```
 */
export async function writeModelFolder(
  graph: Graph,
  dir: string,
  opts: EmitOptions = {},
): Promise<string> {
  const { modelDir: _d, externalData: _e, locations: _l, ...rest } = opts;
  const saved = await saveOnnx(`${dir.replace(/\/+$/, "")}/model.onnx`, graph, {
    ...rest,
    spillFile: opts.spillFile ?? "model.onnx.data",
  });
  return saved.model;
}

async function removeDir(dir: string | null): Promise<null> {
  if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  return null;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isHostTensor(t: Tensor | ort.Tensor): t is Tensor {
  return "dtype" in t && typeof (t as Tensor).dtype === "string" && !("dims" in t);
}
