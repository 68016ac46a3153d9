/**
 * Test helpers of the server tests: PEFT adapter folders with random weights for the small
 * `fc_mlp` fixture (8 → 16 → 16 → 4), input rows, offline predictions through `ffwd predict`'s
 * own code path, and a float32 comparison of JSON outputs; and a small whole model with token ids
 * (`writeTinyModel`) whose adapted layers see `[rows, seq, hidden]`.
 *
 * Imported only by the `server*_test.ts` files.
 *
 * @module
 */

import { defaultPeftConfig } from "../adapters/config.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { type PredictCliOptions, predictFile } from "../cli/predict.ts";
import { rowValues } from "../src/infer/rows.ts";
import { Rng } from "../src/rng.ts";
import type { Tensor } from "../src/tensor.ts";
import { randomTensor } from "./_assert.ts";
import { f32, i64, io, model, node, writeModel } from "./_onnx.ts";

/** The base model of the tests. */
export const MODEL = new URL("../fixtures/hf/fc_mlp/model.safetensors", import.meta.url).pathname;
/** Input width of {@link MODEL}. */
export const WIDTH = 8;

const SIZES: Record<string, [number, number]> = { fc1: [8, 16], fc2: [16, 16], fc3: [16, 4] };

/**
 * Writes a PEFT adapter folder at `dir` with random A and nonzero B. `seed` picks the weights;
 * ranks 1–4 and DoRA (every third seed) vary with it, so batches mix ranks and kinds. Odd seeds
 * adapt every layer of `sizes` (`[in, out]` by layer name; default {@link MODEL}'s), even seeds
 * the first and the last.
 */
export async function writeAdapter(
  dir: string,
  seed: number,
  sizes: Readonly<Record<string, readonly [number, number]>> = SIZES,
): Promise<void> {
  const rng = new Rng(seed);
  const r = 1 + seed % 4;
  const useDora = seed % 3 === 0;
  const all = Object.keys(sizes);
  const targets = seed % 2 ? all : [all[0]!, all.at(-1)!];
  const half = { lo: -0.5, hi: 0.5 };
  const layers = new Map(targets.map((m) => {
    const [din, dout] = sizes[m]!;
    const magnitude = useDora ? randomTensor([dout], rng, { lo: 0.5, hi: 1.5 }) : undefined;
    const A = randomTensor([r, din], rng, half);
    return [m, { A, B: randomTensor([dout, r], rng, half), magnitude }];
  }));
  const config = defaultPeftConfig({ r, loraAlpha: 2 * r, targetModules: targets, useDora });
  const name = dir.split("/").pop()!;
  await savePeftAdapter(dir, { name, config, layers, biases: new Map(), extra: new Map() }, {
    sync: false,
  });
}

/** `n` rows of width {@link WIDTH}. */
export function randomRows(n: number, seed: number): number[][] {
  const rng = new Rng(seed);
  return Array.from(
    { length: n },
    () => Array.from({ length: WIDTH }, () => rng.uniform() * 2 - 1),
  );
}

/** What `ffwd predict` computes for `rows` with the adapter folder (or none), `[rows][out]`. */
export async function offline(adapter: string | null, rows: number[][]): Promise<number[][]> {
  const data = await Deno.makeTempFile({ suffix: ".jsonl" });
  await Deno.writeTextFile(data, rows.map((x) => JSON.stringify({ x })).join("\n") + "\n");
  const p = await predictFile({ model: MODEL, adapter: adapter ?? undefined, data, threads: 1 });
  await Deno.remove(data);
  return Array.from(
    { length: p.rows },
    (_, i) => [...p.y.subarray(i * p.width, (i + 1) * p.width)],
  );
}

/** Whether JSON outputs are the same float32 values as `expected`, bit for bit. */
export function sameFloat32(actual: readonly number[][], expected: readonly number[][]): boolean {
  return actual.length === expected.length &&
    actual.every((row, i) =>
      row.length === expected[i]!.length &&
      row.every((v, j) => Object.is(Math.fround(v), expected[i]![j]!))
    );
}

/** A JSON request to the server. */
export async function call(
  url: string,
  method: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch {
    json = { text };
  }
  return { status: res.status, json };
}

/** `[in, out]` of the layers of {@link writeTinyModel}'s model. */
export const TINY_SIZES: Record<string, [number, number]> = {
  fc1: [4, 6],
  fc2: [6, 3],
  head: [3, 2],
};

/**
 * Writes `tiny.onnx` to `dir`: `ids` I64 `[batch, seq]` and `feat` F32 `[batch, seq, 4]`;
 * `h0 = ids·e + feat` (e `[4]`), then `fc1` (MatMul + Add, 4 → 6), ReLU, `fc2` (6 → 3) giving
 * `hidden` `[batch, seq, 3]`, a mean over the sequence and a Gemm `head` (3 → 2) giving `logits`
 * `[batch, 2]`. With `batch` the file fixes the batch (a Reshape of the pooled rows to `[batch,
 * 3]` keeps the importer from freeing it).
 */
export async function writeTinyModel(dir: string, batch?: number): Promise<string> {
  const rng = new Rng(42);
  const w = (name: string, dims: number[]) =>
    f32(name, dims, [...randomTensor(dims, rng, { lo: -0.7, hi: 0.7 }).data]);
  const b: number | string = batch ?? "batch";
  const shape = (name: string, dims: number[]) =>
    i64(name, [dims.length], dims) as unknown as ReturnType<typeof f32>;
  const m = model({
    nodes: [
      node("Cast", ["ids"], ["idsf"], { to: { i: 1 } }),
      node("Unsqueeze", ["idsf", "axis2"], ["ids3"]),
      node("Mul", ["ids3", "embed"], ["e"]),
      node("Add", ["e", "feat"], ["h0"]),
      node("MatMul", ["h0", "fc1.weight"], ["m1"]),
      node("Add", ["m1", "fc1.bias"], ["a1"]),
      node("Relu", ["a1"], ["r1"]),
      node("MatMul", ["r1", "fc2.weight"], ["m2"]),
      node("Add", ["m2", "fc2.bias"], ["hidden"]),
      node("ReduceMean", ["hidden"], ["mean"], { axes: { ints: [1] }, keepdims: { i: 0 } }),
      ...(batch ? [node("Reshape", ["mean", "rows"], ["pooled"])] : []),
      node("Gemm", [batch ? "pooled" : "mean", "head.weight", "head.bias"], ["logits"], {
        transB: { i: 1 },
      }),
    ],
    inputs: [io("ids", [b, "seq"], 7), io("feat", [b, "seq", 4])],
    outputs: [io("logits", [b, 2])],
    inits: [
      shape("axis2", [2]),
      ...(batch ? [shape("rows", [batch, 3])] : []),
      w("embed", [1, 4]),
      w("fc1.weight", [4, 6]),
      w("fc1.bias", [6]),
      w("fc2.weight", [6, 3]),
      w("fc2.bias", [3]),
      w("head.weight", [2, 3]),
      w("head.bias", [2]),
    ],
  });
  return await writeModel(dir, batch ? `tiny_b${batch}.onnx` : "tiny.onnx", m);
}

/** `rows` rows of the tiny model's inputs, `seq` positions each: ids in 0…9, feat in [-1, 1). */
export function tinyRows(rows: number, seq: number, seed: number): Record<string, Tensor> {
  const rng = new Rng(seed);
  const ids = BigInt64Array.from(
    { length: rows * seq },
    () => BigInt(Math.floor(rng.uniform() * 10)),
  );
  return {
    ids: { dtype: "I64", shape: [rows, seq], data: ids },
    feat: randomTensor([rows, seq, 4], rng),
  };
}

/** The rows of `feeds` as JSON rows of named inputs, `{"ids": [...], "feat": [[...], ...]}`. */
export function namedRows(feeds: Record<string, Tensor>): Record<string, unknown>[] {
  const cols = Object.entries(feeds).map(([k, t]) => [k, rowValues(t)] as const);
  const rows = feeds[cols[0]![0]]!.shape[0]!;
  return Array.from(
    { length: rows },
    (_, i) => Object.fromEntries(cols.map(([k, v]) => [k, v[i]])),
  );
}

/**
 * What `ffwd predict` writes for JSONL `lines` (each `{"x": ...}` or `{"inputs": {...}}`): each
 * row's output nested to its shape.
 */
export async function predictLines(
  opts: Omit<PredictCliOptions, "data">,
  lines: readonly unknown[],
): Promise<unknown[]> {
  const data = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    await Deno.writeTextFile(data, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
    const p = await predictFile({ threads: 1, ...opts, data });
    return rowValues({ dtype: "F32", shape: [p.rows, ...p.shape], data: p.y });
  } finally {
    await Deno.remove(data);
  }
}

/** Whether two JSON values hold the same float32 numbers in the same nesting, bit for bit. */
export function sameNested(actual: unknown, expected: unknown): boolean {
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length &&
      actual.every((v, i) => sameNested(v, expected[i]));
  }
  return typeof actual === "number" && Object.is(Math.fround(actual), expected);
}
