import { deepStrictEqual, ok, rejects } from "node:assert/strict";
import { openTfjsModel } from "./tfjs.ts";
import { REALDATA, realdataTest } from "../../tests/_realdata.ts";
import { compareWithTfjs, loadTfjs, seededFeeds } from "../../tests/_tfjs.ts";

const FIXTURE = new URL("../../fixtures/tfjs/dense/", import.meta.url).pathname;
const E2E = `${REALDATA}tensorflow__tfjs/e2e/`;

Deno.test("openTfjsModel() of a Dense Sequential equals tfjs's model.predict within 1e-5", async () => {
  const model = await openTfjsModel(`${FIXTURE}model.json`);
  deepStrictEqual(
    model.layers.map((l) => [l.name, l.orientation, l.inFeatures, l.outFeatures, l.biasKey]),
    [
      ["fc1", "in_out", 8, 16, "fc1/bias"],
      ["fc2", "in_out", 16, 12, "fc2/bias"],
      ["fc3", "in_out", 12, 4, undefined],
    ],
  );
  deepStrictEqual(model.finalActivation, { op: "Sigmoid", input: "fc3/MatMul" });
  const reference = await loadTfjs(FIXTURE);
  const err = await compareWithTfjs(model, reference, seededFeeds(model, 6, 3));
  ok(err <= 1e-5, `relative error ${err}`);
  reference.dispose();
});

Deno.test("openTfjsModel() accepts the model's folder", async () => {
  const model = await openTfjsModel(FIXTURE);
  deepStrictEqual(model.format, "tfjs");
  deepStrictEqual((await model.readTensor("fc1/kernel")).shape, [8, 16]);
});

realdataTest(
  "openTfjsModel() of TF.js's Embedding + GRU model predicts what tfjs predicts within 1e-5",
  async () => {
    // tfjs-layers' own e2e model: Embedding(100, 20) on 10 ids, then a backwards GRU(4) with
    // hard_sigmoid gates (TF.js's reset_after = false); no Dense layer, so nothing to adapt.
    const dir = `${E2E}integration_tests/load_predict_data/layers_model`;
    const model = await openTfjsModel(dir);
    deepStrictEqual(model.layers, []);
    deepStrictEqual(model.inputs, [{
      name: "embedding_Embedding2_input",
      dtype: "F32",
      shape: ["batch", 10],
    }]);
    deepStrictEqual(model.outputs, [{ name: "y", dtype: "F32", shape: ["batch", 4] }]);
    deepStrictEqual(model.kerasLayers.map((l) => l.class), ["Embedding", "GRU"]);
    const feeds = seededFeeds(model, 6, 5, { embedding_Embedding2_input: 100 });
    const err = await compareWithTfjs(model, await loadTfjs(dir), feeds);
    ok(err <= 1e-5, `relative error ${err}`);
  },
);

realdataTest("openTfjsModel() refuses a TF.js graph model, naming the format", async () => {
  await rejects(
    () => openTfjsModel(`${E2E}custom_module/dense_model/model/model.json`),
    (e: Error) =>
      e instanceof TypeError && e.message.includes(`graph model (format "graph-model")`),
  );
});

Deno.test("openTfjsModel() refuses weight paths outside the model's folder", async () => {
  const dir = await Deno.makeTempDir();
  const json = JSON.parse(await Deno.readTextFile(`${FIXTURE}model.json`));
  json.weightsManifest[0].paths = ["../weights.bin"];
  await Deno.writeTextFile(`${dir}/model.json`, JSON.stringify(json));
  await rejects(
    () => openTfjsModel(`${dir}/model.json`),
    (e: Error) => e.message.includes(`weight path "../weights.bin" is not inside`),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openTfjsModel() names an activation it cannot convert", async () => {
  const dir = await Deno.makeTempDir();
  const json = JSON.parse(await Deno.readTextFile(`${FIXTURE}model.json`));
  json.modelTopology.config.layers[0].config.activation = "hard_shrink";
  await Deno.writeTextFile(`${dir}/model.json`, JSON.stringify(json));
  await Deno.copyFile(`${FIXTURE}weights.bin`, `${dir}/weights.bin`);
  await rejects(
    () => openTfjsModel(`${dir}/model.json`),
    (e: Error) =>
      e.message.includes(`layer "fc1" (Dense): its activation "hard_shrink" cannot be converted`),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("openTfjsModel() ends at a converted value when asked, and names the model on errors", async () => {
  const logits = await openTfjsModel(FIXTURE, { output: "fc3/MatMul" });
  deepStrictEqual(logits.finalActivation, undefined);
  deepStrictEqual(logits.outputs.map((o) => o.name), ["fc3/MatMul"]);
  await rejects(
    () => openTfjsModel(FIXTURE, { output: "nothing" }),
    (e: Error) =>
      e.message.startsWith(`Cannot use output "nothing" of TF.js model "${FIXTURE}model.json"`),
  );
});
