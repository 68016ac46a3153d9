/**
 * Helpers shared by the adapter modules (imported only by siblings): adapter validation, folder
 * listing, a byte-level 2-D transpose, and the atomic folder write that both savers use.
 *
 * @module
 */

import type { TensorInput } from "../src/io/safetensors.ts";
import { fromBytes, ITEMSIZE, type Tensor } from "../src/tensor.ts";
import type { Adapter } from "./adapter.ts";
import { layerHyper } from "./config.ts";
import { peftKeys } from "./lora.ts";

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
          dims(t.A.shape)
        }, expected [${rank}, in] (r = ${rank})`,
      );
    }
    if (t.B.shape.length !== 2 || t.B.shape[1] !== rank) {
      throw new TypeError(
        `${where}: tensor "${k.B}" has shape ${
          dims(t.B.shape)
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
        `${where}: tensor "${k.magnitude}" has shape ${dims(t.magnitude.shape)}, expected [${out}]`,
      );
    }
    const bias = adapter.biases.get(module);
    if (bias && (bias.shape.length !== 1 || bias.shape[0] !== out)) {
      throw new TypeError(
        `${where}: bias of "${module}" has shape ${dims(bias.shape)}, expected [${out}]`,
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

export function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** `[8, 784]` */
export function dims(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** `t` transposed ([m, n] → [n, m]), any dtype: elements are moved as bytes. */
export function transpose2d(t: Tensor): Tensor {
  const [m, n] = t.shape as [number, number];
  const size = ITEMSIZE[t.dtype];
  const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const dst = new Uint8Array(src.length);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const from = (i * n + j) * size;
      dst.set(src.subarray(from, from + size), (j * m + i) * size);
    }
  }
  return fromBytes(t.dtype, [n, m], dst);
}

/**
 * Writes a folder all at once. `fill` writes the new files into a staging folder next to `dir`
 * (same file system); then the staging folder takes `dir`'s place by rename. When `dir` already
 * exists, the files in it that `fill` does not own (`owned`) are hard-linked into the staging
 * folder first, `dir` is renamed to `.<name>.<random>.old`, the staging folder renamed to `dir`,
 * and the old folder removed.
 *
 * Why a folder and not each file atomically: an adapter is a pair (config + weights). Replacing
 * the files one by one leaves a window, and after a failure between the two renames a state,
 * where the new weights sit with the old config: a silently wrong adapter. Here a failure before
 * the swap leaves `dir` untouched and removes the staging folder; the only window is between the
 * two renames, where `dir` is briefly absent and the previous adapter is intact in the `.old`
 * folder, which the loaders name when `dir` is missing.
 */
export async function writeFolderAtomic(
  dir: string,
  owned: readonly string[],
  fill: (staging: string) => Promise<void>,
): Promise<void> {
  const path = dir.replace(/(.)\/+$/, "$1");
  const cut = path.lastIndexOf("/");
  const parent = cut < 0 ? "." : path.slice(0, cut) || "/";
  const name = path.slice(cut + 1);
  const where = `Cannot save adapter "${dir}"`;
  let existing = false;
  try {
    const info = await Deno.lstat(path);
    if (info.isSymlink) {
      throw new TypeError(`${where}: it is a symbolic link; give the folder it points to`);
    }
    if (!info.isDirectory) throw new TypeError(`${where}: it is a file, not a folder`);
    existing = true;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const random = crypto.getRandomValues(new Uint32Array(2)).reduce(
    (s, v) => s + v.toString(36),
    "",
  );
  const staging = `${parent}/.${name}.${random}.tmp`;
  try {
    await Deno.mkdir(staging);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${where}: folder "${parent}" does not exist`);
    }
    throw e;
  }
  try {
    await fill(staging);
    if (existing) await linkTree(path, staging, new Set(owned));
    await syncFolder(staging);
  } catch (e) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    throw e;
  }
  if (!existing) {
    await Deno.rename(staging, path).catch(async (e) => {
      await Deno.remove(staging, { recursive: true }).catch(() => {});
      throw e;
    });
  } else {
    const old = `${parent}/.${name}.${random}.old`;
    await Deno.rename(path, old).catch(async (e) => {
      await Deno.remove(staging, { recursive: true }).catch(() => {});
      throw e;
    });
    try {
      await Deno.rename(staging, path);
    } catch (e) {
      await Deno.rename(old, path);
      await Deno.remove(staging, { recursive: true }).catch(() => {});
      throw e;
    }
    await Deno.remove(old, { recursive: true }).catch(() => {});
  }
  await syncFolder(parent);
}

/** Recreates `src`'s entries (except `skip` at the top) in `dst`: hard links, else copies. */
async function linkTree(src: string, dst: string, skip: ReadonlySet<string>): Promise<void> {
  for await (const e of Deno.readDir(src)) {
    if (skip.has(e.name)) continue;
    const from = `${src}/${e.name}`;
    const to = `${dst}/${e.name}`;
    if (e.isSymlink) await Deno.symlink(await Deno.readLink(from), to);
    else if (e.isDirectory) {
      await Deno.mkdir(to);
      await linkTree(from, to, new Set());
    } else await Deno.link(from, to).catch(() => Deno.copyFile(from, to));
  }
}

async function syncFolder(path: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  try {
    using dir = await Deno.open(path, { read: true });
    await dir.sync();
  } catch { /* some file systems refuse to sync folders */ }
}
