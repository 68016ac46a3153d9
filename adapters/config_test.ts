import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import {
  defaultPeftConfig,
  fromTargetOptions,
  layerHyper,
  parsePeftConfig,
  peftConfigToJson,
  readPeftConfig,
  toTargetOptions,
} from "./config.ts";
import { planAdapters } from "./targets.ts";
import type { LinearLayer } from "../src/models/model.ts";

const FIXTURES = new URL("../fixtures/peft/", import.meta.url).pathname;

Deno.test("parsePeftConfig() fills in PEFT's defaults for missing keys", () => {
  const c = parsePeftConfig({ peft_type: "LORA" });
  strictEqual(c.r, 8);
  strictEqual(c.loraAlpha, 8);
  strictEqual(c.targetModules, null);
  strictEqual(c.loraDropout, 0);
  strictEqual(c.bias, "none");
  strictEqual(c.useRslora, false);
  strictEqual(c.useDora, false);
  strictEqual(c.fanInFanOut, false);
  deepStrictEqual(c.rankPattern, {});
  deepStrictEqual(c.alphaPattern, {});
  strictEqual(c.initLoraWeights, true);
  strictEqual(c.inferenceMode, false);
  deepStrictEqual(c.extra, {});
});

Deno.test("parsePeftConfig() reads a PEFT 0.2 config and keeps its unknown keys", async () => {
  const c = await readPeftConfig(`${FIXTURES}legacy/adapter_config.json`);
  strictEqual(c.r, 2);
  strictEqual(c.loraAlpha, 4);
  deepStrictEqual(c.targetModules, ["fc1", "fc2"]);
  strictEqual(c.loraDropout, 0.05);
  strictEqual(c.useDora, false);
  deepStrictEqual(c.rankPattern, {});
  strictEqual(c.taskType, "SEQ_CLS");
  deepStrictEqual(c.extra, { enable_lora: null, merge_weights: false });
});

Deno.test("parsePeftConfig() drops PEFT 0.19's default keys but keeps non-default ones", async () => {
  const c = await readPeftConfig(`${FIXTURES}mlp_lora/adapter_config.json`);
  deepStrictEqual(c.extra, {
    auto_mapping: { base_model_class: "MLP", parent_library: "__main__" },
    peft_version: "0.19.1",
  });
  deepStrictEqual(c.rankPattern, { fc2: 2 });
  deepStrictEqual(c.modulesToSave, ["fc3"]);
});

Deno.test("parsePeftConfig() accepts target_modules as a list, a regex string or null", () => {
  deepStrictEqual(parsePeftConfig({ target_modules: ["q", "v"] }).targetModules, ["q", "v"]);
  strictEqual(parsePeftConfig({ target_modules: ".*(q|v)$" }).targetModules, ".*(q|v)$");
  strictEqual(parsePeftConfig({ target_modules: null }).targetModules, null);
  deepStrictEqual(parsePeftConfig({ layers_to_transform: 3 }).layersToTransform, [3]);
  deepStrictEqual(parsePeftConfig({ rank_pattern: null }).rankPattern, {});
  strictEqual(parsePeftConfig({ peft_type: "lora" }).peftType, "LORA");
});

Deno.test("no targets (ffwd train --full, --targets none) are written as PEFT's dummy-target-modules and read back as none", () => {
  const config = defaultPeftConfig({ targetModules: [], modulesToSave: ["fc1", "fc2"] });
  const json = peftConfigToJson(config);
  strictEqual(json.target_modules, "dummy-target-modules");
  deepStrictEqual(json.modules_to_save, ["fc1", "fc2"]);
  deepStrictEqual(parsePeftConfig(json).targetModules, []);
});

Deno.test("parsePeftConfig() errors name the file and the field", () => {
  throws(() => parsePeftConfig({ r: 0 }, "a/adapter_config.json"), {
    name: "RangeError",
    message: `Cannot read "a/adapter_config.json": field "r" must be an integer >= 1, got 0`,
  });
  throws(() => parsePeftConfig({ r: "8" }, "cfg.json"), {
    name: "TypeError",
    message: `Cannot read "cfg.json": field "r" must be an integer >= 1, got "8"`,
  });
  throws(() => parsePeftConfig({ target_modules: 3 }, "cfg.json"), {
    name: "TypeError",
    message:
      `Cannot read "cfg.json": field "target_modules" must be a list of module names, a regular expression or null, got 3`,
  });
  throws(() => parsePeftConfig({ rank_pattern: { fc1: 0 } }, "cfg.json"), {
    message:
      `Cannot read "cfg.json": field "rank_pattern.fc1" must be an object of integers >= 1, got 0`,
  });
  throws(
    () => parsePeftConfig({ bias: "some" }, "cfg.json"),
    /field "bias" must be "none", "all" or "lora_only", got "some"/,
  );
  throws(() => parsePeftConfig({ peft_type: "IA3" }, "cfg.json"), {
    name: "RangeError",
    message: `Cannot read "cfg.json": field "peft_type" is "IA3", ffwd reads "LORA" adapters`,
  });
  throws(() => parsePeftConfig({ rank_pattern: { "fc(": 2 } }, "cfg.json"), {
    name: "SyntaxError",
  });
  throws(
    () => parsePeftConfig([1], "cfg.json"),
    /Cannot read "cfg.json": expected a JSON object, got \[1\]/,
  );
});

Deno.test("readPeftConfig() names the file when it is missing or not JSON", async () => {
  const dir = await Deno.makeTempDir();
  await rejects(readPeftConfig(`${dir}/adapter_config.json`), (e: Error) => {
    ok(e instanceof Deno.errors.NotFound);
    strictEqual(e.message, `Cannot read "${dir}/adapter_config.json": no such file`);
    return true;
  });
  await Deno.writeTextFile(`${dir}/adapter_config.json`, `{"r": 8,`);
  await rejects(readPeftConfig(`${dir}/adapter_config.json`), (e: Error) => {
    ok(e instanceof SyntaxError);
    ok(e.message.startsWith(`Cannot read "${dir}/adapter_config.json": invalid JSON`), e.message);
    return true;
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("peftConfigToJson() writes every field sorted and parses back to the same config", () => {
  const config = defaultPeftConfig({
    r: 16,
    loraAlpha: 32,
    targetModules: ["q_proj", "v_proj"],
    loraDropout: 0.05,
    bias: "lora_only",
    useRslora: true,
    useDora: true,
    fanInFanOut: true,
    rankPattern: { q_proj: 8 },
    alphaPattern: { v_proj: 4 },
    initLoraWeights: "gaussian",
    modulesToSave: ["classifier"],
    layersToTransform: [0, 2],
    layersPattern: "layers",
    baseModelNameOrPath: "org/model",
    revision: "main",
    taskType: "CAUSAL_LM",
    extra: { custom_key: { a: [1, 2] }, megatron_core: "other.core" },
  });
  const json = peftConfigToJson(config);
  const keys = Object.keys(json);
  deepStrictEqual(keys, [...keys].sort());
  for (
    const k of [
      "peft_type",
      "r",
      "lora_alpha",
      "target_modules",
      "lora_dropout",
      "bias",
      "use_rslora",
      "use_dora",
    ]
  ) ok(k in json, k);
  strictEqual(json.peft_type, "LORA");
  strictEqual(json.lora_bias, false);
  strictEqual(json.megatron_core, "other.core");
  deepStrictEqual(parsePeftConfig(JSON.parse(JSON.stringify(json))), config);
});

Deno.test("toTargetOptions() and fromTargetOptions() convert both ways", () => {
  const opts = {
    targetModules: ["fc1", "fc2"],
    r: 4,
    loraAlpha: 8,
    useRslora: false,
    useDora: true,
    layersToTransform: null,
    rankPattern: { fc2: 2 },
    alphaPattern: { fc2: 4 },
  };
  const config = fromTargetOptions(opts, { baseModelNameOrPath: "mlp" });
  strictEqual(config.baseModelNameOrPath, "mlp");
  strictEqual(config.inferenceMode, true);
  deepStrictEqual(toTargetOptions(config), opts);
  throws(() => toTargetOptions(defaultPeftConfig()), /target_modules/);
  deepStrictEqual(toTargetOptions(defaultPeftConfig(), ["fc1"]).targetModules, ["fc1"]);
});

Deno.test("layerHyper() agrees with planAdapters() on patterns and rsLoRA", () => {
  const layer = (name: string): LinearLayer => ({
    name,
    inFeatures: 16,
    outFeatures: 16,
    orientation: "out_in",
    weightKey: `${name}.weight`,
    dtype: "F32",
  });
  const model = {
    layers: ["model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj"].map(layer),
  };
  for (const useRslora of [false, true]) {
    const config = defaultPeftConfig({
      targetModules: ["up_proj", "down_proj"],
      r: 8,
      loraAlpha: 16,
      useRslora,
      rankPattern: { "down_proj": 4 },
      alphaPattern: { "mlp\\.up_.*": 2 },
    });
    for (const planned of planAdapters(model, toTargetOptions(config))) {
      const { rank, alpha, scale } = layerHyper(config, planned.layer.name);
      deepStrictEqual({ rank, alpha, scale }, {
        rank: planned.rank,
        alpha: planned.alpha,
        scale: planned.scale,
      });
    }
  }
});
