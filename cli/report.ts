/**
 * `ffwd report <run-dir> [--scale auto|linear|log] [--stdout]`: (re)writes `report.html` in a
 * training run's folder from its `metrics.jsonl` (and `summary.json`, `adapter_config.json`,
 * `ffwd_training.json`, `confusion.json` when present) and prints the file's path.
 *
 * @module
 */

import { Option } from "@commander-js/extra-typings";
import { renderReport, writeReport } from "../report/html.ts";
import { writeOut } from "./_errors.ts";
import type { Program } from "./_program.ts";

/**
 * Adds `report <run-dir>` to the program.
 *
 * @example
 * ```ts
 * import { Command } from "@commander-js/extra-typings";
 * import { registerReport } from "./report.ts";
 * const program = new Command().option("--debug");
 * registerReport(program);
 * ```
 */
export function registerReport(program: Program): void {
  program
    .command("report")
    .description("write report.html (charts, adapter, parameters) in a training run's folder")
    .argument("<run-dir>", "a folder written by `ffwd train` (holding metrics.jsonl)")
    .addOption(
      new Option("--scale <scale>", "y scale of the loss charts (auto: log when it spans a decade)")
        .choices(["auto", "linear", "log"] as const)
        .default("auto" as const),
    )
    .option("--stdout", "print the HTML instead of writing report.html")
    .action(async (runDir, options) => {
      if (options.stdout) {
        writeOut(await renderReport(runDir, { scale: options.scale }));
      } else {
        writeOut(`${await writeReport(runDir, { scale: options.scale })}\n`);
      }
    });
}
