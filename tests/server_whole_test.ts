/**
 * Serving whole models: a small hand-written ONNX model with token ids (`writeTinyModel`: `ids`
 * I64 `[batch, seq]` and `feat` F32 `[batch, seq, 4]`, adapted layers that see `[rows, seq,
 * hidden]`), the same model with its batch fixed in the file, and the CNN of `fixtures/whole` with
 * its PEFT adapter against PyTorch's numbers. Mixed adapters per row equal per-row runs bit for
 * bit, the stacked branch equals the training graph's, `ffwd predict` and `ffwd serve` take
 * named inputs and nest outputs, and bad inputs answer 400s that name the input and the row.
 */

import { assert, assertEquals, maxDiff, relError, sameBytes, withTempDir } from "./_assert.ts";
import { runOriginal } from "./_onnx.ts";
import { runGraph } from "./_ops.ts";
import {
  call,
  namedRows,
  predictLines,
  sameNested,
  TINY_SIZES,
  tinyRows,
  writeAdapter,
  writeTinyModel,
} from "./_serve_fixtures.ts";
import { Command } from "@commander-js/extra-typings";
import { registerPredict } from "../cli/predict.ts";
import { startServe } from "../cli/serve.ts";
import { loadAdapter } from "../adapters/adapter.ts";
import { engineWeights } from "../adapters/weights.ts";
import { type AdapterWeights, InferenceEngine, type LayerWeights } from "../src/infer/engine.ts";
import { rowValues, sliceRows } from "../src/infer/rows.ts";
import { buildAdapted } from "../src/lora/adapted.ts";
import { type LayerAdapter, peftKeys } from "../src/lora/branch.ts";
import { openModel } from "../src/models/open.ts";
import { readSafetensors } from "../src/io/safetensors.ts";
import { Rng } from "../src/rng.ts";
import type { Tensor } from "../src/tensor.ts";

const SEQ = 5;

/** Random adapter weights on `layers` of the tiny model (B nonzero). */
function weights(seed: number, rank: number, layers: string[], dora = false): AdapterWeights {
  const rng = new Rng(seed);
  const u = (n: number) => rng.fillUniform(new Float32Array(n), -0.5, 0.5) as Float32Array;
  const map = new Map<string, LayerWeights>();
  for (const name of layers) {
    const [din, dout] = TINY_SIZES[name]!;
    const magnitude = dora ? u(dout).map((v) => 1 + v) : undefined;
    map.set(name, { A: u(rank * din), B: u(dout * rank), rank, scale: 2 / rank, magnitude });
  }
  return { layers: map };
}

/** Row `i` of every tensor, as a batch of one. */
const rowOf = (feeds: Record<string, Tensor>, i: number) =>
  Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, sliceRows(t, i, 1)]));

const same = (a: Tensor, b: Tensor) => sameBytes(a.data as Float32Array, b.data as Float32Array);

async function tinyEngine(dir: string, batch?: number) {
  const model = await openModel(await writeTinyModel(dir, batch));
  const engine = await InferenceEngine.create(model, { threads: 1 });
  await engine.register("a", weights(1, 4, ["fc1", "fc2", "head"]));
  await engine.register("b", weights(2, 1, ["fc1"]));
  await engine.register("d", weights(3, 2, ["fc2", "head"], true));
  const close = async () => {
    await engine.close();
    model.close();
  };
  return { model, engine, close };
}

Deno.test("mixed adapters on [rows, seq, hidden] layers equal each row run alone, bit for bit", async () => {
  await withTempDir(async (dir) => {
    const { engine, close } = await tinyEngine(dir);
    try {
      const names = ["a", "b", null, "d", "b", "a", null, "d", "a"];
      const x = tinyRows(names.length, SEQ, 7);
      const mixed = await engine.run(x, names);
      assertEquals(mixed.shape, [names.length, 2]);
      for (const n of new Set(names)) {
        const whole = await engine.run(x, n);
        for (const [i, m] of names.entries()) {
          if (m !== n) continue;
          const alone = await engine.run(rowOf(x, i), n);
          assert(same(sliceRows(mixed, i, 1), alone), `row ${i} (${n}) differs from its run alone`);
          assert(same(sliceRows(mixed, i, 1), sliceRows(whole, i, 1)), `row ${i} (${n})`);
        }
      }
    } finally {
      await close();
    }
  });
});

Deno.test("the stacked branch on 3-D layers computes the training graph's LoRA and DoRA", async () => {
  await withTempDir(async (dir) => {
    const { model, engine, close } = await tinyEngine(dir);
    try {
      const x = tinyRows(6, SEQ, 8);
      for (
        const [name, w, dora] of [["a", weights(1, 4, ["fc1", "fc2", "head"]), false], [
          "d",
          weights(3, 2, ["fc2", "head"], true),
          true,
        ]] as const
      ) {
        const adapters: LayerAdapter[] = [...w.layers].map(([l, lw]) => ({
          layer: model.layers.find((m) => m.name === l)!,
          rank: lw.rank,
          alpha: lw.scale * lw.rank,
          scale: lw.scale,
          dora,
        }));
        const built = buildAdapted(model, adapters);
        built.graph.output(built.output);
        const feeds: Record<string, Tensor> = { ...x };
        for (const [l, lw] of w.layers) {
          const k = peftKeys(l);
          const [din, dout] = TINY_SIZES[l]!;
          feeds[k.A] = { dtype: "F32", shape: [lw.rank, din], data: lw.A };
          feeds[k.B] = { dtype: "F32", shape: [dout, lw.rank], data: lw.B };
          if (lw.magnitude) {
            feeds[k.magnitude] = { dtype: "F32", shape: [dout], data: lw.magnitude };
          }
        }
        const want = Object.values(await runGraph(built.graph, feeds))[0]!;
        const got = await engine.run(x, name);
        const err = relError(got.data as Float32Array, want.data as Float32Array);
        console.log(`adapter ${name}: engine vs training graph, relative error ${err}`);
        assert(err < 1e-5, `adapter ${name}: relative error ${err}`);
      }
    } finally {
      await close();
    }
  });
});

Deno.test("rows with no adapter equal plain onnxruntime on the file", async () => {
  await withTempDir(async (dir) => {
    const { engine, close } = await tinyEngine(dir);
    try {
      const x = tinyRows(5, SEQ, 9);
      const want = (await runOriginal(`${dir}/tiny.onnx`, x)).logits!;
      const got = await engine.run(x, [null, null, "a", null, null]);
      const base = [0, 1, 3, 4].map((i) => maxDiff(sliceRows(got, i, 1), sliceRows(want, i, 1)));
      console.log(`engine vs onnxruntime: max |diff| ${Math.max(...base)}`);
      assert(Math.max(...base) < 1e-6, `base rows differ by ${base}`);
      assert(maxDiff(sliceRows(got, 2, 1), sliceRows(want, 2, 1)) > 1e-3, "the adapter acts");
    } finally {
      await close();
    }
  });
});

Deno.test("a batch fixed in the file runs its rows in chunks of that size, the last one padded", async () => {
  await withTempDir(async (dir) => {
    const { engine, close } = await tinyEngine(dir, 2);
    try {
      assertEquals(engine.fixedBatch, 2);
      const names = ["a", null, "d", "b", "a"];
      const x = tinyRows(names.length, SEQ, 10);
      const y = await engine.run(x, names);
      assertEquals(y.shape, [5, 2]);
      assertEquals([engine.stats.runs, engine.stats.rows], [3, 5]);
      for (const [i, n] of names.entries()) {
        assert(same(sliceRows(y, i, 1), await engine.run(rowOf(x, i), n)), `row ${i}`);
      }
      const pair = Object.fromEntries(Object.entries(x).map(([k, t]) => [k, sliceRows(t, 1, 2)]));
      const want = (await runOriginal(`${dir}/tiny_b2.onnx`, pair)).logits!;
      const got = await engine.run(pair, [null, "a"]);
      assert(maxDiff(sliceRows(got, 0, 1), sliceRows(want, 0, 1)) < 1e-6, "base row");
    } finally {
      await close();
    }
  });
});

/** An engine over `path` (ending at `output`) with the PEFT folder `adapter` as "peft". */
async function fileEngine(path: string, adapter?: string, output?: string) {
  const model = await openModel(path, { output });
  const engine = await InferenceEngine.create(model, { threads: 1, prepack: false });
  if (adapter) await engine.register("peft", engineWeights(await loadAdapter(adapter), model));
  return {
    engine,
    close: async () => {
      await engine.close();
      model.close();
    },
  };
}

Deno.test("`ffwd predict` reads named inputs and nests each row's output to its shape", async () => {
  await withTempDir(async (dir) => {
    const model = await writeTinyModel(dir);
    const x = tinyRows(4, SEQ, 11);
    const lines = namedRows(x).map((inputs) => ({ inputs, y: 1 }));
    await writeAdapter(`${dir}/peft`, 1, TINY_SIZES); // every layer, rank 2
    const logits = await predictLines({ model, adapter: `${dir}/peft` }, lines);
    const a = await fileEngine(model, `${dir}/peft`);
    const h = await fileEngine(model, undefined, "hidden");
    try {
      assert(sameNested(logits, rowValues(await a.engine.run(x, "peft"))), "logits differ");
      const data = `${dir}/rows.jsonl`;
      await Deno.writeTextFile(data, lines.map((l) => JSON.stringify(l)).join("\n"));
      const program = new Command().option("--debug").exitOverride();
      registerPredict(program);
      const out = `${dir}/y.jsonl`;
      const args = ["predict", "--model", model, "--output", "hidden", "--data", data];
      await program.parseAsync([...args, "--out", out, "--batch-size", "3"], { from: "user" });
      const ys = (await Deno.readTextFile(out)).trim().split("\n").map((l) => JSON.parse(l).y);
      assertEquals([ys.length, ys[0].length, ys[0][0].length], [4, SEQ, 3]); // [seq][3] a row
      assert(sameNested(ys, rowValues(await h.engine.run(x, null))), "hidden rows differ");
    } finally {
      await a.close();
      await h.close();
    }
  });
});

/** A server over `model` with adapter folders t0…t3 for the tiny model's layers (or `sizes`). */
async function tinyServer(dir: string, model: string, output?: string, sizes = TINY_SIZES) {
  const adapters = `${dir}/adapters`;
  await Deno.mkdir(adapters, { recursive: true });
  for (let i = 0; i < 4; i++) await writeAdapter(`${adapters}/t${i}`, i, sizes);
  const running = await startServe({
    model,
    output,
    adaptersDir: adapters,
    port: 0,
    maxWaitMs: 20,
    prepack: false,
    threads: 1,
  });
  const predict = (inputs: unknown[], adapter: string | null) =>
    call(`${running.server.url}/v1/predict`, "POST", { inputs, adapter });
  const stop = async () => {
    await running.server.shutdown();
    await running.close();
  };
  return { ...running, adapters, predict, stop };
}

Deno.test("served named inputs: mixed adapters and sequence lengths equal `ffwd predict` bit for bit", async () => {
  await withTempDir(async (dir) => {
    const model = await writeTinyModel(dir);
    const s = await tinyServer(dir, model);
    try {
      const rows = namedRows(tinyRows(6, SEQ, 12));
      const long = namedRows(tinyRows(2, 8, 13)); // another sequence length: another batch
      const names = ["t0", "t1", null, "t2", "t3", "t1"];
      const [results, longResult] = await Promise.all([
        Promise.all(names.map((a, i) => s.predict([rows[i]], a))),
        s.predict(long, "t2"),
      ]);
      for (const [i, a] of names.entries()) {
        assertEquals(results[i]!.status, 200, JSON.stringify(results[i]!.json));
        const adapter = a ? `${s.adapters}/${a}` : undefined;
        const want = await predictLines({ model, adapter }, [{ inputs: rows[i] }]);
        assert(sameNested(results[i]!.json.outputs, want), `row ${i} (${a}) differs`);
      }
      const want = await predictLines(
        { model, adapter: `${s.adapters}/t2` },
        long.map((inputs) => ({ inputs })),
      );
      assert(sameNested(longResult.json.outputs, want), "the 8-token rows differ");
      assert(s.server.metrics.batchRequests.count() < names.length, "requests were batched");
      // `feat` flat instead of nested [seq][4], and `ids` as floats that are whole numbers
      const flat = {
        ids: (rows[0]!.ids as number[]).map((v) => v + 0.0),
        feat: [rows[0]!.feat].flat(2),
      };
      const again = await s.predict([flat], "t0");
      assert(sameNested(again.json.outputs, results[0]!.json.outputs), "a flat row differs");
    } finally {
      await s.stop();
    }
  });
});

Deno.test("served outputs nest to the output's row shape ([rows, seq, 3] ends at `hidden`)", async () => {
  await withTempDir(async (dir) => {
    const model = await writeTinyModel(dir);
    const { fc1, fc2 } = TINY_SIZES; // the layers before `hidden`
    const s = await tinyServer(dir, model, "hidden", { fc1: fc1!, fc2: fc2! });
    try {
      const rows = namedRows(tinyRows(2, SEQ, 14));
      const r = await s.predict(rows, "t1");
      assertEquals(r.status, 200, JSON.stringify(r.json));
      const out = r.json.outputs as number[][][];
      assertEquals([out.length, out[0]!.length, out[0]![0]!.length], [2, SEQ, 3]);
      const lines = rows.map((inputs) => ({ inputs }));
      const want = await predictLines(
        { model, output: "hidden", adapter: `${s.adapters}/t1` },
        lines,
      );
      assert(sameNested(out, want), "nested outputs differ from `ffwd predict`");
    } finally {
      await s.stop();
    }
  });
});

Deno.test("bad named inputs answer 400 naming the row, the input and both shapes or dtypes", async () => {
  await withTempDir(async (dir) => {
    const s = await tinyServer(dir, await writeTinyModel(dir));
    const [ok, other] = namedRows(tinyRows(2, SEQ, 15)) as { ids: number[]; feat: number[][] }[];
    const cases: [unknown[], string][] = [
      [[{ ids: ok!.ids }], `inputs[0] has no input "feat"`],
      [[{ ...ok, mask: [1] }], `inputs[0].mask is not an input of the model`],
      [[{ ...ok, ids: [1, 2, 1.5, 3, 4] }], `inputs[0].ids[2] is 1.5, expected an integer`],
      [[{ ...ok, ids: ["a", 2, 3, 4, 5] }], `inputs[0].ids[0] is "a", not a number`],
      [[{ ...ok, feat: ok!.feat.map((p) => p.slice(1)) }], "inputs[0].feat has shape [5, 3]"],
      [[ok, { ...other, ids: [1, 2, 3, 4, 5, 6] }], "inputs[1].ids has 6 values, expected 5"],
      [[{ ...ok, feat: [...ok!.feat, ok!.feat[0]] }], "inputs[0].feat has seq = 6"],
      [[[1, 2, 3]], "inputs[0] is an array, but the model has 2 inputs"],
      [[{ ...ok, feat: [ok!.feat[0], [1]] }], "inputs[0].feat[1] has 1 values, expected 4"],
    ];
    try {
      for (const [inputs, includes] of cases) {
        const r = await s.predict(inputs, null);
        const error = String(r.json.error);
        assertEquals(r.status, 400, error);
        assert(error.includes(includes), `"${error}" lacks "${includes}"`);
      }
      const shapes = String((await s.predict(cases[5]![0], null)).json.error);
      assert(shapes.includes('as in inputs[0].ids (input "ids": I64 [batch, seq])'), shapes);
    } finally {
      await s.stop();
    }
  });
});

const WHOLE = new URL("../fixtures/whole/", import.meta.url).pathname;

Deno.test("the CNN of fixtures/whole with its PEFT adapter: predict gives PyTorch's logits, serve equals predict", async () => {
  const golden = (await readSafetensors(`${WHOLE}cnn/golden.safetensors`)).tensors;
  const x = golden.get("x")!; // F32 [4, 1, 28, 28]
  const images = rowValues(x) as number[][][][];
  const flat = images.map((im) => ({ x: im.flat(2) })); // 784 values a row, reshaped by the engine
  const model = `${WHOLE}cnn/model.onnx`;
  const lora = await predictLines({ model, adapter: `${WHOLE}cnn/lora` }, flat);
  const base = await predictLines({ model }, flat);
  for (const [got, key] of [[lora, "lora.adapted.logits"], [base, "base.logits"]] as const) {
    const err = relError((got as number[][]).flat(), golden.get(key)!.data as Float64Array);
    console.log(`cnn ${key}: relative error to PyTorch ${err}`);
    assert(err < 1e-5, `${key}: relative error ${err}`);
  }
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/lora`);
    for (const f of ["adapter_config.json", "adapter_model.safetensors"]) {
      await Deno.copyFile(`${WHOLE}cnn/lora/${f}`, `${dir}/lora/${f}`);
    }
    const s = await startServe({ model, adaptersDir: dir, port: 0, maxWaitMs: 20, prepack: false });
    try {
      const names = ["lora", null, null, "lora"];
      const results = await Promise.all(
        names.map((adapter, i) =>
          call(`${s.server.url}/v1/predict`, "POST", { inputs: [images[i]], adapter })
        ),
      );
      for (const [i, a] of names.entries()) {
        assertEquals(results[i]!.status, 200, JSON.stringify(results[i]!.json));
        const want = a ? lora[i] : base[i];
        assert(sameNested(results[i]!.json.outputs, [want]), `row ${i} (${a}) differs`);
      }
    } finally {
      await s.server.shutdown();
      await s.close();
    }
  });
});
