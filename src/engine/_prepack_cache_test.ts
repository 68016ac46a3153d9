import { deepStrictEqual, equal, notDeepStrictEqual, ok, rejects } from "node:assert/strict";
import { createHash } from "node:crypto";
import { randomTensor, withTempDir } from "../../tests/_assert.ts";
import type { Tensor } from "../tensor.ts";
import { type ExternalTensor, Graph } from "./graph.ts";
import { relu } from "./ops/activation.ts";
import { matmul } from "./ops/matmul.ts";
import { Session, type SessionOptions } from "./runtime.ts";

const W1 = randomTensor([96, 128], 1); // big enough to be pre-packed and saved externally
const W2 = randomTensor([128, 64], 2);
const X = randomTensor([5, 96], 3);

/** Writes the weights back to back into `path`; returns them as external tensors. */
async function writeWeights(path: string, ...ts: Tensor<"F32">[]): Promise<ExternalTensor[]> {
  const bytes = new Uint8Array(ts.reduce((n, t) => n + t.data.byteLength, 0));
  let at = 0;
  const refs = ts.map((t) => {
    bytes.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    const ref = { kind: "external" as const, dtype: "F32" as const, shape: t.shape, path };
    at += t.data.byteLength;
    return { ...ref, offset: at - t.data.byteLength, length: t.data.byteLength };
  });
  await Deno.writeFile(path, bytes);
  return refs;
}

/** `relu(x W1) W2`, and with `extra` one more ReLU: another model over the same weights. */
function mlp(
  w1: Tensor<"F32"> | ExternalTensor,
  w2: Tensor<"F32"> | ExternalTensor,
  extra = false,
) {
  const g = new Graph();
  const h = relu(matmul(g.input("x", "F32", ["batch", 96]), g.initializer("w1", w1)));
  const y = matmul(h, g.initializer("w2", w2));
  g.output(extra ? relu(y) : y);
  return g;
}

/** Compiles, runs X once, releases; returns the output and how the cache was used. */
async function start(g: Graph, opts: SessionOptions = {}) {
  const s = await Session.compile(g, { threads: 1, ...opts });
  try {
    const out = await s.run({ x: X });
    return { y: out[g.outputs[0]!.name]!, cache: s.cache };
  } finally {
    await s.release();
  }
}

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("a cache hit gives outputs byte-identical to a normal session", async () => {
  await withTempDir(async (dir) => {
    const [w1, w2] = await writeWeights(`${dir}/w.bin`, W1, W2);
    const g = mlp(w1!, w2!);
    const cache = `${dir}/cache`;
    const normal = await start(g);
    equal(normal.cache, null);
    const filled = await start(g, { prepackCache: cache });
    equal(filled.cache?.outcome, "filled", filled.cache?.error ?? "");
    const hit = await start(g, { prepackCache: cache });
    equal(hit.cache?.outcome, "hit");
    equal(hit.cache.entry, filled.cache.entry);
    deepStrictEqual(filled.y, normal.y);
    deepStrictEqual(hit.y, normal.y);
    // One complete entry and nothing else; its data file holds the weights and their packing.
    const [key, ...rest] = await entries(cache);
    deepStrictEqual(rest, []);
    ok(/^[0-9a-f]{64}$/.test(key!));
    deepStrictEqual(await entries(`${cache}/${key}`), [
      "entry.json",
      "model.onnx",
      "model.onnx.data",
    ]);
    const data = (await Deno.stat(`${cache}/${key}/model.onnx.data`)).size;
    ok(data > W1.data.byteLength + W2.data.byteLength, `${data} bytes`);
    // In-memory weights, spilled to a temporary side file whose folder differs at each start.
    const inline = mlp(W1, W2);
    const spilled = { prepackCache: cache, spillThreshold: 1024 };
    equal((await start(inline, spilled)).cache?.outcome, "filled");
    const again = await start(inline, spilled);
    equal(again.cache?.outcome, "hit");
    deepStrictEqual(again.y, normal.y);
  });
});

Deno.test("a changed model misses: its graph, its weight file, its in-memory weights, the threads", async () => {
  await withTempDir(async (dir) => {
    const cache = { prepackCache: `${dir}/cache` };
    const [w1, w2] = await writeWeights(`${dir}/w.bin`, W1, W2);
    const first = await start(mlp(w1!, w2!), cache);
    equal(first.cache?.outcome, "filled");
    const other = await start(mlp(w1!, w2!, true), cache);
    equal(other.cache?.outcome, "filled");
    equal((await start(mlp(w1!, w2!), { ...cache, threads: 2 })).cache?.outcome, "filled");
    // New bytes in the same file, same size: served with the new weights, not the saved ones.
    const V2 = randomTensor([128, 64], 7);
    await writeWeights(`${dir}/w.bin`, W1, V2);
    const later = new Date(Date.now() + 5000);
    await Deno.utime(`${dir}/w.bin`, later, later); // even within one millisecond of the first
    const rewritten = await start(mlp(w1!, w2!), cache);
    equal(rewritten.cache?.outcome, "filled");
    deepStrictEqual(rewritten.y, (await start(mlp(W1, V2))).y);
    notDeepStrictEqual(rewritten.y, first.y);
    // In-memory weights: the same graph with other values.
    equal((await start(mlp(W1, W2), cache)).cache?.outcome, "filled");
    const changed = await start(mlp(W1, V2), cache);
    equal(changed.cache?.outcome, "filled");
    deepStrictEqual(changed.y, rewritten.y);
    equal((await entries(`${dir}/cache`)).length, 6);
  });
});

/** Ways to damage an entry, and the reason the next start gives for replacing it. */
const DAMAGE: readonly [string, (entry: string) => Promise<void>, RegExp][] = [
  ["a truncated data file", async (e) => {
    using f = await Deno.open(`${e}/model.onnx.data`, { write: true });
    await f.truncate((await f.stat()).size - 4096);
  }, /^model\.onnx\.data has \d+ bytes, expected \d+$/],
  ["a missing manifest", (e) => Deno.remove(`${e}/entry.json`), /^entry\.json is missing$/],
  ["a manifest cut short", async (e) => {
    const text = await Deno.readTextFile(`${e}/entry.json`);
    await Deno.writeTextFile(`${e}/entry.json`, text.slice(0, 20));
  }, /^entry\.json is not JSON$/],
  ["a model that changed", async (e) => {
    const bytes = await Deno.readFile(`${e}/model.onnx`);
    const at = bytes.length >> 1;
    bytes[at] = bytes[at]! ^ 0xff;
    await Deno.writeFile(`${e}/model.onnx`, bytes);
  }, /^model\.onnx does not match its SHA-256/],
  ["a model onnxruntime cannot read, its checksum rewritten", async (e) => {
    const garbage = new TextEncoder().encode("not a model");
    await Deno.writeFile(`${e}/model.onnx`, garbage);
    const m = JSON.parse(await Deno.readTextFile(`${e}/entry.json`));
    m.files["model.onnx"] = {
      bytes: garbage.byteLength,
      sha256: createHash("sha256").update(garbage).digest("hex"),
    };
    await Deno.writeTextFile(`${e}/entry.json`, JSON.stringify(m));
  }, /^onnxruntime cannot open it: /],
];

Deno.test("a damaged entry is replaced and the session still gives the right outputs", async () => {
  await withTempDir(async (dir) => {
    const [w1, w2] = await writeWeights(`${dir}/w.bin`, W1, W2);
    const g = mlp(w1!, w2!);
    const want = (await start(g)).y;
    const cache = { prepackCache: `${dir}/cache` };
    const { entry } = (await start(g, cache)).cache!;
    for (const [what, damage, reason] of DAMAGE) {
      await damage(entry);
      const after = await start(g, cache);
      equal(after.cache?.outcome, "filled", what);
      ok(reason.test(after.cache.replaced ?? ""), `${what}: ${after.cache.replaced}`);
      deepStrictEqual(after.y, want, what);
      const next = await start(g, cache);
      equal(next.cache?.outcome, "hit", what);
      deepStrictEqual(next.y, want, what);
      deepStrictEqual((await entries(`${dir}/cache`)).length, 1, what);
    }
  });
});

Deno.test("a failed start leaves nothing in the cache, and an unusable cache does not fail one", async () => {
  await withTempDir(async (dir) => {
    const cache = `${dir}/cache`;
    const bad = new Graph();
    bad.output(
      bad.node("NoSuchOp", [bad.input("x", "F32", [1])], {}, [{ dtype: "F32", shape: [1] }])[0]!,
    );
    await rejects(Session.compile(bad, { prepackCache: cache }), /^Error: Cannot compile graph/);
    deepStrictEqual(await entries(cache), []);
    // A file where the folder should be: the session starts without the cache.
    await Deno.writeTextFile(`${dir}/file`, "");
    const g = mlp(W1, W2);
    const s = await start(g, { prepackCache: `${dir}/file` });
    equal(s.cache?.outcome, "unsaved");
    ok(s.cache.error);
    deepStrictEqual(s.y, (await start(g)).y);
    // Without pre-packing there is nothing to cache.
    equal((await start(g, { prepackCache: cache, prepack: false })).cache, null);
    deepStrictEqual(await entries(cache), []);
  });
});

Deno.test("staging folders of a process that died are swept once stale, and nothing else", async () => {
  await withTempDir(async (dir) => {
    const cache = `${dir}/cache`;
    const key = "ab".repeat(32);
    const stale = `.${key}.x1y2.tmp`;
    const fresh = `.${key}.z3.tmp`;
    for (const name of [stale, fresh, "notes"]) {
      await Deno.mkdir(`${cache}/${name}`, { recursive: true });
      await Deno.writeTextFile(`${cache}/${name}/model.onnx.data`, "half written");
    }
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await Deno.utime(`${cache}/${stale}/model.onnx.data`, old, old);
    await Deno.utime(`${cache}/${stale}`, old, old);
    equal((await start(mlp(W1, W2), { prepackCache: cache })).cache?.outcome, "filled");
    const left = await entries(cache);
    deepStrictEqual(left.filter((n) => !/^[0-9a-f]{64}$/.test(n)), [fresh, "notes"]);
  });
});
