/**
 * `ffwd init --spec spec.json --out model.safetensors [--seed N] [--json]`: writes a new model
 * described by a block spec (with each layer's `in_features` and `out_features`), initialised as
 * PyTorch initialises `torch.nn.Linear`, from a seed; `ffwd train --full` trains it from scratch.
 * See `workflows/init_model.ts`.
 *
 * @module
 */

import type { Program } from "./_program.ts";
import { writeErr } from "./_errors.ts";
import { nonNegativeInteger } from "./_numbers.ts";
import { checkOutFile } from "./_paths.ts";

/**
 * Adds `init` to the program.
 *
 * @example
 * ```ts
 * import { Command } from "@commander-js/extra-typings";
 * import { strictEqual } from "node:assert/strict";
 * import { registerInit } from "./init.ts";
 * const program = new Command().option("--debug");
 * registerInit(program);
 * strictEqual(program.commands[0]!.name(), "init");
 * ```
 */
export function registerInit(program: Program): void {
  program.command("init")
    .description("write a new model from a block spec, initialised as torch.nn.Linear from a seed")
    .requiredOption(
      "--spec <file>",
      "block spec (JSON) with each layer's in_features and out_features",
    )
    .requiredOption("--out <file>", "the model file to write (.safetensors)")
    .option("--seed <n>", "seed of the initial values (default 0)", nonNegativeInteger)
    .option("--json", "print what was written as JSON")
    .action(async (flags, cmd) => {
      if (!flags.out.toLowerCase().endsWith(".safetensors")) {
        cmd.error(`error: --out "${flags.out}" must name a .safetensors file`, {
          exitCode: 2,
          code: "ffwd.usage",
        });
        return;
      }
      await checkOutFile(flags.out, ".safetensors");
      const { initModel } = await import("../workflows/init_model.ts");
      const r = await initModel(flags.spec, flags.out, { seed: flags.seed });
      if (flags.json) {
        console.log(JSON.stringify(
          {
            out: r.path,
            parameters: r.parameters,
            seed: r.seed,
            layers: r.layers.map((l) => ({
              name: l.name,
              in_features: l.inFeatures,
              out_features: l.outFeatures,
            })),
            opens_with: r.opensWith,
            config: r.config ?? null,
          },
          null,
          2,
        ));
        return;
      }
      const layers = r.layers.map((l) =>
        `${l.name} [${l.inFeatures} → ${l.outFeatures}]${
          r.form === "sequential" && l.activation ? ` ${l.activation}` : ""
        }`
      );
      console.log(
        `wrote ${r.path}: ${r.parameters.toLocaleString("en-US")} parameters (${
          layers.join(", ")
        }), seed ${r.seed}`,
      );
      if (r.opensWith === "config") console.log(`wrote ${r.config}: the activation`);
      if (r.opensWith === "spec") {
        writeErr(
          "note: ffwd recognises this file only with its spec (ffwd export --spec; library: " +
            "openModel(path, { spec })); for ffwd train, name the layers as a layout ffwd " +
            "recognises does (fc1, fc2, …: see ffwd inspect)",
        );
      }
    });
}
