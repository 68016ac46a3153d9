/**
 * `ffwd merge --model <file> [--block NAME] --adapter <dir> [--adapter <dir> --weights 0.7,0.3]
 * [--combine linear|cat|svd --rank N] --out <file.safetensors|file.onnx> [--probe FILE] [--json]`:
 * merges one adapter, or several combined into one (see `workflows/combine.ts`), into the base
 * and writes it, checked for parity; prints where it and its parity report are and the verdict.
 *
 * A safetensors checkpoint (a file, a sharded `.index.json`, or the folder holding either) merged
 * into safetensors, with no `--block`, `--spec` or `--probe`, is merged whole: every weight the
 * adapter targets, found by key (`workflows/merge_checkpoint.ts`), checked weight by weight.
 *
 * @module
 */

import { Option } from "@commander-js/extra-typings";
import { type Adapter, loadAdapter } from "../adapters/adapter.ts";
import { combineAdapters } from "../workflows/combine.ts";
import type { Program } from "./_program.ts";
import { nonNegativeInteger, numbers, positiveInteger } from "./_numbers.ts";
import { checkOutFile, makeOutFolder } from "./_paths.ts";
import { checkpoints, printCheckpoint } from "./_checkpoint_print.ts";

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
    .requiredOption(
      "--out <file>",
      "file.safetensors or file.onnx (a checkpoint: also file.index.json or a folder); the parity report <file>.parity.json goes beside it",
    )
    .option("--probe <file>", 'probe inputs (JSONL {"x": [...]}, CSV or safetensors)')
    .option(
      "--seed <n>",
      "seed of the rows checked in a whole-checkpoint merge",
      nonNegativeInteger,
    )
    .option("--json", "print the parity report as JSON")
    .action(async (options) => {
      const dirs = options.adapter;
      if (dirs.length === 0) cmd.error("error: required option '--adapter <dir>' not specified");
      const { isCheckpoint, mergeCheckpoint } = await checkpoints();
      const whole = !options.block && !options.spec && !options.probe &&
        !/\.onnx$/i.test(options.out) && await isCheckpoint(options.model);
      if (
        whole && !/\.(safetensors|index\.json)$/i.test(options.out) && !options.out.endsWith("/") &&
        !(await Deno.stat(options.out).then((i) => i.isDirectory, () => false))
      ) {
        cmd.error(
          `error: --out must end in .safetensors, .index.json or .onnx, or name a folder, got "${options.out}"`,
        );
      }
      const format = whole || /\.safetensors$/i.test(options.out)
        ? "safetensors"
        : /\.onnx$/i.test(options.out)
        ? "onnx"
        : cmd.error(`error: --out must end in .safetensors or .onnx, got "${options.out}"`);
      if (!whole) await checkOutFile(options.out, `.${format}`);
      const { weights, rank } = options;
      if (weights && weights.length !== dirs.length) {
        cmd.error(`error: --weights needs ${dirs.length} numbers, got "${weights.join(",")}"`);
      }
      if (options.combine === "svd" && rank === undefined) {
        cmd.error("error: --combine svd needs --rank");
      }
      const adapters: Adapter[] = [];
      for (const d of dirs) adapters.push(await loadAdapter(d));
      // The output's folder is made as ffwd train makes its run folder, and removed on failure.
      const undo = await makeOutFolder(options.out);
      try {
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
        if (whole) {
          const opts = {
            out: options.out,
            seed: options.seed,
            ...(combine ? { combine, parts: adapters } : {}),
          };
          await printCheckpoint(
            () => mergeCheckpoint(options.model, adapter, opts),
            lines,
            options.json,
          );
          return;
        }
        const { runExport } = await import("./_export_print.ts");
        await runExport(options, adapter, {
          out: options.out,
          format,
          ...(combine ? { combine, parts: adapters } : {}),
        }, lines);
      } catch (e) {
        await undo();
        throw e;
      }
    });
}
