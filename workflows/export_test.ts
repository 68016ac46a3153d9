import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { openSafetensorsModel } from "../src/models/blocks/safetensors_model.ts";
import { saveOnnx } from "../src/engine/emit.ts";
import { Graph } from "../src/engine/graph.ts";
import { cast } from "../src/engine/ops/cast.ts";
import { constantNode } from "../src/engine/ops/constant.ts";
import { matmul } from "../src/engine/ops/matmul.ts";
import { readOnnxFile } from "../src/io/onnx/read.ts";
import { openSafetensors } from "../src/io/safetensors.ts";
import type { BaseModel } from "../src/models/model.ts";
import { openModel } from "../src/models/open.ts";
import { castFloat, type Tensor, toBytes } from "../src/tensor.ts";
import { type Adapter, loadAdapter } from "../adapters/adapter.ts";
import { exportAdapter } from "./export.ts";
import { adapterFeeds, ParityError } from "./parity.ts";
import { planMerge } from "./merge.ts";
import { randomAdapter } from "../tests/_random_adapter.ts";
import { REALDATA, realdataTest } from "../tests/_realdata.ts";
import { withTempDir } from "../tests/_assert.ts";

const PEFT = new URL("../fixtures/peft/", import.meta.url).pathname;
const HF = new URL("../fixtures/hf/", import.meta.url).pathname;
const REAL = REALDATA;

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** Runs a file in a plain onnxruntime session (no ffwd code) and returns its first output. */
async function plainRun(path: string, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(path);
  try {
    const out = await session.run(feeds);
    return out[session.outputNames[0]!]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function assertPass(
  report: { verdict: string; outputs: readonly { pairs: readonly unknown[] }[] } | null,
  pairs: number,
) {
  strictEqual(report?.verdict, "pass");
  for (const o of report!.outputs) strictEqual(o.pairs.length, pairs);
}

Deno.test("exportAdapter() writes merged ONNX and safetensors of every HF layout that pass parity", async () => {
  await withTempDir(async (dir) => {
    for await (const e of Deno.readDir(HF)) {
      if (!e.isDirectory) continue;
      const spec = e.name.startsWith("custom") ? `${HF}${e.name}/block.json` : undefined;
      const block = e.name === "llama_3layers" ? "model.layers.2.mlp" : undefined;
      const model = await openModel(`${HF}${e.name}/model.safetensors`, { spec, block });
      const adapter = randomAdapter(model, { r: 2, seed: 7 });
      const onnx = await exportAdapter(model, adapter, { out: `${dir}/${e.name}.onnx` });
      assertPass(onnx.report, 3);
      const x = onnx.report!.probe;
      ok(x.rows === 8, e.name);
      const input = model.inputs[0]!;
      const data = new Float32Array(2 * (input.shape[1] as number)).fill(0.25);
      const y = await plainRun(`${dir}/${e.name}.onnx`, {
        [input.name]: new ort.Tensor("float32", data, [2, input.shape[1] as number]),
      });
      ok(y.every(Number.isFinite), e.name);
      const st = await exportAdapter(model, adapter, { out: `${dir}/${e.name}.safetensors`, spec });
      assertPass(st.report, 3);
      model.close();
    }
  });
});

Deno.test("exportAdapter() to safetensors keeps keys, dtypes, metadata and the other tensors' bytes", async () => {
  await withTempDir(async (dir) => {
    const path = `${HF}llama_bf16/model.safetensors`;
    const model = await openSafetensorsModel(path);
    const adapter = randomAdapter(model, { r: 2, seed: 1, layers: ["model.layers.0.mlp.up_proj"] });
    const { report, files } = await exportAdapter(model, adapter, {
      out: `${dir}/merged.safetensors`,
    });
    strictEqual(report!.storage, "BF16");
    strictEqual(report!.tolerance.relative, 2 ** -6);
    deepStrictEqual(files, [
      `${dir}/config.json`,
      `${dir}/merged.safetensors`,
      `${dir}/merged.safetensors.parity.json`,
    ]);
    using before = await openSafetensors(path);
    using after = await openSafetensors(`${dir}/merged.safetensors`);
    deepStrictEqual({ ...after.metadata, "ffwd.adapter": undefined }, {
      ...before.metadata,
      "ffwd.adapter": undefined,
    });
    strictEqual(after.metadata["ffwd.adapter"], "random");
    const shape = (h: typeof before) =>
      h.header.tensors.map((t) => [t.name, t.dtype, t.shape]).sort();
    deepStrictEqual(shape(after), shape(before));
    for (const t of before.header.tensors) {
      const a = toBytes(await before.readTensor(t.name)),
        b = toBytes(await after.readTensor(t.name));
      const same = a.length === b.length && a.every((v, i) => v === b[i]);
      strictEqual(same, t.name !== "model.layers.0.mlp.up_proj.weight", t.name);
    }
    model.close();
  });
});

Deno.test("exportAdapter() of an ONNX base keeps its graph and replaces only the adapted initializers", async () => {
  await withTempDir(async (dir) => {
    const model = await openModel(`${PEFT}mlp_lora/base.safetensors`);
    await exportAdapter(model, randomAdapter(model), { out: `${dir}/base.onnx` }); // an ONNX base
    const onnx = await openModel(`${dir}/base.onnx`);
    const adapter = randomAdapter(onnx, { name: "tuned", r: 2, seed: 3, layers: ["fc2"] });
    const { report } = await exportAdapter(onnx, adapter, { out: `${dir}/merged.onnx` });
    assertPass(report, 3);
    const a = (await readOnnxFile(`${dir}/base.onnx`)).proto,
      b = (await readOnnxFile(`${dir}/merged.onnx`)).proto;
    const sig = (p: typeof a) => ({
      opsets: p.opsetImport.map((o) => [o.domain, o.version]),
      inputs: p.graph!.input.map((i) => i.name),
      outputs: p.graph!.output.map((o) => o.name),
      nodes: p.graph!.node.map((n) => [n.opType, ...n.input, ...n.output]),
      inits: p.graph!.initializer.map((t) => [t.name, t.dataType, t.dims.map(Number)]),
    });
    deepStrictEqual(sig(b), sig(a));
    const changed = b.graph!.initializer.filter((t, i) =>
      !((x, y) => x.length === y.length && x.every((v, k) => v === y[k]))(
        t.rawData,
        a.graph!.initializer[i]!.rawData,
      )
    ).map((t) => t.name);
    deepStrictEqual(changed, ["fc2.weight"]);
    const meta = Object.fromEntries(b.metadataProps.map((p) => [p.key, p.value]));
    strictEqual(meta["ffwd.adapter"], "tuned");
    strictEqual(JSON.parse(meta["ffwd.adapter_config"]!).r, 2);
    ok(JSON.parse(meta["ffwd.parity"]!)[0].pairs[0].pass);
    model.close();
  });
});

Deno.test("exportAdapter() replaces Constant weights and keeps an F16 initializer in F16", async () => {
  await withTempDir(async (dir) => {
    const g = new Graph();
    const x = g.input("x", "F32", ["batch", 3]);
    const half = castFloat({
      dtype: "F32",
      shape: [3, 4],
      data: new Float32Array(12).map((_, i) => i / 8),
    }, "F16");
    const h = matmul(x, cast(g.initializer("w16", half), "F32")); // [batch, 4]
    const c = constantNode(g, {
      dtype: "F32",
      shape: [4, 2],
      data: new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]),
    });
    g.output(matmul(h, c));
    await saveOnnx(`${dir}/base.onnx`, g);
    const model = await openModel(`${dir}/base.onnx`);
    deepStrictEqual(model.layers.map((l) => l.dtype), ["F16", "F32"]);
    const { report } = await exportAdapter(model, randomAdapter(model), { out: `${dir}/m.onnx` });
    assertPass(report, 3);
    strictEqual(report!.tolerance.relative, 2 ** -8);
    const p = (await readOnnxFile(`${dir}/m.onnx`)).proto.graph!;
    strictEqual(p.initializer.find((t) => t.name === "w16")!.dataType, 10); // FLOAT16
    deepStrictEqual(p.node.map((n) => n.opType), ["Cast", "MatMul", "Constant", "MatMul"]);
    const before =
      (await readOnnxFile(`${dir}/base.onnx`)).proto.graph!.node[2]!.attribute[0]!.t!.rawData;
    ok(
      p.node[2]!.attribute[0]!.t!.rawData.some((b, i) => b !== before[i]),
      "the Constant's value changed",
    );
  });
});

Deno.test("exportAdapter() adapter-inputs: A and B are inputs by PEFT key and swap in a plain session", async () => {
  await withTempDir(async (dir) => {
    const model = await openModel(`${PEFT}mlp_dora/base.safetensors`);
    const adapter = await loadAdapter(`${PEFT}mlp_dora`);
    const { report } = await exportAdapter(model, adapter, {
      out: `${dir}/swap.onnx`,
      format: "onnx",
      mode: "adapter-inputs",
    });
    assertPass(report, 1);
    const proto = (await readOnnxFile(`${dir}/swap.onnx`)).proto;
    const inputs = proto.graph!.input.map((i) => i.name);
    ok(inputs.includes("base_model.model.fc1.lora_A.weight"), inputs.join());
    ok(inputs.includes("base_model.model.fc3.lora_magnitude_vector"), inputs.join());
    const meta = Object.fromEntries(proto.metadataProps.map((p) => [p.key, p.value]));
    deepStrictEqual(Object.keys(JSON.parse(meta["ffwd.scales"]!)).sort(), ["fc1", "fc3"]);
    // Hot swap: other adapter tensors, same session file; equals that adapter merged.
    const bend = (t: Tensor, f: number) => ({
      ...t,
      data: (t.data as Float32Array).map((v, i) => v * f + 0.01 * Math.sin(i)),
    });
    const other: Adapter = {
      ...adapter,
      name: "other",
      layers: new Map(
        [...adapter.layers].map((
          [m, t],
        ) => [m, { A: bend(t.A, -1.5), B: bend(t.B, 0.5), magnitude: bend(t.magnitude!, 1.2) }]),
      ),
    };
    const plan = planMerge(model, other);
    const x = new ort.Tensor("float32", new Float32Array(12).fill(0.5), [2, 6]);
    const feeds: Record<string, ort.Tensor> = { x };
    for (const [k, t] of Object.entries(adapterFeeds(plan))) {
      feeds[k] = new ort.Tensor("float32", t.data, [...t.shape]);
    }
    const swapped = await plainRun(`${dir}/swap.onnx`, feeds);
    await exportAdapter(model, other, { out: `${dir}/other.onnx` });
    const merged = await plainRun(`${dir}/other.onnx`, { x });
    ok(
      swapped.every((v, i) => Math.abs(v - merged[i]!) <= 1e-5 * Math.max(1, Math.abs(merged[i]!))),
    );
    model.close();
  });
});

Deno.test("exportAdapter() leaves no file behind when the parity check fails", async () => {
  await withTempDir(async (dir) => {
    const model = await openModel(`${PEFT}mlp_lora/base.safetensors`);
    const adapter = await loadAdapter(`${PEFT}mlp_lora`);
    await Deno.writeTextFile(`${dir}/merged.onnx`, "an older file");
    for (const out of ["merged.onnx", "merged.safetensors"]) {
      await rejects(
        exportAdapter(model, adapter, { out: `${dir}/${out}`, tolerance: 0 }),
        (e: Error) => {
          ok(e instanceof ParityError, e.message);
          ok(/no file was written/.test(e.message), e.message);
          strictEqual(e.report.verdict, "fail");
          return true;
        },
      );
    }
    deepStrictEqual(await names(dir), ["merged.onnx"]);
    strictEqual(await Deno.readTextFile(`${dir}/merged.onnx`), "an older file");
    model.close();
  });
});

Deno.test("exportAdapter() reads probe files and refuses what it cannot write", async () => {
  await withTempDir(async (dir) => {
    const model = await openModel(`${PEFT}legacy/base.safetensors`);
    const adapter = await loadAdapter(`${PEFT}legacy`);
    await Deno.writeTextFile(
      `${dir}/probe.jsonl`,
      '{"x": [1, 2, 3, 4, 5, 6]}\n{"x": [0, 0, 1, 0, 0, 0]}\n',
    );
    const { report } = await exportAdapter(model, adapter, {
      out: `${dir}/m.onnx`,
      probe: `${dir}/probe.jsonl`,
    });
    deepStrictEqual(report!.probe, { source: `${dir}/probe.jsonl`, rows: 2 });
    await rejects(exportAdapter(model, adapter, { out: model.source }), /the base model itself/);
    await rejects(
      exportAdapter(model, adapter, { out: `${dir}/none/m.onnx` }),
      /folder does not exist/,
    );
    const onnx = await openModel(`${dir}/m.onnx`);
    await rejects(
      exportAdapter(onnx, randomAdapter(onnx), { out: `${dir}/m.safetensors` }),
      /safetensors base/,
    );
    model.close();
  });
});

const REAL_BASES = [
  "tracel-ai__burn/crates/burn-import/onnx-tests/tests/linear/linear.onnx",
  "onnx__onnx/onnx/backend/test/data/pytorch-converted/test_Linear/model.onnx",
  "onnx__onnx/onnx/backend/test/data/pytorch-converted/test_Linear_no_bias/model.onnx",
  "tracel-ai__burn/examples/raspberry-pi-pico/src/model/sine.onnx",
  "onnxruntime__onnxruntime-qnn/onnxruntime/test/testdata/test_training_model.onnx",
  "kraiskil__onnx2c/test/tfl_helloworld/model.onnx",
  "kraiskil__onnx2c/test/velardo/lesson9.onnx",
  "tracel-ai__burn/crates/onnx-ir/tests/fixtures/gemm_linear.onnx",
  "tracel-ai__burn/crates/onnx-ir/tests/fixtures/mixed_data.onnx",
  "tracel-ai__burn/crates/onnx-ir/tests/fixtures/multi_external_files.onnx",
];

realdataTest(
  "exportAdapter() merges real ONNX bases (PyTorch, tf2onnx, keras2onnx, external data) with parity",
  async () => {
    await withTempDir(async (dir) => {
      for (const [i, rel] of REAL_BASES.entries()) {
        const model: BaseModel = await openModel(`${REAL}${rel}`);
        for (const dora of [false, true]) {
          const adapter = randomAdapter(model, { r: 2, seed: i, dora });
          const { report } = await exportAdapter(model, adapter, { out: `${dir}/m${i}.onnx` });
          strictEqual(report!.verdict, "pass", `${rel} dora=${dora}`);
          const s = await ort.InferenceSession.create(`${dir}/m${i}.onnx`);
          deepStrictEqual([...s.outputNames], model.outputs.map((o) => o.name), rel);
          await s.release();
        }
        model.close();
      }
    });
  },
);

Deno.test("exportAdapter() to safetensors keeps a copy of the base's config.json beside the file", async () => {
  await withTempDir(async (dir) => {
    const model = await openSafetensorsModel(`${HF}llama/model.safetensors`);
    const adapter = randomAdapter(model, { r: 2, seed: 3 });
    const { files } = await exportAdapter(model, adapter, { out: `${dir}/merged.safetensors` });
    model.close();
    ok(files.includes(`${dir}/config.json`), files.join(", "));
    deepStrictEqual(
      await Deno.readFile(`${dir}/config.json`),
      await Deno.readFile(`${HF}llama/config.json`),
    );
  });
});
