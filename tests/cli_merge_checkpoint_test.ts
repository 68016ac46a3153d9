/**
 * `ffwd merge` of whole safetensors checkpoints, run as a user runs it: a sharded folder merged
 * into a folder, what is printed, `--json`, and the exit codes of a bad `--out` (2) and of an
 * adapter that matches nothing (1, one `error:` line, nothing written); `ffwd export` to
 * safetensors of a checkpoint does the same merge.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { withTempDir } from "./_assert.ts";
import { ffwd } from "./_cli.ts";

const CK = new URL("../fixtures/checkpoints/", import.meta.url).pathname;

Deno.test("ffwd merge merges a sharded checkpoint folder into a folder and prints the check", async () => {
  await withTempDir(async (dir) => {
    const r = await ffwd(
      "merge",
      "--model",
      `${CK}llama_sharded`,
      "--adapter",
      `${CK}llama/adapter`,
      "--out",
      dir,
    );
    strictEqual(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    strictEqual(
      lines[0],
      `wrote ${dir}/model.safetensors.index.json (+ model-00001-of-00002.safetensors, model-00002-of-00002.safetensors, config.json)`,
    );
    ok(
      /^parity: pass, largest relative error \S+ \(tolerance 1e-5, F32 storage\) over 16 merged tensors, 8 rows each against float64 \(seed 0\); 14 other tensors byte-identical$/
        .test(lines[1]!),
      lines[1]!,
    );
    strictEqual(lines[2], `report: ${dir}/model.safetensors.parity.json`);
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "config.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
      "model.safetensors.parity.json",
    ]);
  });
});

Deno.test("ffwd merge --json --seed prints the checkpoint's report with the layers' errors", async () => {
  await withTempDir(async (dir) => {
    const r = await ffwd(
      "merge",
      "--model",
      `${CK}gpt2/model.safetensors`,
      "--adapter",
      `${CK}gpt2/adapter`,
      "--out",
      `${dir}/merged.safetensors`,
      "--seed",
      "7",
      "--json",
    );
    strictEqual(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    deepStrictEqual([report.verdict, report.check.seed, report.tensors.length], ["pass", 7, 8]);
    ok(report.tensors.every((t: { maxRel: number }) => t.maxRel < 1e-5));
  });
});

Deno.test("ffwd merge of a checkpoint exits 2 on a bad --out and 1 when the adapter matches nothing", async () => {
  await withTempDir(async (dir) => {
    const bad = await ffwd(
      "merge",
      "--model",
      `${CK}llama/model.safetensors`,
      "--adapter",
      `${CK}llama/adapter`,
      "--out",
      `${dir}/merged.bin`,
    );
    strictEqual(bad.code, 2, bad.stderr);
    ok(bad.stderr.startsWith("error: --out must end in"), bad.stderr);
    const r = await ffwd(
      "merge",
      "--model",
      `${CK}gpt2/model.safetensors`,
      "--adapter",
      `${CK}llama/adapter`,
      "--out",
      `${dir}/merged.safetensors`,
    );
    strictEqual(r.code, 1, r.stderr);
    strictEqual(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    ok(r.stderr.includes('the checkpoint has no tensor "model.layers.0.self_attn.q_proj.weight"'));
    deepStrictEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("ffwd export to safetensors merges a multi-block checkpoint whole, as ffwd merge does", async () => {
  await withTempDir(async (dir) => {
    const args = ["--adapter", `${CK}llama/adapter`, "--json"];
    const model = `${CK}llama/model.safetensors`;
    const e = await ffwd("export", "--model", model, ...args, "--out", `${dir}/e/m.safetensors`);
    strictEqual(e.code, 0, e.stderr);
    const m = await ffwd("merge", "--model", model, ...args, "--out", `${dir}/m/m.safetensors`);
    strictEqual(m.code, 0, m.stderr);
    const strip = (s: string) => ({ ...JSON.parse(s), output: undefined });
    deepStrictEqual(strip(e.stdout), strip(m.stdout));
    deepStrictEqual(
      await Deno.readFile(`${dir}/e/m.safetensors`),
      await Deno.readFile(`${dir}/m/m.safetensors`),
    );
    deepStrictEqual([...Deno.readDirSync(`${dir}/e`)].map((f) => f.name).sort(), [
      "config.json",
      "m.safetensors",
      "m.safetensors.parity.json",
    ]);
  });
});
