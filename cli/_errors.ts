/**
 * How `ffwd` reports failures: one line on stderr starting with `error: `, exit code 1; usage
 * errors (what commander rejects) exit with 2; an interrupted command prints its own line and
 * exits with 130 (128 + SIGINT, what a shell reports for Ctrl-C); `--debug` prints the stack
 * instead of the line.
 *
 * @module
 */

import { CommanderError } from "@commander-js/extra-typings";

/** Exit codes of `ffwd`. */
export const EXIT_CODES = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const;

/**
 * Ends a command that a signal interrupted: {@linkcode reportError} prints its message as it is
 * (it says what was saved and how to continue, it is not a failure) and returns 130.
 *
 * @example
 * ```ts
 * import { Interrupted, reportError } from "./_errors.ts";
 * const said = "interrupted at step 7; resume with: ffwd train --resume runs/a";
 * const code = reportError(new Interrupted(said), false);
 * // stderr: interrupted at step 7; resume with: ffwd train --resume runs/a; code is 130
 * ```
 */
export class Interrupted extends Error {
  override name = "Interrupted";
}

/**
 * Library messages name options as the library spells them; on the command line the flag is
 * what the user typed. Messages of modules the CLI only calls (data readers) are reworded here.
 */
const FLAG_WORDING: readonly [RegExp, string][] = [
  [/\(labelColumn: ([^)]*)\)/g, "with --label-column ($1)"],
  [/\blabelColumn\b/g, "--label-column"],
  [/, or pass format$/, ""], // no flag names a data file's format: its name does
];

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
  if (error instanceof Interrupted) {
    writeErr(error.message);
    return EXIT_CODES.interrupted;
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

/** The error's message on one line (a message never spans lines on a terminal), in flags. */
function oneLine(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  for (const [pattern, flag] of FLAG_WORDING) message = message.replace(pattern, flag);
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
