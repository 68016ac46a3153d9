import { assert, assertEquals, assertRejects, maxDiff, randomTensor } from "../../tests/_assert.ts";
import { runGraph } from "../../tests/_ops.ts";
import { openSafetensorsModel } from "../models/blocks/safetensors_model.ts";
import { Graph } from "../engine/graph.ts";
import { Rng } from "../rng.ts";
import type { Tensor } from "../tensor.ts";
import { DoraRatios } from "../lora/dora.ts";
import {
  type AdapterWeights,
  InferenceEngine,
  type LayerWeights,
  UnknownAdapterError,
} from "./engine.ts";

const MODEL = new URL("../../fixtures/hf/fc_mlp/model.safetensors", import.meta.url).pathname;
const SIZES: Record<string, [number, number]> = { fc1: [8, 16], fc2: [16, 16], fc3: [16, 4] };

/** Random adapter weights on `layers` (B nonzero, so every adapter changes the output). */
function randomWeights(
  seed: number,
  rank: number,
  layers = ["fc1", "fc2", "fc3"],
  opts: { dora?: boolean; source?: string } = {},
): AdapterWeights {
  const rng = new Rng(seed);
  const u = (n: number) => rng.fillUniform(new Float32Array(n), -0.5, 0.5) as Float32Array;
  const map = new Map<string, LayerWeights>();
  for (const name of layers) {
    const [din, dout] = SIZES[name]!;
    const magnitude = opts.dora ? u(dout).map((v) => 1 + v) : undefined;
    map.set(name, { A: u(rank * din), B: u(dout * rank), rank, scale: 2 / rank, magnitude });
  }
  return { layers: map, source: opts.source };
}

/** `rows` rows of input for the fixture model (8 features), uniform in [-1, 1). */
function input(rows: number, seed = 7): Tensor<"F32"> {
  return randomTensor([rows, 8], seed);
}

function rowOf(t: Tensor, i: number): number[] {
  const w = t.shape[1]!;
  return [...(t.data as Float32Array).subarray(i * w, (i + 1) * w)];
}

async function engineWith(opts = {}): Promise<InferenceEngine> {
  return await InferenceEngine.create(await openSafetensorsModel(MODEL), { threads: 1, ...opts });
}

Deno.test("a mixed batch (LoRA ranks 4 and 2, DoRA, no adapter) equals each row run alone", async () => {
  const engine = await engineWith();
  await engine.register("a", randomWeights(1, 4));
  await engine.register("b", randomWeights(2, 2, ["fc1"]));
  await engine.register("d", randomWeights(3, 3, ["fc1", "fc3"], { dora: true }));
  const names = ["a", "b", null, "d", "b", "a", null, "d", "a"];
  const x = input(names.length);
  const mixed = await engine.run(x, names);
  let batchDiff = 0, rowDiff = 0;
  for (const n of new Set(names)) {
    const whole = await engine.run(x, n); // the whole batch with one adapter
    for (const [i, m] of names.entries()) {
      if (m !== n) continue;
      const alone = await engine.run(
        { dtype: "F32", shape: [1, 8], data: x.data.slice(i * 8, i * 8 + 8) },
        n,
      );
      batchDiff = Math.max(batchDiff, maxDiff(rowOf(mixed, i), rowOf(whole, i)));
      rowDiff = Math.max(rowDiff, maxDiff(rowOf(mixed, i), rowOf(alone, 0)));
    }
  }
  await engine.close();
  console.log(`mixed vs single-adapter batch: max |diff| ${batchDiff}; vs one row: ${rowDiff}`);
  assertEquals(batchDiff, 0);
  assertEquals(rowDiff, 0); // one-row runs are padded to two rows (see `#runOne`)
});

Deno.test("rows with no adapter equal the plain base graph", async () => {
  const model = await openSafetensorsModel(MODEL);
  const g = new Graph();
  const built = model.build(g);
  g.output(built.outputs[0]!);
  const x = input(6);
  const base = Object.values(await runGraph(g, { [built.inputs[0]!.name]: x }))[0]!;
  const engine = await engineWith();
  await engine.register("a", randomWeights(1, 4));
  const none = await engine.run(x, null);
  const some = await engine.run(x, [null, "a", null, "a", null, null]);
  await engine.close();
  assertEquals([...none.data], [...base.data]);
  for (const i of [0, 2, 4, 5]) assertEquals(rowOf(some, i), rowOf(base, i));
});

Deno.test("the graph gets DoRA's term with the first DoRA adapter; LoRA rows keep their bits", async () => {
  const engine = await engineWith();
  await engine.register("a", randomWeights(1, 4));
  await engine.register("b", randomWeights(2, 2, ["fc1", "fc3"]));
  const names = ["a", null, "b", "a", "b", null];
  const x = input(names.length);
  const before = await engine.run(x, names);
  assertEquals(engine.doraTerm, false);
  // runs started before the DoRA registrations (on the first graph) are unaffected
  const during = Array.from({ length: 8 }, () => engine.run(x, names));
  const [d1, d2] = await Promise.all([
    engine.register("d1", randomWeights(3, 3, ["fc1", "fc3"], { dora: true })),
    engine.register("d2", randomWeights(4, 2, undefined, { dora: true })),
  ]);
  assert(d1.dora && d2.dora && !engine.get("a")!.dora, "snapshots say which are DoRA");
  assertEquals(engine.doraTerm, true);
  for (const y of await Promise.all(during)) assertEquals([...y.data], [...before.data]);
  assertEquals([...(await engine.run(x, names)).data], [...before.data]);
  // every row of a mixed batch (LoRA, DoRA, none) equals its single-adapter batch's
  const mix = ["d1", "a", "d2", null, "d1", "b"];
  const mixed = await engine.run(x, mix);
  for (const [i, n] of mix.entries()) {
    assertEquals(rowOf(mixed, i), rowOf(await engine.run(x, n), i));
  }
  await engine.close();
});

Deno.test("runs in flight while adapters are replaced and unloaded each use one version", async () => {
  const weights = Array.from({ length: 6 }, (_, i) =>
    randomWeights(10 + i, 1 + i % 4, undefined, {
      source: `w${i}`,
    }));
  const x = input(4, 3);
  const ref = await engineWith();
  const expected = new Map<string, Tensor>();
  for (const [i, w] of weights.entries()) {
    await ref.register("r", w);
    expected.set(`w${i}`, await ref.run(x, "r"));
  }
  await ref.close();
  let next = 0;
  const engine = await engineWith({
    maxAdapters: 2,
    loader: () => Promise.resolve(weights[next++ % weights.length]!),
  });
  const rng = new Rng(5);
  const checks: Promise<number>[] = [];
  for (let i = 0; i < 300; i++) {
    const names = [0, 1, 2, 3].map(() => ["p", "q", "s", null][Math.floor(rng.uniform() * 4)]!);
    checks.push((async () => {
      const snaps = await engine.resolve(names);
      await Promise.resolve(); // let replacements happen between resolve and run
      const y = await engine.runSnapshots(x, snaps);
      snaps.forEach((s, row) => {
        if (s) assertEquals(rowOf(y, row), rowOf(expected.get(s.source!)!, row), s.source);
      });
      return snaps.filter((s) => s).length;
    })());
    if (i % 7 === 0) engine.register("p", weights[i % weights.length]!);
    if (i % 11 === 0) engine.unregister("q");
  }
  const rows = (await Promise.all(checks)).reduce((a, b) => a + b, 0);
  await engine.close();
  assert(rows > 600, `only ${rows} adapted rows`);
  assert(engine.stats.evictions > 0 && engine.stats.loads > 20, JSON.stringify(engine.stats));
});

Deno.test("eviction drops the least recently used adapter, by count", async () => {
  const engine = await engineWith({ maxAdapters: 3 });
  for (const [i, n] of ["a", "b", "c"].entries()) await engine.register(n, randomWeights(i, 2));
  await engine.resolve(["a"]); // a is now the most recently used
  await engine.register("d", randomWeights(9, 2));
  assertEquals(engine.adapters.map((s) => s.name), ["c", "a", "d"]);
  await engine.run(input(1), "c");
  await engine.register("e", randomWeights(8, 2));
  assertEquals(engine.adapters.map((s) => s.name), ["d", "c", "e"]);
  assertEquals(engine.stats.evictions, 2);
  await assertRejects(() => engine.run(input(1), "a"), UnknownAdapterError, 'Unknown adapter "a"');
  await engine.close();
});

Deno.test("eviction by bytes keeps the newest adapter even when it alone is over the limit", async () => {
  const one = randomWeights(1, 2);
  const engine = await engineWith();
  const bytes = (await engine.register("probe", one)).bytes; // 2·(8+16 + 16+16 + 16+4)·4 = 608
  await engine.close();
  const small = await engineWith({ maxBytes: 2 * bytes });
  for (const n of ["a", "b", "c"]) await small.register(n, one);
  assertEquals(small.adapters.map((s) => s.name), ["b", "c"]);
  await small.register("big", randomWeights(2, 8));
  assertEquals(small.adapters.map((s) => s.name), ["big"]);
  assertEquals(small.bytes, 8 / 2 * bytes);
  await small.close();
});

Deno.test("adapters load lazily once, and come back after eviction as a new version", async () => {
  const calls: string[] = [];
  const engine = await engineWith({
    maxAdapters: 2,
    loader: async (name: string) => {
      calls.push(name);
      await new Promise((r) => setTimeout(r, 5));
      return randomWeights(name.charCodeAt(0), 2);
    },
  });
  const [s1, s2] = await Promise.all([engine.resolve(["a"]), engine.resolve(["a", "a"])]);
  assertEquals(calls, ["a"]);
  assert(s1[0] === s2[0] && s2[0] === s2[1], "concurrent resolves share one load");
  await engine.run(input(2), ["b", "c"]); // evicts a
  assertEquals(engine.adapters.map((s) => s.name), ["b", "c"]);
  const again = await engine.run(input(1), "a");
  assertEquals(calls, ["a", "b", "c", "a"]);
  assert(engine.get("a")!.version > s1[0]!.version, "reloaded as a new version");
  const first = await engine.runSnapshots(input(1), s1);
  assertEquals([...again.data], [...first.data]);
  assertEquals(engine.stats.loads, 4);
  await engine.close();
});

Deno.test("a lazy load that finishes after an explicit register does not replace it", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const engine = await engineWith({
    loader: async () => {
      await gate;
      return randomWeights(1, 2, undefined, { source: "lazy" });
    },
  });
  const pending = engine.resolve(["a"]);
  await engine.register("a", randomWeights(2, 2, undefined, { source: "explicit" }));
  release();
  assertEquals((await pending)[0]!.source, "explicit");
  assertEquals(engine.get("a")!.source, "explicit");
  await engine.close();
});

Deno.test("an unknown adapter without a loader is an UnknownAdapterError; bad shapes are TypeErrors", async () => {
  const engine = await engineWith();
  await assertRejects(() => engine.run(input(1), "nope"), UnknownAdapterError);
  const bad = {
    layers: new Map([["fc1", { ...randomWeights(1, 2).layers.get("fc1")!, rank: 3 }]]),
  };
  await assertRejects(() => engine.register("bad", bad), TypeError, 'layer "fc1" has A of 16');
  await assertRejects(
    () => engine.register("bad", { layers: new Map([["fc9", bad.layers.get("fc1")!]]) }),
    RangeError,
    "layers: fc1, fc2, fc3",
  );
  await engine.close();
  await assertRejects(() => engine.run(input(1), null), Error, "closed");
});

Deno.test("DoraRatios compiles one session per layer and releases them", async () => {
  const model = await openSafetensorsModel(MODEL);
  const dora = new DoraRatios(model);
  const lw = randomWeights(4, 2, ["fc1"], { dora: true }).layers.get("fc1")!;
  const r1 = await dora.compute(model.layers[0]!, lw);
  const r2 = await dora.compute(model.layers[0]!, lw);
  assertEquals(dora.size, 1);
  assertEquals([...r1], [...r2]);
  await dora.release();
  assertEquals(dora.size, 0);
  await assertRejects(() => dora.compute(model.layers[0]!, lw), Error, "closed");
  model.close();
});
