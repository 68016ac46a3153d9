/**
 * `ffwd bench train`: the LoRA training-step benchmark, printed as a table or as JSON
 * (`{"ms_per_step", "gflops", "matmul_gflops", "ratio", "dims", "batch", "rank", …}`) for
 * comparison across commits. By default it times a synthetic MLP (`bench/train_step.ts`); with
 * `--model` and `--data` it times the step `ffwd train` compiles for a real model
 * (`bench/train_model.ts`), and the JSON adds `model`, `targets`, `cached_prefix`, `cache_ms`,
 * `cache_mb`, `gflop_per_step`, `rows`, `best_ms` and `median_ms` (`dims` lists each adapted
 * layer's `[in, out]`).
 *
 * @module
 */

import { nonNegativeInteger, positiveInteger, positiveIntegers } from "./_numbers.ts";
import type { Program } from "./_program.ts";

/** Registers `ffwd bench`. */
export function registerBench(program: Program): void {
  const bench = program.command("bench").description("measure ffwd on this machine");
  bench.command("train")
    .description(
      "ms per LoRA training step and its GEMM rate, beside a plain 1024³ MatMul: a synthetic MLP, or a model with --model and --data",
    )
    .option(
      "--dims <list>",
      "synthetic MLP's layer widths, e.g. 1024,4096,1024",
      positiveIntegers,
      [1024, 4096, 1024],
    )
    .option("--model <file>", "time this model's step instead (.onnx, .safetensors, TF.js)")
    .option("--data <file>", "with --model: training data (.jsonl, .safetensors)")
    .option("--targets <names>", "with --model: all-linear (default), a comma list, or /regex/")
    .option("--output <name>", "with --model (ONNX): end the model at this value")
    .option("--no-cache", "with --model: recompute the frozen prefix every step")
    .option("--batch <n>", "batch size", positiveInteger, 256)
    .option("--rank <r>", "LoRA rank", positiveInteger, 16)
    .option("--steps <n>", "timed steps", positiveInteger, 30)
    .option("--warmup <n>", "untimed steps before timing", nonNegativeInteger, 5)
    .option("--threads <n>", "onnxruntime threads (default: all cores)", positiveInteger)
    .option("--json", "print JSON")
    .action(async (o, cmd) => {
      const given = (name: string) => cmd.getOptionValueSource(name) === "cli";
      const usage = (message: string) =>
        cmd.error(`error: ${message}`, { exitCode: 2, code: "ffwd.usage" });
      const common = {
        batch: o.batch,
        rank: o.rank,
        steps: o.steps,
        warmup: o.warmup,
        threads: o.threads,
      };
      if (o.model === undefined) {
        const modelOnly = ["data", "targets", "output", "cache"].filter(given);
        if (modelOnly.length) {
          return usage(
            `bench train: ${modelOnly.map(flag).join(", ")} only apply with --model and --data`,
          );
        }
        const { benchTrain } = await import("../bench/train_step.ts"); // loads onnxruntime
        const r = await benchTrain({ dims: o.dims, ...common });
        if (o.json) return console.log(JSON.stringify(r));
        return console.log(
          [
            `dims ${r.dims.join(",")}, batch ${r.batch}, rank ${r.rank}`,
            ...stepLines(r, "base GEMMs"),
          ].join("\n"),
        );
      }
      if (given("dims")) return usage("bench train: --dims is for the synthetic MLP, not --model");
      if (o.data === undefined) return usage("bench train --model needs --data");
      const { benchTrainModel } = await import("../bench/train_model.ts");
      const r = await benchTrainModel({
        model: o.model,
        data: o.data,
        targets: o.targets,
        output: o.output,
        cache: o.cache,
        ...common,
      });
      if (o.json) return console.log(JSON.stringify(r));
      const prefix = r.cached_prefix
        ? `cached once, ${r.cache_mb} MiB in ${r.cache_ms.toFixed(0)} ms`
        : "none cached (recomputed every step)";
      console.log(
        [
          `${r.model}: ${r.rows} rows, batch ${r.batch}, rank ${r.rank} on ${r.targets.length} layers (${
            r.targets.join(", ")
          })`,
          `  frozen prefix   ${prefix}`,
          `  GEMM work       ${r.gflop_per_step} GFLOP per step`,
          ...stepLines(r, "GEMM rate"),
          `  best, median    ${r.best_ms.toFixed(2)} ms, ${r.median_ms.toFixed(2)} ms`,
        ].join("\n"),
      );
    });
}

/** The lines both kinds of result share; `rate` names what the GEMM rate counts. */
function stepLines(r: {
  ms_per_step: number;
  optimizer_ms: number;
  optimizer_fraction: number;
  gflops: number;
  matmul_gflops: number;
  ratio: number;
  compile_ms: number;
}, rate: string): string[] {
  return [
    `  step            ${r.ms_per_step.toFixed(2)} ms (optimizer ${r.optimizer_ms.toFixed(2)} ms, ${
      (100 * r.optimizer_fraction).toFixed(1)
    }%)`,
    `  ${rate.padEnd(16)}${r.gflops.toFixed(1)} GFLOP/s`,
    `  1024³ MatMul    ${r.matmul_gflops.toFixed(1)} GFLOP/s`,
    `  ratio           ${(100 * r.ratio).toFixed(1)}%`,
    `  compile         ${r.compile_ms.toFixed(0)} ms`,
  ];
}

function flag(option: string): string {
  return option === "cache" ? "--no-cache" : `--${option}`;
}
