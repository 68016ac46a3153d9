import { deepStrictEqual, rejects, throws } from "node:assert/strict";
import { isActivation, parseBlockSpec, readBlockSpec } from "./spec.ts";

const fails = (json: unknown, ...parts: string[]) =>
  throws(
    () => parseBlockSpec(json, `"b.json"`),
    (e: Error) => e instanceof TypeError && parts.every((p) => e.message.includes(p)),
  );

Deno.test("parseBlockSpec() accepts both forms with defaults left out", () => {
  const seq = {
    form: "sequential",
    layers: [{ name: "a", activation: "gelu_new" }, { name: "b" }],
  };
  deepStrictEqual(parseBlockSpec(seq), seq);
  const gated = {
    name: "enc.ffn",
    form: "gated",
    activation: "swish",
    gate: { name: "enc.ffn.w1", bias: null },
    up: { name: "enc.ffn.w3", weight: "w3", orientation: "in_out" },
    down: { name: "enc.ffn.w2" },
    residual: true,
    norm: { kind: "rms_norm", weight: "enc.norm", position: "pre", eps: 1e-6 },
  };
  deepStrictEqual(parseBlockSpec(gated), gated);
});

Deno.test("parseBlockSpec() errors name the source and the field", () => {
  fails(
    { form: "sequential", layers: [{ name: "a", orientation: "oi" }] },
    `Invalid block spec "b.json"`,
    `field "layers[0].orientation"`,
  );
  fails(
    { form: "gated", activation: "relu", gate: { name: "g" }, up: { name: "u" } },
    `field "down"`,
  );
  fails(
    { form: "sequential", layers: [{ name: "a", activation: "relu6" }] },
    `"layers[0].activation"`,
  );
  fails({ form: "sequential", layers: [] }, `field "layers"`);
  fails({ form: "sequential", layers: [{ name: "a" }], extra: 1 }, "extra");
  fails({ layers: [] }, `field "form"`);
  fails(
    {
      form: "sequential",
      layers: [{ name: "a" }],
      norm: { kind: "layer_norm", weight: "n", eps: 0 },
    },
    `field "norm.eps"`,
  );
});

Deno.test("readBlockSpec() names a file that is not JSON", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(path, "{form: sequential}");
  await rejects(
    () => readBlockSpec(path),
    (e: Error) => e instanceof SyntaxError && e.message.includes(`"${path}": not JSON`),
  );
  await Deno.remove(path);
});

Deno.test("isActivation() knows Hugging Face and Keras names", () => {
  deepStrictEqual(
    ["gelu", "gelu_pytorch_tanh", "quick_gelu", "swish", "linear", "relu6"].map(isActivation),
    [true, true, true, true, true, false],
  );
});
