/**
 * Target selection as PEFT does it (`check_target_module_exists`): a list matches a module whose
 * name equals an entry or ends with `.` + entry, a string is a regular expression the whole
 * name must match, and `"all-linear"` takes every linear layer except a whole model's output
 * layer; `layers_to_transform` keeps the listed transformer layers; `rank_pattern` and
 * `alpha_pattern` override per layer; a target that matches nothing is an error.
 *
 * @module
 */

import { assertEquals, assertThrows } from "../tests/_assert.ts";
import type { LinearLayer } from "../src/models/model.ts";
import { layerIndex, planAdapters, selectLayers } from "./targets.ts";

function linear(name: string, inFeatures = 8, outFeatures = 16): LinearLayer {
  return {
    name,
    inFeatures,
    outFeatures,
    orientation: "out_in",
    weightKey: `${name}.weight`,
    dtype: "F32",
  };
}

/** Two LLaMA MLP blocks, as a block list (a transformer's FFN sublayers). */
const LLAMA = {
  block: "model.layers.0.mlp",
  layers: [0, 1].flatMap((i) =>
    ["gate_proj", "up_proj", "down_proj"].map((m) => linear(`model.layers.${i}.mlp.${m}`))
  ),
};
/** A whole MLP: its last layer is the output layer. */
const MLP = { layers: [linear("fc1"), linear("fc2"), linear("fc3", 16, 10)] };

const names = (layers: readonly LinearLayer[]) => layers.map((l) => l.name);

Deno.test("selectLayers() matches list entries by whole name or dotted suffix", () => {
  assertEquals(names(selectLayers(LLAMA, ["up_proj"])), [
    "model.layers.0.mlp.up_proj",
    "model.layers.1.mlp.up_proj",
  ]);
  assertEquals(names(selectLayers(LLAMA, ["mlp.down_proj", "model.layers.0.mlp.gate_proj"])), [
    "model.layers.0.mlp.gate_proj",
    "model.layers.0.mlp.down_proj",
    "model.layers.1.mlp.down_proj",
  ]);
  // A suffix must start at a dot: "proj" is not a module name here.
  assertThrows(() => selectLayers(LLAMA, ["proj"]), RangeError, "match no linear layer");
});

Deno.test("selectLayers() takes a string as a regular expression over the whole name", () => {
  assertEquals(names(selectLayers(LLAMA, ".*\\.1\\.mlp\\.(gate|up)_proj")), [
    "model.layers.1.mlp.gate_proj",
    "model.layers.1.mlp.up_proj",
  ]);
  // Whole-name match: a pattern matching only part of a name selects nothing.
  assertThrows(() => selectLayers(LLAMA, "up_proj"), RangeError, "match no linear layer");
  assertThrows(
    () => selectLayers(LLAMA, "(up"),
    SyntaxError,
    "Invalid target_modules regular expression",
  );
});

Deno.test('"all-linear" skips a whole model\'s output layer and keeps every FFN linear', () => {
  assertEquals(names(selectLayers(MLP, "all-linear")), ["fc1", "fc2"]);
  assertEquals(names(selectLayers(MLP, ["all-linear"])), ["fc1", "fc2"]);
  assertEquals(selectLayers(LLAMA, "all-linear").length, 6);
});

Deno.test("layers_to_transform keeps the listed transformer layers", () => {
  assertEquals(names(selectLayers(LLAMA, ["down_proj"], [1])), ["model.layers.1.mlp.down_proj"]);
  assertEquals(selectLayers(LLAMA, "all-linear", []).length, 6);
  assertEquals([layerIndex("transformer.h.11.mlp.c_fc"), layerIndex("fc1")], [11, undefined]);
  assertThrows(
    () => selectLayers(LLAMA, ["down_proj"], [7]),
    RangeError,
    'Target modules ["down_proj"] with layers_to_transform [7] match no linear layer; ' +
      "available layers: model.layers.0.mlp.gate_proj",
  );
});

Deno.test("planAdapters() applies rank and alpha patterns, rsLoRA, and warns on wasteful ranks", () => {
  const warnings: string[] = [];
  const plan = planAdapters(MLP, {
    targetModules: ["fc1", "fc2", "fc3"],
    r: 4,
    loraAlpha: 8,
    rankPattern: { fc2: 2, fc3: 12 },
    alphaPattern: { "fc[13]": 6 },
    useRslora: true,
    onWarning: (m) => void warnings.push(m),
  });
  assertEquals(
    plan.map((a) => [a.layer.name, a.rank, a.alpha, a.scale]),
    [["fc1", 4, 6, 3], ["fc2", 2, 8, 8 / Math.sqrt(2)], ["fc3", 12, 6, 6 / Math.sqrt(12)]],
  );
  // fc3 is 16 → 10: rank 12 exceeds min(in, out) = 10. Said to the caller, not printed.
  assertEquals(warnings, [
    'rank 12 exceeds min(in, out) = 10 for "fc3": the extra rank adds parameters, not expressiveness',
  ]);
});
