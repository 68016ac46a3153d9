/**
 * `ffwd inspect` run as a subprocess, the way a user runs it: JSON output, the table, and the
 * error and exit-code behaviour.
 *
 * The test task may only run `deno` (`--allow-run=deno`). Under `npx deno`, that name resolves
 * through `node_modules/.bin` to another path than `Deno.execPath()`, which the permission then
 * does not cover; so the binary's own path is used only when it is allowed, else `deno` from PATH.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { tensor } from "../src/tensor.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";

const ROOT = new URL("../", import.meta.url);
const MAIN = new URL("cli/main.ts", ROOT).pathname;

function denoBinary(): string {
  const exec = Deno.execPath();
  const granted = (command: string) =>
    Deno.permissions.querySync({ name: "run", command }).state === "granted";
  if (granted(exec)) return exec;
  if (granted("deno")) return "deno";
  throw new Error(
    `Cannot run the CLI: --allow-run covers neither Deno.execPath() (${exec}) nor a \`deno\` ` +
      "on PATH; run the tests with `deno task test` (or `npx deno task test`) with deno on PATH",
  );
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The permissions of the `ffwd` task in deno.json, so the test runs the CLI as users do. */
function taskFlags(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  const task: string = config.tasks.ffwd;
  return task.split(/\s+/).filter((word) => word.startsWith("--allow-"));
}

async function ffwd(...args: string[]): Promise<Run> {
  const out = await new Deno.Command(denoBinary(), {
    args: ["run", ...taskFlags(), MAIN, ...args],
    cwd: ROOT.pathname,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

async function withModel(run: (path: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ffwd_cli_" });
  try {
    const path = `${dir}/model.safetensors`;
    await writeSafetensors(path, {
      "fc1.weight": tensor("F32", [4, 3]),
      "fc1.bias": tensor("F32", [4]),
      "norm.num_batches_tracked": tensor("I64", []),
      "head.weight": tensor("BF16", [2, 4]),
    }, { metadata: { format: "pt", source: "test" } });
    await run(path, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ffwd inspect --json prints format, tensors, metadata and parameters", async () => {
  await withModel(async (path) => {
    const { code, stdout, stderr } = await ffwd("inspect", path, "--json");
    strictEqual(stderr, "");
    strictEqual(code, 0);
    deepStrictEqual(JSON.parse(stdout), {
      format: "safetensors",
      tensors: [
        { name: "norm.num_batches_tracked", dtype: "I64", shape: [], bytes: 8 },
        { name: "fc1.bias", dtype: "F32", shape: [4], bytes: 16 },
        { name: "fc1.weight", dtype: "F32", shape: [4, 3], bytes: 48 },
        { name: "head.weight", dtype: "BF16", shape: [2, 4], bytes: 16 },
      ],
      metadata: { format: "pt", source: "test" },
      parameters: 1 + 4 + 12 + 8,
    });
  });
});

Deno.test("ffwd inspect prints a table of tensors, the parameter count and the metadata", async () => {
  await withModel(async (path) => {
    const { code, stdout } = await ffwd("inspect", path);
    strictEqual(code, 0);
    const lines = stdout.split("\n");
    ok(lines[0]!.startsWith(`${path}: safetensors, 4 tensors, `), String(lines[0]));
    deepStrictEqual(lines.slice(2, 7), [
      "name                      dtype  shape   bytes",
      "norm.num_batches_tracked  I64    []          8",
      "fc1.bias                  F32    [4]        16",
      "fc1.weight                F32    [4, 3]     48",
      "head.weight               BF16   [2, 4]     16",
    ]);
    ok(stdout.includes("\nparameters: 25\n"), stdout);
    ok(stdout.endsWith("metadata:\n  format  pt\n  source  test\n"), stdout);
  });
});

Deno.test("ffwd inspect fails with one error line and exit code 1", async () => {
  await withModel(async (_, dir) => {
    const missing = await ffwd("inspect", `${dir}/missing.safetensors`);
    strictEqual(missing.code, 1);
    strictEqual(missing.stdout, "");
    strictEqual(missing.stderr, `error: Cannot read "${dir}/missing.safetensors": no such file\n`);

    const lfs = `${dir}/lfs.safetensors`;
    await Deno.writeTextFile(
      lfs,
      "version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab".repeat(32) +
        "\nsize 1234567\n",
    );
    const pointer = await ffwd("inspect", lfs);
    strictEqual(pointer.code, 1);
    strictEqual(
      pointer.stderr,
      `error: Cannot read "${lfs}": this is a Git LFS pointer, not tensor data: ` +
        "fetch the real file (git lfs pull); the real file is 1234567 bytes\n",
    );

    const cut = `${dir}/cut.safetensors`;
    const whole = await Deno.readFile(`${dir}/model.safetensors`);
    await Deno.writeFile(cut, whole.subarray(0, whole.length - 10));
    const truncated = await ffwd("inspect", cut, "--json");
    strictEqual(truncated.code, 1);
    strictEqual(truncated.stdout, "");
    ok(
      truncated.stderr.startsWith(`error: Cannot read "${cut}": file is truncated`),
      truncated.stderr,
    );
    strictEqual(truncated.stderr.split("\n").length, 2); // one line and its newline
  });
});

Deno.test("ffwd --debug shows the stack of an error", async () => {
  await withModel(async (_, dir) => {
    const bad = `${dir}/bad.safetensors`;
    await Deno.writeTextFile(bad, '{"not": "safetensors"}');
    const { code, stderr } = await ffwd("--debug", "inspect", bad);
    strictEqual(code, 1);
    ok(stderr.startsWith(`SyntaxError: Cannot read "${bad}": not a safetensors file`), stderr);
    ok(/\n\s+at .*_safetensors_header\.ts/.test(stderr), stderr);
  });
});

Deno.test("ffwd usage errors exit with code 2 and an error line", async () => {
  const noFile = await ffwd("inspect");
  strictEqual(noFile.code, 2);
  strictEqual(noFile.stderr, "error: missing required argument 'file'\n");
  const unknown = await ffwd("inspect", "x.safetensors", "--tabel");
  strictEqual(unknown.code, 2);
  ok(unknown.stderr.startsWith("error: unknown option '--tabel'"), unknown.stderr);
  const command = await ffwd("inspekt", "x");
  strictEqual(command.code, 2);
  ok(command.stderr.startsWith("error: unknown command 'inspekt'"), command.stderr);
});

Deno.test("ffwd --help and inspect --help exit with 0", async () => {
  const help = await ffwd("--help");
  strictEqual(help.code, 0);
  ok(help.stdout.includes("inspect [options] <file>"), help.stdout);
  const sub = await ffwd("inspect", "--help");
  strictEqual(sub.code, 0);
  ok(sub.stdout.includes("--json"), sub.stdout);
});
