import { deepStrictEqual, rejects, strictEqual, throws } from "node:assert/strict";
import type { LinearLayer, Orientation } from "../src/models/model.ts";
import { tensor } from "../src/tensor.ts";
import {
  type Adapter,
  checkAdapter,
  detectAdapterKind,
  loadAdapter,
  matchAdapter,
} from "./adapter.ts";
import { defaultPeftConfig } from "./config.ts";
import { planMerge } from "../workflows/merge.ts";

const FIXTURES = new URL("../fixtures/peft/", import.meta.url).pathname;

function layer(
  name: string,
  n: number,
  m: number,
  orientation: Orientation = "out_in",
): LinearLayer {
  return {
    name,
    inFeatures: n,
    outFeatures: m,
    orientation,
    weightKey: `${name}.weight`,
    dtype: "F32",
  };
}

/** The MLP of the fixtures: 6 → 8 → 8 → 3. */
const MLP = { layers: [layer("fc1", 6, 8), layer("fc2", 8, 8), layer("fc3", 8, 3)] };

function rot45(A: number[], B: number[]): Adapter {
  return {
    name: "rot45",
    config: defaultPeftConfig({ r: 8, loraAlpha: 16, targetModules: ["fc1"] }),
    layers: new Map([["fc1", { A: tensor("F32", A), B: tensor("F32", B) }]]),
    biases: new Map(),
    extra: new Map(),
  };
}

Deno.test("matchAdapter() matches every tensor of a PEFT fixture with the base's layers", async () => {
  const lora = await loadAdapter(`${FIXTURES}mlp_lora`);
  const match = matchAdapter(lora, MLP);
  deepStrictEqual(match.layers.map((l) => [l.layer.name, l.rank, l.alpha, l.scale, l.dora]), [
    ["fc1", 4, 8, 2, false],
    ["fc2", 2, 4, 2, false],
  ]);
  deepStrictEqual(match.unmatched, []);
  deepStrictEqual(match.mismatched, []);
  strictEqual(match.matched.length, 6); // A, B of fc1 and fc2, fc3.weight, fc3.bias (modules_to_save)
  const dora = matchAdapter(await loadAdapter(`${FIXTURES}mlp_dora`), MLP);
  deepStrictEqual(dora.layers.map((l) => [l.layer.name, l.scale, l.dora]), [["fc1", 2, true], [
    "fc3",
    2,
    true,
  ]]);
  strictEqual(dora.matched.length, 9);
  // [in, out] storage changes nothing for A and B.
  const conv = await loadAdapter(`${FIXTURES}conv1d_lora`);
  const gpt2 = { layers: [layer("c_fc", 6, 12, "in_out"), layer("c_proj", 12, 6, "in_out")] };
  strictEqual(matchAdapter(conv, gpt2).layers.length, 2);
});

Deno.test("matchAdapter() names the adapter, the tensor and both shapes on a mismatch", () => {
  const model = { layers: [layer("fc1", 784, 512)] };
  throws(() => matchAdapter(rot45([8, 512], [512, 8]), model), {
    name: "TypeError",
    message:
      `Cannot load adapter "rot45": tensor "base_model.model.fc1.lora_A.weight" has shape [8, 512], expected [8, 784]`,
  });
  const report = matchAdapter(rot45([8, 512], [512, 8]), model, { allowMismatch: true });
  deepStrictEqual(report.layers, []);
  deepStrictEqual(report.matched, ["base_model.model.fc1.lora_B.weight"]);
  deepStrictEqual(report.mismatched, [{
    key: "base_model.model.fc1.lora_A.weight",
    expected: [8, 784],
    actual: [8, 512],
  }]);
});

Deno.test("matchAdapter() reports tensors of modules the model does not have", () => {
  const adapter = rot45([8, 784], [512, 8]);
  throws(() => matchAdapter(adapter, { layers: [layer("encoder.fc1", 784, 512)] }), {
    name: "RangeError",
    message:
      `Cannot load adapter "rot45": tensor "base_model.model.fc1.lora_A.weight" matches no linear layer of the model; ` +
      `tensor "base_model.model.fc1.lora_B.weight" matches no linear layer of the model (its layers: encoder.fc1)`,
  });
});

Deno.test("matchAdapter() checks DoRA magnitudes, biases and modules_to_save tensors", () => {
  const adapter: Adapter = {
    name: "d",
    config: defaultPeftConfig({ r: 2, useDora: true, bias: "all" }),
    layers: new Map([["fc1", {
      A: tensor("F32", [2, 6]),
      B: tensor("F32", [8, 2]),
      magnitude: tensor("F32", [8]),
    }]]),
    biases: new Map([["fc1", tensor("F32", [8])], ["fc2", tensor("F32", [7])], [
      "fc9",
      tensor("F32", [3]),
    ]]),
    extra: new Map([["fc3.weight", tensor("F32", [3, 8])], ["fc3.bias", tensor("F32", [3])], [
      "norm.weight",
      tensor("F32", [8]),
    ]]),
  };
  const r = matchAdapter(adapter, MLP, { allowMismatch: true });
  deepStrictEqual(r.layers.map((l) => l.layer.name), ["fc1"]);
  deepStrictEqual(r.mismatched, [{ key: "base_model.model.fc2.bias", expected: [8], actual: [7] }]);
  deepStrictEqual(r.unmatched, ["base_model.model.fc9.bias", "base_model.model.norm.weight"]);
  deepStrictEqual(r.matched, [
    "base_model.model.fc1.lora_A.weight",
    "base_model.model.fc1.lora_B.weight",
    "base_model.model.fc1.lora_magnitude_vector",
    "base_model.model.fc1.base_layer.bias",
    "base_model.model.fc3.weight",
    "base_model.model.fc3.bias",
  ]);
});

Deno.test("checkAdapter() refuses ranks that disagree with the config and DoRA without magnitudes", () => {
  throws(() => checkAdapter(rot45([4, 6], [8, 4]), "Cannot save"), {
    message:
      `Cannot save: tensor "base_model.model.fc1.lora_A.weight" has shape [4, 6], expected [8, in] (r = 8)`,
  });
  const dora = { ...rot45([8, 6], [3, 8]), config: defaultPeftConfig({ r: 8, useDora: true }) };
  throws(
    () => checkAdapter(dora, "Cannot save"),
    /DoRA tensor "base_model.model.fc1.lora_magnitude_vector" is missing/,
  );
});

Deno.test("detectAdapterKind() tells PEFT from MLX-LM and says what an unknown folder holds", async () => {
  strictEqual(await detectAdapterKind(`${FIXTURES}mlp_lora`), "peft");
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/adapter_config.json`, "{}");
  await Deno.writeTextFile(`${dir}/adapters.safetensors`, "");
  strictEqual(await detectAdapterKind(dir), "mlx");
  await Deno.remove(`${dir}/adapters.safetensors`);
  await Deno.writeTextFile(`${dir}/notes.txt`, "");
  await rejects(detectAdapterKind(dir), {
    name: "TypeError",
    message:
      `Cannot load adapter "${dir}": no adapter_model.safetensors (PEFT) or adapters.safetensors (MLX-LM) ` +
      `next to adapter_config.json; the folder holds adapter_config.json, notes.txt`,
  });
  await rejects(detectAdapterKind(`${dir}/notes.txt`), {
    name: "TypeError",
    message: /it is a file, not an adapter folder/,
  });
  await Deno.writeTextFile(`${dir}/adapters.npz`, "");
  await rejects(detectAdapterKind(dir), /"adapters.npz" is the old MLX format/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a modules_to_save weight is read in its PyTorch module's layout and stored in the base's", () => {
  const saved = (fanInFanOut: boolean, t: ReturnType<typeof tensor>): Adapter => ({
    name: "s",
    config: { ...defaultPeftConfig({ r: 2, modulesToSave: ["c_proj"] }), fanInFanOut },
    layers: new Map(),
    biases: new Map(),
    extra: new Map([["c_proj.weight", t]]),
  });
  const counting = (shape: number[]) => {
    const t = tensor("F32", shape);
    t.data.forEach((_, i) => (t.data[i] = i));
    return t;
  };
  const stored = (model: Parameters<typeof planMerge>[0], a: Adapter) =>
    planMerge(model, a).replaced.get("c_proj.weight")!;
  // An ONNX MatMul layer 8 → 3, stored [in, out]: an nn.Linear copy [3, 8] is transposed, a
  // Conv1D copy [8, 3] is stored as it is, anything else names the nn.Linear layout.
  const onnx = { format: "onnx" as const, layers: [layer("c_proj", 8, 3, "in_out")] };
  const viaLinear = stored(onnx, saved(false, counting([3, 8])));
  deepStrictEqual(viaLinear.shape, [8, 3]);
  strictEqual(viaLinear.data[1 * 3 + 2], 2 * 8 + 1); // stored[in 1][out 2] = linear[out 2][in 1]
  deepStrictEqual([...stored(onnx, saved(true, counting([8, 3]))).data], [
    ...counting([8, 3]).data,
  ]);
  throws(() => matchAdapter(saved(true, counting([4, 6])), onnx), /expected \[3, 8\]/);
  // A safetensors GPT-2 base stores Conv1D's own layout: only [in, out] fits, whatever the flag.
  const gpt2 = { format: "safetensors" as const, layers: [layer("c_proj", 8, 3, "in_out")] };
  deepStrictEqual([...stored(gpt2, saved(false, counting([8, 3]))).data], [
    ...counting([8, 3]).data,
  ]);
  throws(
    () => matchAdapter(saved(true, counting([3, 8])), gpt2),
    /has shape \[3, 8\], expected \[8, 3\]/,
  );
  // A square exported layer: fan_in_fan_out (set for Conv1D) says which layout it is.
  const square = { format: "onnx" as const, layers: [layer("c_proj", 4, 4, "in_out")] };
  const s = counting([4, 4]);
  deepStrictEqual([...stored(square, saved(true, s)).data], [...s.data]);
  strictEqual(stored(square, saved(false, s)).data[1], s.data[4]);
});

Deno.test("matchAdapter() sums up an adapter made for another model in one line, first problem per layer", () => {
  const layers = new Map(
    ["fc1", "fc2", "fc3", "fc4"].map((
      n,
    ) => [n, { A: tensor("F32", [8, 512]), B: tensor("F32", [512, 8]) }]),
  );
  const adapter: Adapter = {
    name: "rot45",
    config: defaultPeftConfig({ r: 8, targetModules: ["fc1", "fc2", "fc3", "fc4"] }),
    layers,
    biases: new Map(),
    extra: new Map(),
  };
  const model = { layers: ["fc1", "fc2", "fc3", "fc4"].map((n) => layer(n, 784, 10)) };
  throws(
    () => matchAdapter(adapter, model, { where: 'Cannot predict with adapter "runs/rot45"' }),
    {
      name: "TypeError",
      message:
        'Cannot predict with adapter "runs/rot45": 4 of its 4 layers do not fit, so it was ' +
        'made for another model: tensor "base_model.model.fc1.lora_A.weight" has shape [8, 512], ' +
        'expected [8, 784]; tensor "base_model.model.fc2.lora_A.weight" has shape [8, 512], ' +
        'expected [8, 784]; tensor "base_model.model.fc3.lora_A.weight" has shape [8, 512], ' +
        "expected [8, 784]; and 1 more layers",
    },
  );
  const half = {
    layers: [layer("fc1", 512, 512), layer("fc2", 512, 512), ...model.layers.slice(2)],
  };
  throws(() => matchAdapter(adapter, half), {
    message:
      /^Cannot load adapter "rot45": 2 of its 4 layers do not fit: tensor "base_model\.model\.fc3\.lora_A\.weight"/,
  });
});
