/**
 * Path arithmetic without touching the disk, for the checks that keep file access inside a
 * folder (ONNX external data, the server's adapter folder).
 *
 * @module
 */

/**
 * The absolute, normalised form of `path` (`.`, `..` and repeated slashes removed), relative
 * paths taken from the working directory.
 *
 * @example
 * ```ts
 * import { absolutePath } from "./paths.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(absolutePath("/models/a/../mlp.onnx"), "/models/mlp.onnx");
 * ```
 */
export function absolutePath(path: string): string {
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const out: string[] = [];
  for (const part of abs.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

/**
 * Whether the absolute, normalised `path` lies strictly inside the folder `root`.
 *
 * @example
 * ```ts
 * import { isInside } from "./paths.ts";
 * import { ok, strictEqual } from "node:assert/strict";
 * ok(isInside("/srv/adapters/a", "/srv/adapters"));
 * strictEqual(isInside("/srv/adapters2/a", "/srv/adapters"), false);
 * ```
 */
export function isInside(path: string, root: string): boolean {
  return path.startsWith(root.endsWith("/") ? root : `${root}/`) && path.length > root.length + 1;
}
