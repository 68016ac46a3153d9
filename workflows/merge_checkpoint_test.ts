/**
 * The whole-checkpoint merge against PyTorch's merge (PEFT's formulas, `fixtures/checkpoints/
 * make_checkpoints.py`): a 3-layer LLaMA (F32, sharded, BF16) and a 2-layer GPT-2 (Conv1D, DoRA,
 * rsLoRA, keys without the task model's prefix); every byte outside the merged tensors identical;
 * failures that leave nothing behind; a check that catches a wrong byte.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { assertRejects, relError, withTempDir } from "../tests/_assert.ts";
import { type Adapter, loadAdapter } from "../adapters/adapter.ts";
import { openSafetensors, readSafetensors, writeSafetensors } from "../src/io/safetensors.ts";
import { Rng } from "../src/rng.ts";
import { castFloat, type Tensor, tensor, toFloat32 } from "../src/tensor.ts";
import { mergeCheckpoint } from "./merge_checkpoint.ts";
import { copyRanges, openCheckpoint } from "./_checkpoint_files.ts";
import { planCheckpoint } from "./_checkpoint_plan.ts";
import { checkShard } from "./_checkpoint_check.ts";
import { defaultPeftConfig } from "../adapters/config.ts";

const CK = new URL("../fixtures/checkpoints/", import.meta.url).pathname;
const LLAMA_TARGETS = ["self_attn.q_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"]
  .concat("mlp.down_proj");

/** The golden's `merged.<key>` tensors by key. */
async function golden(folder: string, prefix = "merged."): Promise<Map<string, Tensor>> {
  const { tensors } = await readSafetensors(`${CK}${folder}/golden.safetensors`);
  return new Map(
    [...tensors].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]),
  );
}

/** Every file byte outside the changed tensors' ranges is the source's. */
async function sameOutside(source: string, written: string, changed: ReadonlySet<string>) {
  const [a, b] = [await Deno.readFile(source), await Deno.readFile(written)];
  strictEqual(b.length, a.length);
  using st = await openSafetensors(source);
  const mask = new Uint8Array(a.length);
  for (const e of st.header.tensors) {
    if (changed.has(e.name)) mask.fill(1, e.fileOffset, e.fileOffset + e.byteLength);
  }
  const at = a.findIndex((v, i) => mask[i] === 0 && v !== b[i]);
  strictEqual(at, -1, `${written} differs from ${source} at byte ${at}`);
}

async function assertMerged(dir: string, file: string, expected: Map<string, Tensor>, tol: number) {
  const { tensors } = await readSafetensors(`${dir}/${file}`);
  for (const [key, want] of expected) {
    const got = tensors.get(key);
    if (!got) continue; // in another shard
    deepStrictEqual([got.dtype, got.shape], [want.dtype, want.shape], key);
    const err = relError(toFloat32(got).data, toFloat32(want).data);
    ok(err <= tol, `${key}: relative error ${err} > ${tol}`);
  }
}

Deno.test("mergeCheckpoint() merges every targeted weight of a 3-layer LLaMA as PyTorch does, and keeps every other byte", async () => {
  await withTempDir(async (dir) => {
    const adapter = await loadAdapter(`${CK}llama/adapter`);
    const { files, report } = await mergeCheckpoint(`${CK}llama/model.safetensors`, adapter, {
      out: `${dir}/merged.safetensors`,
    });
    deepStrictEqual(files, [
      `${dir}/config.json`,
      `${dir}/merged.safetensors`,
      `${dir}/merged.safetensors.parity.json`,
    ]);
    const want = await golden("llama");
    const targets = [0, 1, 2].flatMap((i) =>
      LLAMA_TARGETS.map((t) => `model.layers.${i}.${t}.weight`)
    );
    deepStrictEqual([...want.keys()].sort(), [...targets, "lm_head.weight"].sort()); // + modules_to_save
    await assertMerged(dir, "merged.safetensors", want, 1e-6);
    await sameOutside(
      `${CK}llama/model.safetensors`,
      `${dir}/merged.safetensors`,
      new Set(want.keys()),
    );
    strictEqual(report.verdict, "pass");
    deepStrictEqual(report.tensors.map((t) => t.key).sort(), [...want.keys()].sort());
    for (const t of report.tensors) ok(t.maxRel <= 1e-6 && t.rows.length > 0, JSON.stringify(t));
    const down = report.tensors.find((t) => t.key === "model.layers.2.mlp.down_proj.weight")!;
    deepStrictEqual([down.change, down.orientation, down.scale], ["lora", "out_in", 8 / 2]);
    deepStrictEqual(report.unchanged, { tensors: 14, bytes: 7104, identical: true, differing: [] });
    deepStrictEqual(
      JSON.parse(await Deno.readTextFile(`${dir}/merged.safetensors.parity.json`)),
      report,
    );
  });
});

Deno.test("mergeCheckpoint() merges a GPT-2 checkpoint's Conv1D weights with DoRA and rsLoRA, matching keys without the LM head's prefix", async () => {
  await withTempDir(async (dir) => {
    const adapter = await loadAdapter(`${CK}gpt2/adapter`);
    const { report } = await mergeCheckpoint(`${CK}gpt2`, adapter, { out: dir });
    const want = await golden("gpt2");
    await assertMerged(dir, "model.safetensors", want, 1e-6);
    await sameOutside(
      `${CK}gpt2/model.safetensors`,
      `${dir}/model.safetensors`,
      new Set(want.keys()),
    );
    strictEqual(report.tensors.length, 8);
    ok(report.tensors.every((t) => t.change === "dora" && t.orientation === "in_out"));
    strictEqual(report.tensors[0]!.module, "transformer.h.0.attn.c_attn");
    strictEqual(report.tensors[0]!.scale, 8 / Math.sqrt(4));
    ok(
      /different prefix \("transformer\.h\.0\.attn\.c_attn\.weight" is "h\.0\.attn\.c_attn\.weight"\)/
        .test(report.notes[0]!),
    );
  });
});

Deno.test("mergeCheckpoint() merges a sharded checkpoint shard by shard into the same shards and index", async () => {
  await withTempDir(async (dir) => {
    const adapter = await loadAdapter(`${CK}llama/adapter`);
    const src = `${CK}llama_sharded`;
    const shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    await Deno.mkdir(`${dir}/a`);
    const { files, report } = await mergeCheckpoint(src, adapter, { out: `${dir}/a` });
    deepStrictEqual(
      files,
      ["config.json", ...shards, "model.safetensors.index.json", "model.safetensors.parity.json"]
        .map((f) => `${dir}/a/${f}`),
    );
    const want = await golden("llama");
    for (const s of shards) {
      await assertMerged(`${dir}/a`, s, want, 1e-6);
      await sameOutside(`${src}/${s}`, `${dir}/a/${s}`, new Set(want.keys()));
    }
    deepStrictEqual(
      await Deno.readFile(`${dir}/a/model.safetensors.index.json`),
      await Deno.readFile(`${src}/model.safetensors.index.json`),
    );
    strictEqual(report.tensors.length, want.size);
    // An index path names the output index; a single-file output of a sharded checkpoint is refused.
    await mergeCheckpoint(`${src}/model.safetensors.index.json`, adapter, {
      out: `${dir}/m.index.json`,
    });
    deepStrictEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["a", "config.json", "m.index.json", ...shards, "m.parity.json"].sort(),
    );
    await assertRejects(
      () => mergeCheckpoint(src, adapter, { out: `${dir}/one.safetensors` }),
      TypeError,
      "the checkpoint is sharded (2 files)",
    );
  });
});

Deno.test("mergeCheckpoint() keeps bf16 weights in bf16, rounded once to nearest even", async () => {
  await withTempDir(async (dir) => {
    const adapter = await loadAdapter(`${CK}llama/adapter`);
    const { report } = await mergeCheckpoint(`${CK}llama_bf16/model.safetensors`, adapter, {
      out: `${dir}/m.safetensors`,
    });
    strictEqual(report.storage, "BF16");
    const { tensors } = await readSafetensors(`${dir}/m.safetensors`);
    const exact = await golden("llama_bf16", "merged_f32.");
    const peft = await golden("llama_bf16");
    let equal = 0, total = 0;
    for (const [key, f32] of exact) {
      const got = tensors.get(key)! as Tensor<"BF16">;
      const rounded = castFloat(f32 as Tensor<"F32">, "BF16").data;
      for (let i = 0; i < got.data.length; i++) {
        ok(
          Math.abs(got.data[i]! - rounded[i]!) <= 1,
          `${key}[${i}]: ${got.data[i]} vs ${rounded[i]}`,
        );
        equal += got.data[i] === rounded[i] ? 1 : 0;
      }
      total += got.data.length;
      // PEFT rounds the delta to bf16 and then the sum: up to half a unit of each, and of the
      // larger operand when they cancel.
      const err = relError(toFloat32(got).data, toFloat32(peft.get(key)!).data);
      ok(err <= 2 ** -7, `${key}: relative error ${err} against PEFT's bf16 merge`);
    }
    ok(equal >= 0.99 * total, `${equal} of ${total} equal to the float32 merge rounded once`);
    await sameOutside(
      `${CK}llama_bf16/model.safetensors`,
      `${dir}/m.safetensors`,
      new Set(peft.keys()),
    );
  });
});

/** The llama adapter with one more layer, named `module`. */
async function withExtraLayer(module: string, B?: Float32Array): Promise<Adapter> {
  const a = await loadAdapter(`${CK}llama/adapter`);
  const t = a.layers.get("model.layers.0.self_attn.q_proj")!;
  const layer = B ? { A: t.A, B: { ...t.B, data: B } as Tensor } : t;
  return { ...a, layers: new Map([...a.layers, [module, layer]]) };
}

Deno.test("mergeCheckpoint() copies the base's config.json and tokenizer files, keeping ones the output's folder has; two outputs keep two reports", async () => {
  await withTempDir(async (dir) => {
    const base = `${dir}/base`;
    await Deno.mkdir(base);
    for (const f of ["model.safetensors", "config.json"]) {
      await Deno.copyFile(`${CK}llama/${f}`, `${base}/${f}`);
    }
    await Deno.writeTextFile(`${base}/tokenizer_config.json`, '{"model_max_length": 64}');
    await Deno.writeTextFile(`${base}/notes.txt`, "not a loader's file");
    await Deno.mkdir(`${dir}/out`);
    await Deno.writeTextFile(`${dir}/out/config.json`, '{"mine": true}');
    const adapter = await loadAdapter(`${CK}llama/adapter`);
    const a = await mergeCheckpoint(`${base}/model.safetensors`, adapter, {
      out: `${dir}/out/a.safetensors`,
      sync: false,
    });
    deepStrictEqual(a.files, [
      `${dir}/out/tokenizer_config.json`,
      `${dir}/out/a.safetensors`,
      `${dir}/out/a.safetensors.parity.json`,
    ]);
    await mergeCheckpoint(`${base}/model.safetensors`, adapter, {
      out: `${dir}/out/b.safetensors`,
      sync: false,
    });
    deepStrictEqual([...Deno.readDirSync(`${dir}/out`)].map((e) => e.name).sort(), [
      "a.safetensors",
      "a.safetensors.parity.json",
      "b.safetensors",
      "b.safetensors.parity.json",
      "config.json",
      "tokenizer_config.json",
    ]);
    strictEqual(await Deno.readTextFile(`${dir}/out/config.json`), '{"mine": true}');
    strictEqual(
      await Deno.readTextFile(`${dir}/out/tokenizer_config.json`),
      '{"model_max_length": 64}',
    );
  });
});

Deno.test("mergeCheckpoint() refuses an adapter key that matches no tensor, and writes nothing", async () => {
  await withTempDir(async (dir) => {
    const adapter = await withExtraLayer("model.layers.9.self_attn.q_proj");
    await assertRejects(
      () =>
        mergeCheckpoint(`${CK}llama/model.safetensors`, adapter, { out: `${dir}/m.safetensors` }),
      RangeError,
      `the checkpoint has no tensor "model.layers.9.self_attn.q_proj.weight" (for "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight")`,
    );
    deepStrictEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("mergeCheckpoint() leaves nothing behind when a merge fails midway", async () => {
  await withTempDir(async (dir) => {
    const inf = new Float32Array(16 * 4).fill(Infinity);
    const adapter = await withExtraLayer("model.layers.2.self_attn.o_proj", inf);
    await assertRejects(
      () => mergeCheckpoint(`${CK}llama_sharded`, adapter, { out: dir }),
      RangeError,
      `into layer "model.layers.2.self_attn.o_proj": the merged F32 weight has a non-finite value`,
    );
    deepStrictEqual([...Deno.readDirSync(dir)], []);
    await assertRejects(
      () => mergeCheckpoint(`${CK}llama_sharded`, adapter, { out: `${CK}llama_sharded` }),
      TypeError,
      "is a file of the checkpoint itself",
    );
  });
});

Deno.test("the check finds a changed byte in an unchanged tensor and a wrong merged row", async () => {
  await withTempDir(async (dir) => {
    const adapter = await loadAdapter(`${CK}llama/adapter`);
    const ck = await openCheckpoint(`${CK}llama/model.safetensors`);
    const { merge } = planCheckpoint(ck, adapter, "test");
    await mergeCheckpoint(ck.source, adapter, { out: `${dir}/m.safetensors`, sync: false });
    const good = await checkShard(ck.shards[0]!, `${dir}/m.safetensors`, merge, new Rng(0), 32);
    ok(good.tensors.every((t) => t.pass) && good.differing.length === 0);
    const bytes = await Deno.readFile(`${dir}/m.safetensors`);
    const at = (key: string) => ck.tensors.get(key)!.entry.fileOffset;
    bytes[at("model.norm.weight") + 5]! ^= 1;
    bytes[at("model.layers.1.mlp.up_proj.weight") + 3]! ^= 0x40; // an exponent bit of row 0
    await Deno.writeFile(`${dir}/m.safetensors`, bytes);
    const bad = await checkShard(ck.shards[0]!, `${dir}/m.safetensors`, merge, new Rng(0), 32);
    deepStrictEqual(bad.differing, ["model.norm.weight"]);
    deepStrictEqual(bad.tensors.filter((t) => !t.pass).map((t) => t.key), [
      "model.layers.1.mlp.up_proj.weight",
    ]);
  });
});

Deno.test("mergeCheckpoint() checks large merged tensors for NaN and infinities through onnxruntime", async () => {
  await withTempDir(async (dir) => {
    const rng = new Rng(3);
    const w = rng.fillNormal(new Float32Array(1024 * 1024), 0, 0.02) as Float32Array;
    await writeSafetensors(`${dir}/model.safetensors`, {
      "fc.weight": tensor("F32", [1024, 1024], w),
      "fc.bias": tensor("F32", [1024]),
    });
    const A = rng.fillNormal(new Float32Array(2 * 1024), 0, 0.1) as Float32Array;
    const B = rng.fillNormal(new Float32Array(1024 * 2), 0, 0.1) as Float32Array;
    const adapter = (b: Float32Array): Adapter => ({
      name: "big",
      config: defaultPeftConfig({ r: 2, loraAlpha: 4, targetModules: ["fc"] }),
      layers: new Map([["fc", { A: tensor("F32", [2, 1024], A), B: tensor("F32", [1024, 2], b) }]]),
      biases: new Map(),
      extra: new Map(),
    });
    await Deno.mkdir(`${dir}/out`);
    const { report } = await mergeCheckpoint(`${dir}/model.safetensors`, adapter(B), {
      out: `${dir}/out`,
    });
    ok(report.verdict === "pass" && report.tensors[0]!.maxRel < 1e-6, JSON.stringify(report));
    const broken = B.slice();
    broken[2 * 700 + 1] = Infinity; // row 700: elements 700·1024 … of the merged weight
    await assertRejects(
      () =>
        mergeCheckpoint(`${dir}/model.safetensors`, adapter(broken), {
          out: `${dir}/x.safetensors`,
        }),
      RangeError,
      'into layer "fc": the merged F32 weight has a non-finite value at element 716800',
    );
  });
});

Deno.test("copyRanges() copies byte ranges to the same offsets, growing the file", async () => {
  await withTempDir(async (dir) => {
    const src = crypto.getRandomValues(new Uint8Array(50_000));
    await Deno.writeFile(`${dir}/src`, src);
    await Deno.writeFile(`${dir}/dst`, new Uint8Array(0));
    const ranges = [[0, 100], [4096, 20_000], [49_000, 50_000]] as const;
    await copyRanges(`${dir}/src`, `${dir}/dst`, ranges);
    const got = await Deno.readFile(`${dir}/dst`);
    strictEqual(got.length, 50_000);
    for (const [a, b] of ranges) deepStrictEqual(got.subarray(a, b), src.subarray(a, b));
    strictEqual(got.subarray(100, 4096).every((v) => v === 0), true);
  });
});

Deno.test("mergeCheckpoint() merges the PEFT fixtures as PyTorch does: DoRA rows, trained biases, modules_to_save, Conv1D", async () => {
  const PEFT = new URL("../fixtures/peft/", import.meta.url).pathname;
  await withTempDir(async (dir) => {
    for (const name of ["mlp_lora", "mlp_dora", "legacy", "conv1d_lora"]) {
      const adapter = await loadAdapter(`${PEFT}${name}`);
      const out = `${dir}/${name}.safetensors`;
      const { report } = await mergeCheckpoint(`${PEFT}${name}/base.safetensors`, adapter, { out });
      strictEqual(report.verdict, "pass", name);
      const { tensors: g } = await readSafetensors(`${PEFT}${name}/golden.safetensors`);
      const want = new Map(
        [...g].filter(([k]) => k.startsWith("merged.")).map((
          [k, t],
        ) => [`${k.slice(7)}.weight`, t]),
      );
      await assertMerged(dir, `${name}.safetensors`, want, 1e-6);
      const { tensors } = await readSafetensors(out);
      for (const [module, bias] of adapter.biases) {
        deepStrictEqual(tensors.get(`${module}.bias`)!.data, bias.data, `${name}: ${module}.bias`);
      }
    }
  });
});
