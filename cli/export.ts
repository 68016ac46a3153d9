/**
 * `ffwd export --model <file> [--block NAME] --adapter <dir> --format onnx|safetensors
 * [--mode merged|adapter-inputs] --out <file> [--probe FILE] [--json]`: writes an adapted model,
 * checked for parity (see `workflows/export.ts`), and prints where it and its parity report are and
 * the verdict; `--json` prints the report. A failed check exits 1 and leaves no file.
 *
 * Merged safetensors of a safetensors checkpoint with no `--block`, `--spec` or `--probe` is a
 * whole-checkpoint merge, as in `ffwd merge` (`workflows/merge_checkpoint.ts`).
 *
 * @module
 */

import { Option } from "@commander-js/extra-typings";
import { loadAdapter } from "../adapters/adapter.ts";
import type { Program } from "./_program.ts";
import { checkModelFile, checkOutFile, makeOutFolder } from "./_paths.ts";
import { checkpoints, printCheckpoint } from "./_checkpoint_print.ts";

/**
 * Adds `export` to the program.
 *
 * @example
 * ```ts
 * import { Command } from "@commander-js/extra-typings";
 * import { registerExport } from "./export.ts";
 * const program = new Command().option("--debug");
 * registerExport(program);
 * ```
 */
export function registerExport(program: Program): void {
  program
    .command("export")
    .description("export a base with an adapter as ONNX or safetensors, checked for parity")
    .requiredOption("--model <file>", "base model: .onnx, .safetensors or a TF.js model.json")
    .option("--block <name>", "block of a safetensors file with several")
    .option("--spec <file>", "block spec (JSON) for a safetensors file with no recognised layout")
    .requiredOption("--adapter <dir>", "PEFT or MLX-LM adapter folder")
    .addOption(
      new Option("--format <format>", "output format (default: the --out file's extension)")
        .choices(["onnx", "safetensors"] as const),
    )
    .addOption(
      new Option("--mode <mode>", "merged weights, or A and B as graph inputs (ONNX)")
        .choices(["merged", "adapter-inputs"] as const).default("merged" as const),
    )
    .requiredOption(
      "--out <file>",
      "file to write; its parity report, <file>.parity.json, goes beside it",
    )
    .option("--probe <file>", 'probe inputs (JSONL {"x": [...]}, CSV or safetensors)')
    .option("--json", "print the parity report as JSON")
    .action(async (options, cmd) => {
      const format = exportFormat(options.out, options.format);
      if (typeof format !== "string") {
        cmd.error(`error: ${format.error}`, { exitCode: 2, code: "ffwd.usage" });
        return;
      }
      const { isCheckpoint, mergeCheckpoint } = await checkpoints();
      // Merged safetensors of a safetensors checkpoint, with no block chosen: merged whole, as
      // `ffwd merge` does (every targeted weight, found by key).
      const whole = format === "safetensors" && options.mode === "merged" && !options.block &&
        !options.spec && !options.probe && await isCheckpoint(options.model);
      if (!whole) await checkModelFile(options.model);
      await checkOutFile(options.out, `.${format}`);
      const adapter = await loadAdapter(options.adapter);
      // The output's folder is made as ffwd train makes its run folder, and removed on failure.
      const undo = await makeOutFolder(options.out);
      try {
        if (whole) {
          const out = options.out;
          await printCheckpoint(
            () => mergeCheckpoint(options.model, adapter, { out }),
            [],
            options.json,
          );
          return;
        }
        // Imported here, so that `ffwd --help` and `inspect` never load onnxruntime or TF.js.
        const { runExport } = await import("./_export_print.ts");
        await runExport(options, adapter, {
          out: options.out,
          format,
          mode: options.mode,
        });
      } catch (e) {
        await undo();
        throw e;
      }
    });
}

/**
 * The export's format: `--format` when given, else the `--out` file's extension; a format that
 * contradicts the extension is refused (a `.onnx` file holding safetensors helps nobody).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { exportFormat } from "./export.ts";
 * deepStrictEqual(exportFormat("out/merged.onnx", undefined), "onnx");
 * deepStrictEqual(typeof exportFormat("merged.onnx", "safetensors"), "object");
 * ```
 */
export function exportFormat(
  out: string,
  given: "onnx" | "safetensors" | undefined,
): "onnx" | "safetensors" | { error: string } {
  const ext = /\.(onnx|safetensors)$/i.exec(out)?.[1]?.toLowerCase() as
    | "onnx"
    | "safetensors"
    | undefined;
  if (given && ext && given !== ext) {
    return {
      error: `--format ${given} does not match --out "${out}" (a .${ext} file); ` +
        `name the file .${given} or leave --format out`,
    };
  }
  const format = given ?? ext;
  if (!format) {
    return {
      error: `cannot tell the format of --out "${out}": name it .onnx or .safetensors, ` +
        "or give --format",
    };
  }
  return format;
}
