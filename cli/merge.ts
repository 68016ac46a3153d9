/**
 * `ffwd merge --model <file> [--block NAME] --adapter <dir> [--adapter <dir> --weights 0.7,0.3]
 * [--combine linear|cat|svd --rank N] --out <file.safetensors|file.onnx> [--probe FILE] [--json]`:
 * merges one adapter, or several combined into one (see `workflows/combine.ts`), into the base
 * and writes it, checked for parity; prints where it and `parity.json` are and the verdict.
 *
 * @module
 */

import { Option } from "@commander-js/extra-typings";
import { type Adapter, loadAdapter } from "../adapters/adapter.ts";
import { combineAdapters } from "../workflows/combine.ts";
import type { Program } from "./_program.ts";
import { runExport } from "./_export_print.ts";
import { numbers, positiveInteger } from "./_numbers.ts";

/**
 * Adds `merge` to the program.
 *
 * @example
 * ```ts
 * import { Command } from "@commander-js/extra-typings";
 * import { registerMerge } from "./merge.ts";
 * const program = new Command().option("--debug");
 * registerMerge(program);
 * ```
 */
export function registerMerge(program: Program): void {
  const cmd = program
    .command("merge")
    .description("merge adapters into a base model (.safetensors or .onnx out), checked for parity")
    .requiredOption("--model <file>", "base model: .onnx, .safetensors or a TF.js model.json")
    .option("--block <name>", "block of a safetensors file with several")
    .option("--spec <file>", "block spec (JSON) for a safetensors file with no recognised layout")
    .option(
      "--adapter <dir>",
      "PEFT or MLX-LM adapter folder; repeat to combine several",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option(
      "--weights <list>",
      "comma-separated weights, one per adapter (default 1 each)",
      numbers,
    )
    .addOption(
      new Option("--combine <method>", "how several adapters combine")
        .choices(["linear", "cat", "svd"] as const),
    )
    .option("--rank <n>", "target rank of --combine svd", positiveInteger)
    .requiredOption("--out <file>", "file.safetensors or file.onnx; parity.json goes beside it")
    .option("--probe <file>", 'probe inputs (JSONL {"x": [...]}, CSV or safetensors)')
    .option("--json", "print the parity report as JSON")
    .action(async (options) => {
      const dirs = options.adapter;
      if (dirs.length === 0) cmd.error("error: required option '--adapter <dir>' not specified");
      const format = /\.safetensors$/i.test(options.out)
        ? "safetensors"
        : /\.onnx$/i.test(options.out)
        ? "onnx"
        : cmd.error(`error: --out must end in .safetensors or .onnx, got "${options.out}"`);
      const { weights, rank } = options;
      if (weights && weights.length !== dirs.length) {
        cmd.error(`error: --weights needs ${dirs.length} numbers, got "${weights.join(",")}"`);
      }
      if (options.combine === "svd" && rank === undefined) {
        cmd.error("error: --combine svd needs --rank");
      }
      const adapters: Adapter[] = [];
      for (const d of dirs) adapters.push(await loadAdapter(d));
      const lines: string[] = [];
      let adapter = adapters[0]!;
      let combine;
      if (adapters.length > 1 || options.combine || weights) {
        const method = options.combine ?? "linear";
        const c = combineAdapters(adapters, { method, weights, rank });
        adapter = c.adapter;
        const errors = Object.fromEntries(c.errors);
        combine = {
          method,
          adapters: adapters.map((a) => a.name),
          weights: weights ?? adapters.map(() => 1),
          ...(rank ? { rank } : {}),
          ...(c.errors.size ? { errors } : {}),
        };
        lines.push(
          `combined ${adapters.length} adapter${
            adapters.length === 1 ? "" : "s"
          } (${method}) into "${adapter.name}"`,
        );
        for (const [m, e] of c.errors) {
          lines.push(`  ${m}: rank ${rank}, relative Frobenius error ${e.toExponential(2)}`);
        }
      }
      await runExport(options, adapter, {
        out: options.out,
        format,
        ...(combine ? { combine } : {}),
      }, lines);
    });
}
