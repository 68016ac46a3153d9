/**
 * `ffwd merge` and `ffwd export` run as subprocesses, the way a user runs them: files written,
 * the verdict and report path printed, `--json`, and the exit codes of usage errors (2) and
 * failures (1, one `error: ...` line). See `cli_inspect_test.ts` for how the binary is chosen.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { withTempDir } from "./_assert.ts";
import { ffwd } from "./_cli.ts";

const ROOT = new URL("../", import.meta.url);
const PEFT = new URL("fixtures/peft/", ROOT).pathname;
const CK = new URL("fixtures/checkpoints/", ROOT).pathname;
const MNIST = new URL("fixtures/mnist/base.onnx", ROOT).pathname;

Deno.test("ffwd merge writes the merged model and prints the verdict and where the report is", async () => {
  await withTempDir(async (dir) => {
    const base = `${PEFT}mlp_lora/base.safetensors`;
    const r = await ffwd(
      "merge",
      "--model",
      base,
      "--adapter",
      `${PEFT}mlp_lora`,
      "--out",
      `${dir}/m.safetensors`,
    );
    strictEqual(r.code, 0, r.stderr);
    ok(r.stdout.includes(`wrote ${dir}/m.safetensors`), r.stdout);
    ok(
      /^parity: pass, largest relative error \S+ \(tolerance 1e-5, F32 storage\)/m.test(r.stdout),
      r.stdout,
    );
    ok(r.stdout.includes(`report: ${dir}/m.safetensors.parity.json`), r.stdout);
    strictEqual(
      JSON.parse(await Deno.readTextFile(`${dir}/m.safetensors.parity.json`)).verdict,
      "pass",
    );
  });
});

Deno.test("ffwd merge --json combines adapters by SVD and prints the report with each layer's error", async () => {
  await withTempDir(async (dir) => {
    const a = `${PEFT}legacy`;
    const r = await ffwd(
      "merge",
      "--model",
      `${a}/base.safetensors`,
      "--adapter",
      a,
      "--adapter",
      a,
      "--weights",
      "0.7,0.3",
      "--combine",
      "svd",
      "--rank",
      "1",
      "--out",
      `${dir}/m.onnx`,
      "--json",
    );
    strictEqual(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    strictEqual(report.verdict, "pass");
    deepStrictEqual(report.combine.weights, [0.7, 0.3]);
    deepStrictEqual(Object.keys(report.combine.errors).sort(), ["fc1", "fc2"]);
    ok(report.combine.errors.fc1 > 0 && report.combine.errors.fc1 < 1);
  });
});

Deno.test("ffwd export --mode adapter-inputs writes an ONNX file with A and B as inputs", async () => {
  await withTempDir(async (dir) => {
    const a = `${PEFT}mlp_dora`;
    const r = await ffwd(
      "export",
      "--model",
      `${a}/base.safetensors`,
      "--adapter",
      a,
      "--format",
      "onnx",
      "--mode",
      "adapter-inputs",
      "--out",
      `${dir}/a.onnx`,
    );
    strictEqual(r.code, 0, r.stderr);
    ok(/parity: pass/.test(r.stdout), r.stdout);
    const bytes = await Deno.readFile(`${dir}/a.onnx`);
    ok(new TextDecoder().decode(bytes).includes("base_model.model.fc1.lora_B.weight"));
  });
});

Deno.test("ffwd merge and export exit 2 on usage errors and 1 with one error line on failures", async () => {
  await withTempDir(async (dir) => {
    const base = `${PEFT}mlp_lora/base.safetensors`;
    const usage = [
      ["merge", "--model", base, "--out", `${dir}/m.onnx`],
      ["merge", "--model", base, "--adapter", `${PEFT}mlp_lora`, "--out", `${dir}/m.bin`],
      [
        "merge",
        "--model",
        base,
        "--adapter",
        `${PEFT}legacy`,
        "--combine",
        "svd",
        "--out",
        `${dir}/m.onnx`,
      ],
      [
        "export",
        "--model",
        base,
        "--adapter",
        `${PEFT}mlp_lora`,
        "--format",
        "tflite",
        "--out",
        `${dir}/m`,
      ],
      // --format contradicting the file's extension, and no way to tell the format
      [
        "export",
        "--model",
        base,
        "--adapter",
        `${PEFT}mlp_lora`,
        "--format",
        "onnx",
        "--out",
        `${dir}/m.safetensors`,
      ],
      ["export", "--model", base, "--adapter", `${PEFT}mlp_lora`, "--out", `${dir}/m.bin`],
    ];
    for (const args of usage) {
      const r = await ffwd(...args);
      strictEqual(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      ok(r.stderr.startsWith("error: "), r.stderr);
    }
    const failures = [
      ["merge", "--model", base, "--adapter", `${dir}/missing`, "--out", `${dir}/m.onnx`],
      ["merge", "--model", base, "--adapter", `${PEFT}conv1d_lora`, "--out", `${dir}/m.onnx`],
      [
        "export",
        "--model",
        base,
        "--adapter",
        `${PEFT}mlp_lora`,
        "--format",
        "safetensors",
        "--out",
        base,
      ],
    ];
    for (const args of failures) {
      const r = await ffwd(...args);
      strictEqual(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
      strictEqual(r.stderr.trim().split("\n").length, 1, r.stderr);
      ok(r.stderr.startsWith("error: "), r.stderr);
    }
    // Adapters combined for another model: the error names the adapter, not "legacy+legacy".
    const combined = [
      [MNIST, `${dir}/m.onnx`, 'Cannot load adapter "legacy": 2 of its 2'],
      [`${CK}llama`, `${dir}/m.safetensors`, `Cannot merge adapter "legacy" into "${CK}llama"`],
    ];
    for (const [model, out, says] of combined) {
      const adapter = `${PEFT}legacy`;
      const r = await ffwd(
        "merge",
        "--model",
        model!,
        "--adapter",
        adapter,
        "--adapter",
        adapter,
        "--out",
        out!,
      );
      strictEqual(r.code, 1, r.stderr);
      ok(r.stderr.startsWith(`error: ${says}`), r.stderr);
      ok(!r.stderr.includes("+"), r.stderr);
    }
    deepStrictEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("ffwd export takes the format from the output's extension and makes its folder", async () => {
  await withTempDir(async (dir) => {
    const base = `${PEFT}mlp_lora/base.safetensors`;
    const out = `${dir}/new/folder/merged.onnx`;
    const r = await ffwd("export", "--model", base, "--adapter", `${PEFT}mlp_lora`, "--out", out);
    strictEqual(r.code, 0, r.stderr);
    ok(Deno.statSync(out).isFile);
    ok(r.stdout.includes("parity: pass"), r.stdout);
    // A merge that fails (an adapter for another model) leaves no folder it made behind.
    const failed = await ffwd(
      "merge",
      "--model",
      new URL("fixtures/mnist/base.onnx", ROOT).pathname,
      "--adapter",
      `${PEFT}mlp_lora`,
      "--out",
      `${dir}/other/m.onnx`,
    );
    strictEqual(failed.code, 1, failed.stderr);
    ok(!(await Deno.stat(`${dir}/other`).then(() => true, () => false)), "a folder was left");
  });
});
