/**
 * File-system errors with a message that names the file and says what to do, keeping the error's
 * class so callers can still test for `Deno.errors.NotFound` and friends.
 *
 * @module
 */

/**
 * Rewraps an error from opening or reading a file; `where` is the sentence start, such as
 * `Cannot read "model.safetensors"`.
 *
 * @example
 * ```ts
 * import { fileError } from "./file_errors.ts";
 * import { rejects } from "node:assert/strict";
 * const read = (path: string) =>
 *   Deno.readFile(path).catch((e) => {
 *     throw fileError(e, `Cannot read "${path}"`);
 *   });
 * await rejects(read("/no/such/file"), {
 *   name: "NotFound",
 *   message: 'Cannot read "/no/such/file": no such file',
 * });
 * ```
 */
export function fileError(error: unknown, where: string): Error {
  if (error instanceof Deno.errors.NotFound) {
    return new Deno.errors.NotFound(`${where}: no such file`, { cause: error });
  }
  if (error instanceof Deno.errors.NotCapable) {
    return new Deno.errors.NotCapable(`${where}: no read permission (run with --allow-read)`, {
      cause: error,
    });
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new Deno.errors.PermissionDenied(`${where}: permission denied by the system`, {
      cause: error,
    });
  }
  return new Error(`${where}: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
  });
}
