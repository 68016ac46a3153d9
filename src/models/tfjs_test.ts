import { deepStrictEqual, ok, rejects } from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Graph } from "../engine/graph.ts";
import { Session } from "../engine/runtime.ts";
import { Rng } from "../rng.ts";
import { openTfjsModel } from "./tfjs.ts";
import { REALDATA, realdataTest } from "../../tests/_realdata.ts";

const FIXTURE = new URL("../../fixtures/tfjs/dense/", import.meta.url).pathname;
const E2E = `${REALDATA}tensorflow__tfjs/e2e/`;

/** tfjs's own loader over files (no network): the oracle. */
function fileHandler(dir: string): tf.io.IOHandler {
  return {
    load: async () => {
      const json = JSON.parse(await Deno.readTextFile(`${dir}model.json`));
      const group = json.weightsManifest[0];
      const bytes = await Deno.readFile(`${dir}${group.paths[0]}`);
      return {
        modelTopology: json.modelTopology,
        weightSpecs: group.weights,
        weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      };
    },
  };
}

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
  const x = new Float32Array(6 * 8);
  new Rng(3).fillUniform(x, -2, 2);
  const g = new Graph();
  const { inputs, outputs } = model.build(g);
  g.output(outputs[0]!);
  const session = await Session.compile(g);
  const ours = (await session.run({ [inputs[0]!.name]: { dtype: "F32", shape: [6, 8], data: x } }))[
    outputs[0]!.name
  ]!.data as Float32Array;
  await session.release();

  const reference = await tf.loadLayersModel(fileHandler(FIXTURE));
  const y = reference.predict(tf.tensor2d(x, [6, 8])) as tf.Tensor;
  const theirs = y.dataSync() as Float32Array;
  deepStrictEqual(y.shape, [6, 4]);
  for (let i = 0; i < theirs.length; i++) {
    ok(Math.abs(ours[i]! - theirs[i]!) <= 1e-5 * Math.max(1, Math.abs(theirs[i]!)), `element ${i}`);
  }
  reference.dispose();
});

Deno.test("openTfjsModel() accepts the model's folder", async () => {
  const model = await openTfjsModel(FIXTURE);
  deepStrictEqual(model.format, "tfjs");
  deepStrictEqual((await model.readTensor("fc1/kernel")).shape, [8, 16]);
});

realdataTest("openTfjsModel() names the unsupported layer class", async () => {
  const dir = `${E2E}integration_tests/load_predict_data/layers_model/`;
  await rejects(
    () => openTfjsModel(`${dir}model.json`),
    (e: Error) =>
      e instanceof TypeError && e.message.includes(`"embedding_Embedding2" of class Embedding`),
  );
});

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

Deno.test("openTfjsModel() names an activation it cannot build", async () => {
  const dir = await Deno.makeTempDir();
  const json = JSON.parse(await Deno.readTextFile(`${FIXTURE}model.json`));
  json.modelTopology.config.layers[0].config.activation = "selu";
  await Deno.writeTextFile(`${dir}/model.json`, JSON.stringify(json));
  await Deno.copyFile(`${FIXTURE}weights.bin`, `${dir}/weights.bin`);
  await rejects(
    () => openTfjsModel(`${dir}/model.json`),
    (e: Error) => e.message.includes(`layer "fc1" uses activation "selu"`),
  );
  await Deno.remove(dir, { recursive: true });
});
