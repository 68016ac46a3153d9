/**
 * The `ffwd` command line. It parses arguments, calls the library and prints; it does no math.
 *
 * Subcommands live one per file and register themselves through the explicit list below.
 * Errors are one `error: ...` line on stderr with exit code 1, usage errors exit with 2, and
 * `--debug` shows the stack.
 *
 * @example
 * ```sh
 * deno task ffwd inspect model.safetensors --json
 * ```
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import denoJson from "../deno.json" with { type: "json" };
import { reportError, writeErr, writeOut } from "./_errors.ts";
import type { Program, Register } from "./_program.ts";
import { registerInspect } from "./inspect.ts";
import { registerInit } from "./init.ts";
import { registerTrain } from "./train.ts";
import { registerBench } from "./bench.ts";
import { registerPredict } from "./predict.ts";
import { registerServe } from "./serve.ts";
import { registerReport } from "./report.ts";
import { registerMerge } from "./merge.ts";
import { registerExport } from "./export.ts";

/** Every subcommand, in the order `ffwd --help` lists them. */
const SUBCOMMANDS: readonly Register[] = [
  registerInspect,
  registerInit,
  registerTrain,
  registerPredict,
  registerServe,
  registerMerge,
  registerExport,
  registerReport,
  registerBench,
];

/**
 * Builds the `ffwd` program with all its subcommands. Commander errors are thrown (as
 * `CommanderError`) instead of exiting, so {@linkcode main} decides the exit code.
 *
 * @example
 * ```ts
 * import { buildProgram } from "./main.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const program = buildProgram();
 * deepStrictEqual(
 *   program.commands.map((c) => c.name()),
 *   ["inspect", "init", "train", "predict", "serve", "merge", "export", "report", "bench"],
 * );
 * ```
 */
export function buildProgram(): Program {
  const program: Program = new Command()
    .name("ffwd")
    .description("Fine-tune pretrained feedforward blocks with LoRA adapters.")
    .version(denoJson.version)
    .option("--debug", "show the stack trace of errors")
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut, writeErr: (s) => writeErr(s) });
  for (const register of SUBCOMMANDS) register(program);
  return program;
}

/**
 * Runs `ffwd` with `args` (without the program name) and returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./main.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(await main(["--version"]), 0);
 * ```
 */
export async function main(args: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...args], { from: "user" });
    return 0;
  } catch (error) {
    return reportError(error, program.opts().debug === true || args.includes("--debug"));
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
