/**
 * Test helpers of the server tests: PEFT adapter folders with random weights for the small
 * `fc_mlp` fixture (8 → 16 → 16 → 4), input rows, offline predictions through `ffwd predict`'s
 * own code path, and a float32 comparison of JSON outputs.
 *
 * Imported only by `server_test.ts` and `server_load_test.ts`.
 *
 * @module
 */

import { defaultPeftConfig } from "../adapters/config.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { predictFile } from "../cli/predict.ts";
import { Rng } from "../src/rng.ts";
import { randomTensor } from "./_assert.ts";

/** The base model of the tests. */
export const MODEL = new URL("../fixtures/hf/fc_mlp/model.safetensors", import.meta.url).pathname;
/** Input width of {@link MODEL}. */
export const WIDTH = 8;

const SIZES: Record<string, [number, number]> = { fc1: [8, 16], fc2: [16, 16], fc3: [16, 4] };

/**
 * Writes a PEFT adapter folder at `dir` with random A and nonzero B. `seed` picks the weights;
 * ranks 1–4 and DoRA (every third seed) vary with it, so batches mix ranks and kinds.
 */
export async function writeAdapter(dir: string, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const r = 1 + seed % 4;
  const useDora = seed % 3 === 0;
  const targets = seed % 2 ? ["fc1", "fc2", "fc3"] : ["fc1", "fc3"];
  const half = { lo: -0.5, hi: 0.5 };
  const layers = new Map(targets.map((m) => {
    const [din, dout] = SIZES[m]!;
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
