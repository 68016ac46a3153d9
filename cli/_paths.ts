/**
 * The paths commands take, checked before anything is read or written: a model flag names a file
 * (or a TF.js model's folder), and the output of `merge` and `export` is a file (`finetune()`
 * checks `train`'s output folder). A missing file is left to the opener, which says so; the
 * messages here name the flag and what would work.
 *
 * @module
 */

const MODEL_FILE = /\.(onnx|safetensors)$|(^|\/)model\.json$/i;

/**
 * Refuses a model path that is a folder, naming the model files in it, unless it is a TF.js
 * model's folder (it holds `model.json`).
 *
 * @example
 * ```ts
 * import { rejects } from "node:assert/strict";
 * import { checkModelFile } from "./_paths.ts";
 * const folder = "fixtures/hf/fc_mlp";
 * await rejects(() => checkModelFile(folder), /fixtures\/hf\/fc_mlp\/model\.safetensors/);
 * await checkModelFile("fixtures/tfjs/dense"); // a TF.js model's folder: it holds model.json
 * ```
 */
export async function checkModelFile(path: string, flag = "--model"): Promise<void> {
  if (!(await stat(path))?.isDirectory || (await stat(`${path}/model.json`))?.isFile) return;
  const files: string[] = [];
  for await (const e of Deno.readDir(path)) {
    if (e.isFile && MODEL_FILE.test(e.name)) files.push(`${path.replace(/\/+$/, "")}/${e.name}`);
  }
  // model.* first: the file a folder of a model is named after.
  files.sort((a, b) =>
    Number(!/\/model\./.test(a)) - Number(!/\/model\./.test(b)) || (a < b ? -1 : 1)
  );
  const hint = files.length
    ? `give the model file in it: ${files.slice(0, 3).join(" or ")}`
    : "give a .onnx or .safetensors file, or a TF.js model.json";
  throw new TypeError(
    `Cannot open ${flag} "${path}": it is a folder, and not a TF.js model's (no model.json); ` +
      hint,
  );
}

/**
 * Refuses an output file that is an existing folder.
 *
 * @example
 * ```ts
 * import { rejects } from "node:assert/strict";
 * import { checkOutFile } from "./_paths.ts";
 * await rejects(() => checkOutFile("fixtures", ".onnx"), /fixtures\/model\.onnx/);
 * ```
 */
export async function checkOutFile(path: string, extension: string, flag = "--out"): Promise<void> {
  if (!(await stat(path))?.isDirectory) return;
  throw new TypeError(
    `Cannot write to ${flag} "${path}": it is a folder; give the file to write, such as ` +
      `"${trim(path)}/model${extension}"`,
  );
}

/**
 * Makes the folder `out` is to be written in (as `ffwd train` makes its run folder) and returns
 * an undo: a command that then fails removes the folders it made, if they are still empty, so a
 * failing command leaves no output folder behind.
 *
 * @example
 * ```ts
 * import { ok } from "node:assert/strict";
 * import { makeOutFolder } from "./_paths.ts";
 * const dir = await Deno.makeTempDir();
 * const undo = await makeOutFolder(`${dir}/a/b/merged.onnx`);
 * ok((await Deno.stat(`${dir}/a/b`)).isDirectory);
 * await undo();
 * ok(!(await Deno.stat(`${dir}/a`).then(() => true, () => false)));
 * ```
 */
export async function makeOutFolder(out: string): Promise<() => Promise<void>> {
  const path = trim(out);
  const parent = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
  if (!parent) return async () => {};
  let top: string | undefined; // the outermost folder this call creates
  for (
    let p = parent;
    p && !(await stat(p));
    p = p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : ""
  ) {
    top = p;
  }
  if (!top) return async () => {};
  await Deno.mkdir(parent, { recursive: true });
  const made = top;
  return async () => {
    if (await holdsFiles(made)) return;
    await Deno.remove(made, { recursive: true }).catch(() => {});
  };
}

async function holdsFiles(dir: string): Promise<boolean> {
  for await (const e of Deno.readDir(dir)) {
    if (!e.isDirectory || await holdsFiles(`${dir}/${e.name}`)) return true;
  }
  return false;
}

async function stat(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return;
    throw e;
  }
}

const trim = (path: string) => path.replace(/(.)\/+$/, "$1");
