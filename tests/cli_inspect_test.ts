/**
 * `ffwd inspect` run as a subprocess, the way a user runs it: JSON output, the table, and the
 * error and exit-code behaviour, for safetensors, ONNX, TF.js and adapter folders. Tests of files
 * under ../shared/realdata are registered by `realdataTest` (see tests/_realdata.ts).
 *
 * The test task may only run `deno` (`--allow-run=deno`). Under `npx deno`, that name resolves
 * through `node_modules/.bin` to another path than `Deno.execPath()`, which the permission then
 * does not cover; so the binary's own path is used only when it is allowed, else `deno` from PATH.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { tensor } from "../src/tensor.ts";
import { REALDATA, realdataTest as sharedRealdataTest } from "./_realdata.ts";
import { writeSafetensors } from "../src/io/safetensors.ts";
import { withTempDir } from "./_assert.ts";
import { ffwd } from "./_cli.ts";

async function withModel(run: (path: string, dir: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const path = `${dir}/model.safetensors`;
    await writeSafetensors(path, {
      "fc1.weight": tensor("F32", [4, 3]),
      "fc1.bias": tensor("F32", [4]),
      "norm.num_batches_tracked": tensor("I64", []),
      "head.weight": tensor("BF16", [2, 4]),
    }, { metadata: { format: "pt", source: "test" } });
    await run(path, dir);
  });
}

/** `ffwd inspect <path> [flags]`, checked to succeed with nothing on stderr; its stdout. */
async function inspectOk(path: string, ...flags: string[]): Promise<string> {
  const { code, stdout, stderr } = await ffwd("inspect", path, ...flags);
  strictEqual(stderr, "");
  strictEqual(code, 0);
  ok(stdout.endsWith("\n"), stdout);
  return stdout;
}

const inspectJson = async (path: string): Promise<Record<string, unknown>> =>
  JSON.parse(await inspectOk(path, "--json"));
const inspectTable = async (path: string): Promise<string[]> => (await inspectOk(path)).split("\n");

/** Checks that each of `expected` is one of the printed lines. */
function hasLines(lines: readonly string[], ...expected: string[]): void {
  for (const line of expected) ok(lines.includes(line), `${line}\n--- in ---\n${lines.join("\n")}`);
}

/** A failed run: exit code 1, nothing on stdout, one `error: ` line on stderr; returns it. */
async function inspectError(...args: string[]): Promise<string> {
  const { code, stdout, stderr } = await ffwd("inspect", ...args);
  strictEqual(code, 1, stderr);
  strictEqual(stdout, "");
  ok(stderr.startsWith("error: ") && stderr.indexOf("\n") === stderr.length - 1, stderr);
  return stderr.trimEnd();
}

/** A test of the file `path` under ../shared/realdata (see tests/_realdata.ts). */
function realdataTest(name: string, path: string, fn: (path: string) => Promise<void>): void {
  sharedRealdataTest(name, () => fn(REALDATA + path));
}

Deno.test("ffwd inspect --json prints format, tensors, metadata, parameters and no blocks", async () => {
  await withModel(async (path) => {
    deepStrictEqual(await inspectJson(path), {
      format: "safetensors",
      tensors: [
        { name: "norm.num_batches_tracked", dtype: "I64", shape: [], bytes: 8 },
        { name: "fc1.bias", dtype: "F32", shape: [4], bytes: 16 },
        { name: "fc1.weight", dtype: "F32", shape: [4, 3], bytes: 48 },
        { name: "head.weight", dtype: "BF16", shape: [2, 4], bytes: 16 },
      ],
      metadata: { format: "pt", source: "test" },
      parameters: 1 + 4 + 12 + 8,
      blocks: [],
      config: null,
    });
  });
});

Deno.test("ffwd inspect prints a table of tensors, the parameter count, metadata and blocks", async () => {
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
    ok(stdout.includes("\nmetadata:\n  format  pt\n  source  test\n"), stdout);
    ok(
      stdout.endsWith(
        "\nblocks: none detected (no config.json beside the file); " +
          "no feedforward layout matches the tensor names, so using this file needs a block spec\n",
      ),
      stdout,
    );
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

Deno.test("ffwd inspect lists the feedforward blocks of a safetensors file with its config.json", async () => {
  const path = "fixtures/hf/llama_3layers/model.safetensors";
  const json = await inspectJson(path);
  type Block = { name: string; layout: string; activation: string; activationFrom: string };
  const blocks = json.blocks as (Block & { layers: string[] })[];
  deepStrictEqual(blocks.map((b) => b.name), [0, 1, 2].map((i) => `model.layers.${i}.mlp`));
  for (const b of blocks) {
    ok(b.layout === "swiglu", JSON.stringify(b));
    deepStrictEqual(b.layers, ["gate_proj", "up_proj", "down_proj"].map((m) => `${b.name}.${m}`));
  }
  strictEqual(blocks[0]!.activation, "silu");
  strictEqual(blocks[0]!.activationFrom, "config.hidden_act");
  // every layer a block names is a matrix of the file
  const shapes = new Map(
    (json.tensors as { name: string; shape: number[] }[]).map((t) => [t.name, t.shape]),
  );
  for (const layer of blocks.flatMap((b) => b.layers)) {
    strictEqual(shapes.get(`${layer}.weight`)?.length, 2, layer);
  }
  strictEqual(json.config, await Deno.realPath("fixtures/hf/llama_3layers/config.json"));
  strictEqual(json.modelType, "llama");

  const lines = await inspectTable(path);
  const at = lines.indexOf(
    "blocks: 3 feedforward blocks (config.json beside the file, model_type llama)",
  );
  ok(at > 0, lines.join("\n"));
  deepStrictEqual(lines.slice(at + 1, at + 3), [
    "  name                layout  activation                layers",
    "  model.layers.0.mlp  swiglu  silu (config.hidden_act)  gate_proj, up_proj, down_proj",
  ]);
});

Deno.test("ffwd inspect of a safetensors file still shows its tensors when detection fails", async () => {
  await withModel(async (path, dir) => {
    await Deno.writeTextFile(`${dir}/config.json`, "{ not json");
    const json = await inspectJson(path);
    strictEqual((json.tensors as unknown[]).length, 4);
    deepStrictEqual(json.blocks, []);
    ok(
      String(json.blocksError).startsWith(`Cannot read config "${dir}/config.json"`),
      String(json.blocksError),
    );
    const lines = await inspectTable(path);
    ok(lines.at(-2)!.startsWith(`blocks: not detected: Cannot read config "`), lines.join("\n"));
  });
});

Deno.test("ffwd inspect of an ONNX file shows producer, ops, initializers and linear layers", async () => {
  const path = "fixtures/mnist/base.onnx";
  const json = await inspectJson(path);
  const { initializers, linearLayers, ...rest } = json;
  deepStrictEqual(rest, {
    format: "onnx",
    path: await Deno.realPath(path),
    irVersion: 8,
    producer: { name: "ffwd", version: "0.1.0" },
    opsets: [{ domain: "", version: 17 }],
    ops: { Gemm: 3, Relu: 2, Identity: 1 },
    inputs: [{ name: "x", dtype: "F32", shape: ["batch", 784] }],
    outputs: ["y"],
    frozen: [],
    notes: [],
  });
  const inits = initializers as { name: string; dtype: string; shape: number[]; bytes: number }[];
  deepStrictEqual(
    inits.map((i) => i.name),
    ["fc1", "fc2", "fc3"].flatMap((l) => [`${l}.weight`, `${l}.bias`]),
  );
  for (const i of inits) strictEqual(i.bytes, 4 * i.shape.reduce((a, b) => a * b, 1), i.name);
  deepStrictEqual(
    linearLayers,
    [[784, 256], [256, 128], [128, 10]].map(([inF, outF], i) => ({
      name: `fc${i + 1}`,
      inFeatures: inF,
      outFeatures: outF,
      orientation: "out_in",
      weightKey: `fc${i + 1}.weight`,
      biasKey: `fc${i + 1}.bias`,
      dtype: "F32",
      node: `Gemm_${4 * i}`,
      role: i < 2 ? "ffn" : "head", // fc1, fc2 by name; fc3 makes the output
    })),
  );

  const lines = await inspectTable(path);
  strictEqual(lines[0], `${path}: ONNX, IR version 8, producer ffwd 0.1.0, opset ai.onnx 17`);
  hasLines(
    lines,
    "ops: 6 nodes: Gemm 3, Relu 2, Identity 1",
    'outputs: 1 ("y")',
    "initializers: 6 tensors, 940,584 bytes",
    "  fc1.weight  F32    [256, 784]  802,816",
  );
  const at = lines.indexOf("linear layers: 3 (ffn 2, head 1)");
  ok(at > 0, lines.join("\n"));
  deepStrictEqual(lines.slice(at + 1, at + 9), [
    "  ffn:",
    "    name   in  out  orientation  dtype  weight      bias      node",
    "    fc1   784  256  out_in       F32    fc1.weight  fc1.bias  Gemm_0",
    "    fc2   256  128  out_in       F32    fc2.weight  fc2.bias  Gemm_4",
    "  head:",
    "    name   in  out  orientation  dtype  weight      bias      node",
    "    fc3   128   10  out_in       F32    fc3.weight  fc3.bias  Gemm_8",
    "",
  ]);
  deepStrictEqual(lines.slice(-3), [
    "frozen context (no gradient crosses it): none",
    "notes: none",
    "",
  ]);
});

realdataTest(
  "ffwd inspect of an ONNX file names where external initializers live",
  "tracel-ai__burn/crates/onnx-ir/tests/fixtures/external_data.onnx",
  async (path) => {
    const json = await inspectJson(path);
    const inits = json.initializers as { name: string; external?: unknown }[];
    deepStrictEqual(inits.map((i) => [i.name, i.external]), [
      ["weight", { location: "external_data.bin", offset: 320, length: 64 }],
      ["bias", { location: "external_data.bin", offset: 384, length: 16 }],
    ]);
    strictEqual((json.linearLayers as { orientation: string }[])[0]!.orientation, "in_out");
    const lines = await inspectTable(path);
    hasLines(lines, "  weight  F32    [4, 4]     64  external_data.bin @ 320 +64");
  },
);

Deno.test("ffwd inspect of a TF.js LayersModel shows its layers, inputs, outputs and parameters", async () => {
  const json = await inspectJson("fixtures/tfjs/dense/model.json");
  const dense = (name: string, inF: number, outF: number, activation: string, bias: boolean) => ({
    name,
    class: "Dense",
    units: outF,
    activation,
    inFeatures: inF,
    outFeatures: outF,
    orientation: "in_out",
    weightKey: `${name}/kernel`,
    ...(bias ? { biasKey: `${name}/bias` } : {}),
    parameters: inF * outF + (bias ? outF : 0),
  });
  deepStrictEqual(json, {
    format: "tfjs",
    path: "fixtures/tfjs/dense/model.json",
    layers: [
      dense("fc1", 8, 16, "relu", true),
      { name: "drop", class: "Dropout" },
      dense("fc2", 16, 12, "tanh", true),
      dense("fc3", 12, 4, "linear", false),
      { name: "out", class: "Activation", activation: "sigmoid" },
    ],
    inputs: [{ name: "fc1_input", dtype: "F32", shape: ["batch", 8] }],
    outputs: [{ name: "y", dtype: "F32", shape: ["batch", 4] }],
    parameters: 8 * 16 + 16 + 16 * 12 + 12 + 12 * 4,
  });
  // the folder is the same model
  deepStrictEqual(await inspectJson("fixtures/tfjs/dense/"), json);

  const lines = await inspectTable("fixtures/tfjs/dense");
  strictEqual(lines[0], "fixtures/tfjs/dense/model.json: TF.js LayersModel, 5 layers, 3 Dense");
  deepStrictEqual(lines.slice(2, 8), [
    "name  class       units  activation  kernel    bias  parameters",
    "fc1   Dense          16  relu        [8, 16]   yes          144",
    "drop  Dropout",
    "fc2   Dense          12  tanh        [16, 12]  yes          204",
    "fc3   Dense           4  linear      [12, 4]   no            48",
    "out   Activation         sigmoid",
  ]);
  deepStrictEqual(lines.slice(-4), [
    "inputs: fc1_input F32 [batch, 8]",
    "outputs: y F32 [batch, 4]",
    "parameters: 396",
    "",
  ]);
});

Deno.test("ffwd inspect of a PEFT adapter folder shows its config, layers and tensors", async () => {
  const json = await inspectJson("fixtures/peft/mlp_lora");
  const { tensors, files, ...rest } = json;
  deepStrictEqual(rest, {
    format: "adapter",
    kind: "peft",
    path: "fixtures/peft/mlp_lora",
    config: {
      rank: 4,
      alpha: 8,
      scale: 2,
      targetModules: ["fc2", "fc1"],
      layersToTransform: null,
      dora: false,
      rslora: false,
      dropout: 0,
      bias: "none",
      fanInFanOut: false,
      rankPattern: { fc2: 2 },
      alphaPattern: { fc2: 4 },
      modulesToSave: ["fc3"],
      baseModel: "ffwd/mlp-6-8-8-3",
      taskType: null,
    },
    layers: [
      { module: "fc1", rank: 4, alpha: 8, scale: 2 },
      { module: "fc2", rank: 2, alpha: 4, scale: 2 },
    ],
    parameters: 115,
  });
  ok((files as string[]).includes("adapter_model.safetensors"), String(files));
  const shapes = (tensors as { shape: number[] }[]).map((t) => t.shape);
  strictEqual(shapes.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0), 115);

  const lines = await inspectTable("fixtures/peft/mlp_lora");
  strictEqual(lines[0], "fixtures/peft/mlp_lora: PEFT LoRA adapter, 2 layers, 6 tensors");
  hasLines(
    lines,
    "  scale                2 (alpha / rank)",
    "  rank pattern         fc2: 2",
    "  fc2        2      4      2",
    "  base_model.model.fc1.lora_A.weight  F32    [4, 6]",
    "parameters: 115",
  );
});

realdataTest(
  "ffwd inspect of an MLX-LM adapter folder gives its config in PEFT's terms",
  "ml-explore__mlx-examples/llms/adapters",
  async (path) => {
    const json = await inspectJson(path);
    strictEqual(json.format, "adapter");
    strictEqual(json.kind, "mlx");
    const config = json.config as Record<string, unknown>;
    deepStrictEqual(
      [config.rank, config.alpha, config.scale, config.layersToTransform],
      [8, 80, 10, [36, 37, 38, 39]],
    );
    const layers = json.layers as { module: string; rank: number; scale: number }[];
    strictEqual(layers.length, 8);
    ok(layers.every((l) => l.rank === 8 && l.scale === 10), JSON.stringify(layers));
    strictEqual((json.tensors as unknown[]).length, 16);
    strictEqual(json.parameters, 16 * 8 * 2304);
    const lines = await inspectTable(path);
    strictEqual(lines[0], `${path}: MLX-LM LoRA adapter, 8 layers, 16 tensors`);
  },
);

Deno.test("ffwd inspect rejects TF.js graph models, unsupported layers and unknown folders", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/graph`);
    await Deno.writeTextFile(
      `${dir}/graph/model.json`,
      JSON.stringify({ format: "graph-model", modelTopology: { node: [] }, weightsManifest: [] }),
    );
    strictEqual(
      await inspectError(`${dir}/graph`),
      `error: Cannot load TF.js model "${dir}/graph/model.json": it is a TF.js graph model ` +
        `(format "graph-model"), not a LayersModel; only LayersModels load`,
    );

    const layers = [{
      class_name: "UpSampling2D",
      config: { name: "c1", size: [2, 2], batch_input_shape: [null, 4, 4, 1] },
    }];
    const topology = { class_name: "Sequential", config: { layers } };
    await Deno.writeTextFile(`${dir}/conv.json`, JSON.stringify({ modelTopology: topology }));
    const unsupported = await inspectError(`${dir}/conv.json`, "--json");
    ok(unsupported.includes(`layer "c1" of class UpSampling2D is not supported`), unsupported);

    await Deno.mkdir(`${dir}/stuff`);
    await Deno.writeTextFile(`${dir}/stuff/notes.txt`, "hello");
    await Deno.writeTextFile(`${dir}/stuff/config.json`, "{}");
    strictEqual(
      await inspectError(`${dir}/stuff`),
      `error: Cannot inspect "${dir}/stuff": the folder holds no TF.js model.json and no LoRA ` +
        "adapter (adapter_config.json with adapter_model.safetensors or adapters.safetensors); " +
        "it holds config.json, notes.txt",
    );

    await Deno.mkdir(`${dir}/half`);
    await Deno.writeTextFile(`${dir}/half/adapter_config.json`, "{}");
    const half = await inspectError(`${dir}/half`);
    ok(
      half.startsWith(`error: Cannot load adapter "${dir}/half": no adapter_model.safetensors`),
      half,
    );
  });
});
