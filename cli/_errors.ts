/**
 * How `ffwd` reports failures: one line on stderr starting with `error: `, exit code 1; usage
 * errors (what commander rejects) exit with 2; `--debug` prints the stack instead of the line.
 *
 * @module
 */

import { CommanderError } from "@commander-js/extra-typings";

/** Exit codes of `ffwd`. */
export const EXIT_CODES = { ok: 0, failure: 1, usage: 2 } as const;

/**
 * Prints `error` on stderr and returns the process exit code for it.
 *
 * @example
 * ```ts
 * import { reportError } from "./_errors.ts";
 * const code = reportError(new RangeError("Cannot read \"x\": file is truncated"), false);
 * // stderr: error: Cannot read "x": file is truncated; code is 1
 * ```
 */
export function reportError(error: unknown, debug: boolean): number {
  if (isCommanderError(error)) {
    // commander has printed its own "error: ..." line (or the help) already
    if (error.code === "commander.helpDisplayed" || error.code === "commander.version") {
      return EXIT_CODES.ok;
    }
    return EXIT_CODES.usage;
  }
  if (debug) {
    writeErr(error instanceof Error && error.stack ? error.stack : String(error));
  } else {
    writeErr(`error: ${oneLine(error)}`);
  }
  return EXIT_CODES.failure;
}

function isCommanderError(error: unknown): error is CommanderError {
  return error instanceof CommanderError ||
    (error instanceof Error && "code" in error && typeof error.code === "string" &&
      error.code.startsWith("commander.") && "exitCode" in error);
}

/** The error's message on one line (a message never spans lines on a terminal). */
function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s*\r?\n\s*/g, " ").trim() || (error as Error)?.name || "unknown error";
}

/** Writes a line to stderr, synchronously so nothing is lost when the process exits. */
export function writeErr(line: string): void {
  writeAllSync(Deno.stderr, new TextEncoder().encode(line.endsWith("\n") ? line : `${line}\n`));
}

/** Writes text to stdout, synchronously and completely. */
export function writeOut(text: string): void {
  writeAllSync(Deno.stdout, new TextEncoder().encode(text));
}

function writeAllSync(to: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += to.writeSync(bytes.subarray(done));
}
