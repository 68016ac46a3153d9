/**
 * `ffwd bench train`: the LoRA training-step benchmark (see `bench/train_step.ts`), printed as a
 * table or as JSON (`{"ms_per_step", "gflops", "matmul_gflops", "ratio", "dims", "batch",
 * "rank", …}`) for comparison across commits.
 *
 * @module
 */

import { positiveInteger, positiveIntegers } from "./_numbers.ts";
import type { Program } from "./_program.ts";

/** Registers `ffwd bench`. */
export function registerBench(program: Program): void {
  const bench = program.command("bench").description("measure ffwd on this machine");
  bench.command("train")
    .description("ms per LoRA training step and the base-GEMM rate, beside a plain 1024³ MatMul")
    .option(
      "--dims <list>",
      "layer widths, e.g. 1024,4096,1024",
      positiveIntegers,
      [1024, 4096, 1024],
    )
    .option("--batch <n>", "batch size", positiveInteger, 256)
    .option("--rank <r>", "LoRA rank", positiveInteger, 16)
    .option("--steps <n>", "timed steps", positiveInteger, 30)
    .option("--threads <n>", "onnxruntime threads (default: all cores)", positiveInteger)
    .option("--json", "print JSON")
    .action(async (o) => {
      const { benchTrain } = await import("../bench/train_step.ts"); // loads onnxruntime
      const r = await benchTrain({
        dims: o.dims,
        batch: o.batch,
        rank: o.rank,
        steps: o.steps,
        threads: o.threads,
      });
      if (o.json) {
        console.log(JSON.stringify(r));
        return;
      }
      console.log(
        [
          `dims ${r.dims.join(",")}, batch ${r.batch}, rank ${r.rank}`,
          `  step            ${r.ms_per_step.toFixed(2)} ms (optimizer ${
            r.optimizer_ms.toFixed(2)
          } ms, ${(100 * r.optimizer_fraction).toFixed(1)}%)`,
          `  base GEMMs      ${r.gflops.toFixed(1)} GFLOP/s`,
          `  1024³ MatMul    ${r.matmul_gflops.toFixed(1)} GFLOP/s`,
          `  ratio           ${(100 * r.ratio).toFixed(1)}%`,
          `  compile         ${r.compile_ms.toFixed(0)} ms`,
        ].join("\n"),
      );
    });
}
