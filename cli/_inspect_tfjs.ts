/**
 * `ffwd inspect` of a TF.js LayersModel (`model.json`, or the folder holding it): its Keras layers
 * in order (Dense units and activations, the layers that pass through), the linear layers the
 * loader made of them, inputs, outputs and the parameter count.
 *
 * The model is opened by the loader (`src/models/tfjs.ts`), so a graph model, a functional model or
 * an unsupported layer fails with its message. `inspect.ts` imports this module only when it
 * meets a TF.js model, so other kinds never load TensorFlow.js.
 *
 * @module
 */

import { enableProdMode } from "@tensorflow/tfjs";
import type { LinearLayer } from "../src/models/model.ts";
import { openTfjsModel } from "../src/models/tfjs.ts";
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
    const layers = await kerasLayers(model.source, model.layers);
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

/** The Keras layers of `model.json`; the loader has read and validated it already. */
async function kerasLayers(file: string, linear: readonly LinearLayer[]): Promise<TfjsLayer[]> {
  type Keras = { class_name?: string; config?: Record<string, unknown> };
  const json = JSON.parse(await Deno.readTextFile(file));
  const topology = json.modelTopology as Record<string, unknown>;
  const model = (topology.model_config ?? topology) as Keras;
  const cfg = model.config as { layers?: Keras[] } | Keras[] | undefined;
  const keras = Array.isArray(cfg) ? cfg : cfg?.layers ?? [];
  return keras.map((k, i) => {
    const c = k.config ?? {};
    const name = typeof c.name === "string" ? c.name : `layer ${i}`;
    const layer: TfjsLayer = { name, class: k.class_name ?? "?" };
    if (typeof c.units === "number") layer.units = c.units;
    if (typeof c.activation === "string") layer.activation = c.activation;
    const l = k.class_name === "Dense" ? linear.find((l) => l.name === name) : undefined;
    if (l) {
      layer.inFeatures = l.inFeatures;
      layer.outFeatures = l.outFeatures;
      layer.orientation = l.orientation;
      layer.weightKey = l.weightKey;
      if (l.biasKey !== undefined) layer.biasKey = l.biasKey;
      layer.parameters = l.inFeatures * l.outFeatures +
        (l.biasKey !== undefined ? l.outFeatures : 0);
    }
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
