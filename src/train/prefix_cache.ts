/**
 * The exact frozen-prefix cache. Everything a training graph computes from the data alone (the
 * convolutions of a CNN, an LSTM, the embeddings and layers below the earliest adapter) gives the
 * same numbers at every step: adapters, dropout masks and labels come after it. So those values are
 * computed once per dataset, by the same onnxruntime kernels on the same rows, and the step graph
 * starts from them (`EmitOptions.fed`). PEFT and PyTorch recompute a frozen backbone every step.
 *
 * What is cached: the values the prefix hands to the rest of the graph (computed from data inputs
 * and initializers only, read by a node that is not), each with the batch as its first dimension,
 * so a batch of rows of the cache is the prefix of that batch of rows. The prefix must be
 * deterministic (no random ops); values it hands over without a batch dimension (a Shape) stay in
 * the step, with the data inputs they read.
 *
 * @module
 */

import { type Graph, liveNodes, type Node, type Value } from "../engine/graph.ts";
import { Session, type SessionOptions } from "../engine/runtime.ts";
import { type Dataset, type RowTensor, sliceBatch } from "../data/dataset.ts";
import { type InputSpec, modelFeeds } from "../data/feeds.ts";
import { allocData, ITEMSIZE, numel, type Tensor, toBytes } from "../tensor.ts";
import { writeAll } from "../fs/atomic.ts";

/** Ops whose outputs differ from run to run: a prefix holding one is not cached. */
const RANDOM = new Set([
  "RandomNormal",
  "RandomNormalLike",
  "RandomUniform",
  "RandomUniformLike",
  "Multinomial",
  "Bernoulli",
]);

/** What the cache holds and what the step still reads. */
export interface PrefixPlan {
  /** The prefix's values the rest of the graph reads, fed from the cache. */
  readonly cached: readonly Value[];
  /** Data inputs the step still reads (through uncached shape computations), fed as they are. */
  readonly fed: readonly Value[];
}

/**
 * The cache plan of a training graph whose data inputs are `data` and whose step computes
 * `outputs`, or `undefined` when the data inputs share no symbolic batch dimension, the prefix is
 * not deterministic, or no value computed from the data alone with the batch as its first
 * dimension reaches the step. An adapter that reads a data input directly leaves that input fed
 * (in `fed`) beside whatever its frozen base computes from it.
 */
export function planPrefix(
  g: Graph,
  outputs: readonly Value[],
  data: readonly Value[],
): PrefixPlan | undefined {
  const batch = data[0]?.shape[0];
  if (typeof batch !== "string" || data.some((v) => v.shape[0] !== batch)) return undefined;
  const nodes = liveNodes(g, outputs);
  const frozen = new Set<Value>([...data, ...g.initializers.keys()]);
  const reads = (n: Node) => [
    ...n.inputs.filter((v): v is Value => v !== null),
    ...Object.values(n.attrs).flatMap((a) => (a.type === "onnx" ? a.reads ?? [] : [])),
  ];
  for (const n of nodes) {
    if (reads(n).every((v) => frozen.has(v))) {
      if (RANDOM.has(n.op)) return undefined;
      for (const o of n.outputs) frozen.add(o);
    }
  }
  const cached = new Set<Value>();
  for (const n of nodes) {
    if (reads(n).every((v) => frozen.has(v))) continue;
    for (const v of reads(n)) {
      if (frozen.has(v) && v.producer !== null && v.shape[0] === batch) cached.add(v);
    }
  }
  for (const o of outputs) if (frozen.has(o) && o.producer && o.shape[0] === batch) cached.add(o);
  if (cached.size === 0) return undefined;
  const fedSet = new Set(cached);
  const stepNodes = liveNodes(g, outputs, fedSet);
  const still = new Set(stepNodes.flatMap(reads));
  return { cached: [...cached], fed: data.filter((v) => still.has(v)) };
}

/** The specs of the step's data inputs under a plan: what the cached dataset holds. */
export function stepInputs(plan: PrefixPlan): InputSpec[] {
  return [...plan.fed, ...plan.cached].map((v) => ({
    name: v.name,
    dtype: v.dtype,
    shape: v.shape,
  }));
}

/** Options of {@link cacheDataset}. */
export interface CacheOptions extends SessionOptions {
  /** Rows per prefix run (default 256). */
  readonly chunk?: number;
  /** Bytes the cache may hold in memory (default: no limit). */
  readonly budget?: number;
  /**
   * Folder for a cache over `budget`: its rows go to files there and batches read them back
   * (a run folder's `.prefix_cache/`). Without it, a cache over budget throws a `RangeError`.
   */
  readonly spillDir?: string;
}

/** Where each cached value's rows go: a typed array, or a file in the spill folder. */
interface Store {
  readonly shape: number[];
  readonly data: Tensor["data"];
  readonly file?: Deno.FsFile;
  readonly path?: string;
}

/**
 * `data` with its inputs replaced by the prefix's values (and the data inputs the step still
 * reads), computed once in onnxruntime. `inputs` are the model's data inputs. The first chunk's
 * outputs give the size of a row; when the whole cache would pass `budget`, its rows are written
 * to `spillDir` instead and read back batch by batch.
 */
export async function cacheDataset(
  g: Graph,
  plan: PrefixPlan,
  inputs: readonly Value[],
  data: Dataset,
  opts: CacheOptions = {},
): Promise<Dataset> {
  const where = "Cannot cache the frozen prefix";
  const chunk = opts.chunk ?? 256;
  const session = await Session.compile(g, { ...opts, outputs: plan.cached, fed: [] });
  const out = new Map<string, Store>();
  try {
    for (let start = 0; start < data.rows; start += chunk) {
      const batch = sliceBatch(data, null, start, chunk);
      const feeds = modelFeeds(inputs, batch.feeds, where);
      const named = Object.fromEntries(inputs.map((v) => [v.name, feeds[v.name]!]));
      const got = await session.run(named);
      if (out.size === 0) await allocate(plan, got, data.rows, out, opts);
      for (const v of plan.cached) {
        const t = got[v.name]!;
        const store = out.get(v.name)!;
        if (t.shape.slice(1).join() !== store.shape.join()) {
          throw new RangeError(
            `${where}: "${v.name}" has rows of [${t.shape.slice(1)}] from row ${start}, ` +
              `[${store.shape}] before`,
          );
        }
        if (store.file) await writeAll(store.file, toBytes(t));
        else {
          (store.data as unknown as { set(a: ArrayLike<unknown>, at: number): void })
            .set(t.data as unknown as ArrayLike<unknown>, start * numel(store.shape));
        }
      }
    }
  } finally {
    await session.release();
    for (const s of out.values()) s.file?.close();
  }
  const cached = new Map<string, RowTensor>();
  const whole = plan.fed.length ? modelFeeds(inputs, wholeFeeds(data), where) : {};
  for (const v of plan.fed) {
    const t = whole[v.name]!;
    cached.set(v.name, { dtype: t.dtype, shape: t.shape.slice(1), data: t.data });
  }
  for (const v of plan.cached) {
    const s = out.get(v.name)!;
    const spill = s.path ? { spill: { path: s.path, offset: 0 } } : {};
    cached.set(v.name, { dtype: v.dtype, shape: s.shape, data: s.data, ...spill });
  }
  return { rows: data.rows, width: 0, x: new Float32Array(0), inputs: cached, y: data.y };
}

/** Every row of `data` as feeds that view its own arrays (its inputs are in memory, not spilled). */
function wholeFeeds(data: Dataset): Record<string, Tensor> {
  if (!data.inputs) return { x: { dtype: "F32", shape: [data.rows, data.width], data: data.x } };
  return Object.fromEntries(
    [...data.inputs].map(([name, t]) => {
      return [name, { dtype: t.dtype, shape: [data.rows, ...t.shape], data: t.data } as Tensor];
    }),
  );
}

/** Memory for every cached value, or spill files when the whole cache passes the budget. */
async function allocate(
  plan: PrefixPlan,
  first: Record<string, Tensor>,
  rows: number,
  out: Map<string, Store>,
  opts: CacheOptions,
): Promise<void> {
  const sizes = plan.cached.map((v) => {
    const t = first[v.name]!;
    return {
      v,
      t,
      row: t.shape.slice(1),
      bytes: rows * numel(t.shape.slice(1)) * ITEMSIZE[t.dtype],
    };
  });
  const total = sizes.reduce((n, s) => n + s.bytes, 0);
  const spill = opts.budget !== undefined && total > opts.budget;
  if (spill && !opts.spillDir) {
    throw new RangeError(
      `The frozen prefix's ${plan.cached.length} values need ${mib(total)} MiB, more than the ` +
        `cache budget of ${mib(opts.budget!)} MiB`,
    );
  }
  if (spill) await Deno.mkdir(opts.spillDir!, { recursive: true });
  const tag = crypto.randomUUID().slice(0, 8); // datasets share the folder, not files
  for (const [k, { v, t, row }] of sizes.entries()) {
    if (spill) {
      const path = `${opts.spillDir}/prefix_${tag}_${k}.bin`;
      const file = await Deno.open(path, { write: true, create: true, truncate: true });
      out.set(v.name, { shape: row, data: allocData(t.dtype, 0), file, path });
    } else out.set(v.name, { shape: row, data: allocData(t.dtype, rows * numel(row)) });
  }
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
