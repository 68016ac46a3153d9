/**
 * `ffwd inspect` of a TF.js LayersModel (`model.json`, or the folder holding it): its Keras layers
 * in order, through nested models (`sequential_1/conv1`), with units, activations and weight
 * counts, the linear layers (Dense) the loader made of them, inputs, outputs and the parameter
 * count.
 *
 * The model is opened by the loader (`src/models/tfjs.ts`), so a graph model or a layer it cannot
 * convert fails with its message. `inspect.ts` imports this module only when it meets a TF.js
 * model, so other kinds never load TensorFlow.js.
 *
 * @module
 */

import { enableProdMode } from "@tensorflow/tfjs";
import { openTfjsModel, type TfjsModel } from "../src/models/tfjs.ts";
import { count, dims, plural, printable, table } from "./_inspect_text.ts";

/** One Keras layer of the model, with what the loader made of it when it is a Dense layer. */
interface TfjsLayer {
  name: string;
  class: string;
  units?: number;
  activation?: string;
  inFeatures?: number;
  outFeatures?: number;
  orientation?: string;
  weightKey?: string;
  biasKey?: string;
  parameters?: number;
}

/**
 * The JSON form and the table of a TF.js LayersModel.
 *
 * @example
 * ```ts ignore
 * import { describeTfjs } from "./_inspect_tfjs.ts";
 * const { json } = await describeTfjs("fixtures/tfjs/dense/model.json");
 * ```
 */
export async function describeTfjs(path: string): Promise<{ json: unknown; table: string }> {
  // TF.js prints a "use tfjs-node" banner when it first stores a tensor; prod mode silences it.
  enableProdMode();
  const model = await openTfjsModel(path);
  try {
    const layers = kerasLayers(model);
    const parameters = layers.reduce((a, l) => a + (l.parameters ?? 0), 0);
    const json = {
      format: "tfjs",
      path: model.source,
      layers,
      inputs: model.inputs,
      outputs: model.outputs,
      parameters,
    };
    return { json, table: tfjsTable(json).join("\n") + "\n" };
  } finally {
    model.close();
  }
}

/** The Keras layers the loader converted, with the Dense layers' linear-layer details. */
function kerasLayers(model: TfjsModel): TfjsLayer[] {
  return model.kerasLayers.map((k) => {
    const c = k.config;
    const name = [...k.path, k.name].join("/");
    const layer: TfjsLayer = { name, class: k.class };
    if (typeof c.units === "number") layer.units = c.units;
    if (typeof c.activation === "string") layer.activation = c.activation;
    const l = k.class === "Dense" ? model.layers.find((l) => l.name === k.name) : undefined;
    if (l) {
      layer.inFeatures = l.inFeatures;
      layer.outFeatures = l.outFeatures;
      layer.orientation = l.orientation;
      layer.weightKey = l.weightKey;
      if (l.biasKey !== undefined) layer.biasKey = l.biasKey;
    }
    if (k.parameters > 0) layer.parameters = k.parameters;
    return layer;
  });
}

function tfjsTable(m: {
  path: string;
  layers: TfjsLayer[];
  inputs: readonly { name: string; dtype: string; shape: readonly (number | string)[] }[];
  outputs: readonly { name: string; dtype: string; shape: readonly (number | string)[] }[];
  parameters: number;
}): string[] {
  const dense = m.layers.filter((l) => l.inFeatures !== undefined).length;
  const rows = m.layers.map((l) => [
    printable(l.name),
    l.class,
    l.units !== undefined ? String(l.units) : "",
    l.activation ?? "",
    l.inFeatures !== undefined ? dims([l.inFeatures, l.outFeatures!]) : "",
    l.biasKey !== undefined ? "yes" : l.inFeatures !== undefined ? "no" : "",
    l.parameters !== undefined ? count(l.parameters) : "",
  ]);
  const io = (v: (typeof m.inputs)[number]) => `${printable(v.name)} ${v.dtype} ${dims(v.shape)}`;
  return [
    `${m.path}: TF.js LayersModel, ${plural(m.layers.length, "layer")}, ${dense} Dense`,
    "",
    ...table(
      ["name", "class", "units", "activation", "kernel", "bias", "parameters"],
      rows,
      [false, false, true, false, false, false, true],
    ),
    "",
    `inputs: ${m.inputs.map(io).join(", ")}`,
    `outputs: ${m.outputs.map(io).join(", ")}`,
    `parameters: ${count(m.parameters)}`,
  ];
}
