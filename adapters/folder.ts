/**
 * Adapter folders on disk and in memory: validating an adapter before it is saved or used, and
 * listing a folder that should hold one (naming the backup an interrupted save left).
 *
 * @module
 */

import type { TensorInput } from "../src/io/safetensors.ts";
import { formatShape } from "../src/tensor.ts";
import type { Adapter } from "./adapter.ts";
import { layerHyper } from "./config.ts";
import { peftKeys } from "../src/lora/branch.ts";

/**
 * Checks that an adapter is self-consistent: ranks agree with the config's `r` / `rank_pattern`,
 * A, B and the magnitude fit together, DoRA has magnitudes and LoRA has none. `where` starts
 * each message (`Cannot save adapter "x"`).
 *
 * @example
 * ```ts
 * import { checkAdapter } from "./adapter.ts";
 * import { defaultPeftConfig } from "./config.ts";
 * import { tensor } from "../src/tensor.ts";
 * const layers = new Map([["fc1", { A: tensor("F32", [8, 4]), B: tensor("F32", [3, 8]) }]]);
 * checkAdapter({ name: "a", config: defaultPeftConfig(), layers, biases: new Map(), extra: new Map() }, "Cannot save");
 * ```
 */
export function checkAdapter(adapter: Adapter<TensorInput>, where: string): void {
  const { config } = adapter;
  for (const [module, t] of adapter.layers) {
    const k = peftKeys(module);
    const { rank } = layerHyper(config, module);
    if (t.A.shape.length !== 2 || t.A.shape[0] !== rank) {
      throw new TypeError(
        `${where}: tensor "${k.A}" has shape ${
          formatShape(t.A.shape)
        }, expected [${rank}, in] (r = ${rank})`,
      );
    }
    if (t.B.shape.length !== 2 || t.B.shape[1] !== rank) {
      throw new TypeError(
        `${where}: tensor "${k.B}" has shape ${
          formatShape(t.B.shape)
        }, expected [out, ${rank}] (r = ${rank})`,
      );
    }
    const out = t.B.shape[0]!;
    if (config.useDora && !t.magnitude) {
      throw new TypeError(`${where}: DoRA tensor "${k.magnitude}" is missing`);
    }
    if (!config.useDora && t.magnitude) {
      throw new TypeError(
        `${where}: tensor "${k.magnitude}" is present but the config has use_dora false`,
      );
    }
    if (t.magnitude && (t.magnitude.shape.length !== 1 || t.magnitude.shape[0] !== out)) {
      throw new TypeError(
        `${where}: tensor "${k.magnitude}" has shape ${
          formatShape(t.magnitude.shape)
        }, expected [${out}]`,
      );
    }
    const bias = adapter.biases.get(module);
    if (bias && (bias.shape.length !== 1 || bias.shape[0] !== out)) {
      throw new TypeError(
        `${where}: bias of "${module}" has shape ${formatShape(bias.shape)}, expected [${out}]`,
      );
    }
  }
}

/** File names in `dir`; a missing folder or a file is an error (an interrupted save is named). */
export async function listFolder(dir: string, where: string): Promise<Set<string>> {
  const files = new Set<string>();
  try {
    for await (const e of Deno.readDir(dir)) files.add(e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      const backup = await interruptedBackup(dir);
      throw new Deno.errors.NotFound(
        `${where}: no such folder${
          backup ? `; an interrupted save left the previous adapter in "${backup}"` : ""
        }`,
      );
    }
    if (e instanceof Deno.errors.NotADirectory) {
      throw new TypeError(`${where}: it is a file, not an adapter folder`);
    }
    throw e;
  }
  return files;
}

async function interruptedBackup(dir: string): Promise<string | undefined> {
  const cut = dir.replace(/\/+$/, "").lastIndexOf("/");
  const parent = cut < 0 ? "." : dir.slice(0, cut) || "/";
  const name = dir.replace(/\/+$/, "").slice(cut + 1);
  try {
    for await (const e of Deno.readDir(parent)) {
      if (e.name.startsWith(`.${name}.`) && e.name.endsWith(".old")) return `${parent}/${e.name}`;
    }
  } catch { /* no parent: nothing to point at */ }
  return undefined;
}
