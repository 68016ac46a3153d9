/**
 * `ffwd train`: fine-tune adapters on a frozen base. Flags and a `--config` file cover the same
 * options (flags win); see `workflows/train_config.ts` for the file's fields.
 *
 * @module
 */

// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import { Option } from "@commander-js/extra-typings";
import { TRAIN_DEFAULTS as D } from "../workflows/train_options.ts";
import type { MetricLine } from "../src/train/trainer.ts";
import type { Program } from "./_program.ts";
import { writeErr } from "./_errors.ts";
import {
  fraction,
  labelColumn,
  nonNegativeInteger,
  nonNegativeNumber,
  positiveInteger,
  positiveNumber,
} from "./_numbers.ts";

/** Registers `ffwd train`. */
export function registerTrain(program: Program): void {
  program.command("train")
    .description("train LoRA / rsLoRA / DoRA adapters on a frozen base model")
    .option("--model <file>", "base model (.onnx, .safetensors, TF.js model.json)")
    .option("--block <name>", "block to adapt in a file with several")
    .option(
      "--output <name>",
      "ONNX: end the model at this value (another output, or the logits a final Softmax reads)",
    )
    .option("--data <file>", "training data (.jsonl, .csv, .safetensors)")
    .option("--out <dir>", "output folder for the adapter, metrics and report")
    .option("--config <file>", "training config (JSON); flags win over it")
    .option("--eval <file>", "evaluation data")
    .option("--eval-split <fraction>", "hold out this fraction of --data for evaluation", fraction)
    .option("--label-column <name>", "CSV label column (name or 0-based index)", labelColumn)
    .option("--rank <r>", `LoRA rank (default ${D.rank})`, positiveInteger)
    .option("--alpha <a>", `LoRA alpha (default ${D.alphaPerRank} × rank)`, positiveNumber)
    .option("--targets <names>", "all-linear, a comma list of module names, or /regex/")
    .option("--dora", "train DoRA adapters")
    .option("--rslora", "scale by alpha / sqrt(rank)")
    .addOption(
      new Option("--bias <which>", "also train biases (PEFT's bias)").choices(
        ["none", "all", "lora_only"] as const,
      ),
    )
    .option(
      "--modules-to-save <names>",
      "train these layers whole (comma list), saved in the adapter",
    )
    .option("--dropout <p>", `LoRA dropout (default ${D.dropout})`, fraction)
    .option("--epochs <n>", `epochs (default ${D.epochs})`, positiveInteger)
    .option("--max-steps <n>", "optimizer steps (default: epochs × batches)", positiveInteger)
    .option("--batch-size <n>", `batch size (default ${D.batchSize})`, positiveInteger)
    .option("--grad-accum <n>", "micro-batches per optimizer step", positiveInteger)
    .option("--lr <x>", `learning rate (default ${D.lr.toExponential()})`, nonNegativeNumber)
    .addOption(
      new Option("--schedule <name>", "learning-rate schedule").choices(
        ["constant", "linear", "cosine"] as const,
      ),
    )
    .option("--warmup-steps <n>", "linear warmup steps", nonNegativeInteger)
    .addOption(
      new Option("--optimizer <name>", `optimizer (default ${D.optimizer})`).choices(
        ["sgd", "momentum", "rmsprop", "adam", "adamw"] as const,
      ),
    )
    .option("--weight-decay <x>", "weight decay", nonNegativeNumber)
    .option("--clip-norm <x>", "global gradient-norm clipping", positiveNumber)
    .addOption(
      new Option("--loss <name>", `loss (default ${D.loss})`).choices(
        ["mse", "cross_entropy", "bce"] as const,
      ),
    )
    .option(
      "--seed <n>",
      `seed of initialisation, shuffling and dropout (default ${D.seed})`,
      nonNegativeInteger,
    )
    .option("--no-shuffle", "keep the data order")
    .option("--checkpoint-every <n>", "checkpoint every n steps", positiveInteger)
    .option(
      "--early-stopping <patience>",
      "stop after this many evaluations without improvement",
      positiveInteger,
    )
    .option("--init-adapter <dir>", "warm start from an adapter (ffwd, PEFT or MLX)")
    .option("--resume <dir>", "continue a run from its checkpoint")
    .option("--threads <n>", "onnxruntime threads (default: all cores)", positiveInteger)
    .option("--no-cache", "recompute the frozen prefix (layers before every adapter) each step")
    .option(
      "--cache-budget <MiB>",
      "memory the frozen-prefix cache may hold (default: a quarter of RAM)",
      positiveNumber,
    )
    .option("--json", "print the summary as JSON")
    .action(async (flags, cmd) => {
      // Imported here so other subcommands do not load onnxruntime at start-up.
      const { finetune } = await import("../workflows/finetune.ts");
      const { readTrainConfig } = await import("../workflows/train_config.ts");
      const { evalSets, resolveTrainOptions } = await import("../workflows/train_options.ts");
      const { loadDataset } = await import("../src/data/files.ts");
      const { rowWidth } = await import("../src/data/feeds.ts");
      const { openModel } = await import("../src/models/open.ts");
      const file = flags.config ? await readTrainConfig(flags.config) : {};
      const o = resolveTrainOptions(file, {
        model: flags.model,
        block: flags.block,
        data: flags.data,
        outDir: flags.out,
        evalFile: flags.eval,
        evalSplit: flags.evalSplit,
        labelColumn: flags.labelColumn,
        rank: flags.rank,
        alpha: flags.alpha,
        targets: flags.targets,
        dora: flags.dora,
        rslora: flags.rslora,
        bias: flags.bias,
        modulesToSave: flags.modulesToSave,
        dropout: flags.dropout,
        loss: flags.loss,
        epochs: flags.epochs,
        maxSteps: flags.maxSteps,
        batchSize: flags.batchSize,
        gradAccum: flags.gradAccum,
        lr: flags.lr,
        schedule: flags.schedule,
        warmupSteps: flags.warmupSteps,
        optimizer: flags.optimizer,
        optimizerOptions: flags.weightDecay === undefined
          ? undefined
          : { weightDecay: flags.weightDecay },
        clipNorm: flags.clipNorm,
        seed: flags.seed,
        // --no-shuffle makes commander default shuffle to true: only a given flag wins
        shuffle: cmd.getOptionValueSource("shuffle") === "cli" ? flags.shuffle : undefined,
        checkpointEvery: flags.checkpointEvery,
        earlyStopping: flags.earlyStopping === undefined
          ? undefined
          : { patience: flags.earlyStopping },
        initAdapter: flags.initAdapter,
        resume: flags.resume,
        threads: flags.threads,
        cache: cmd.getOptionValueSource("cache") === "cli" ? flags.cache : undefined,
        cacheBudget: flags.cacheBudget === undefined ? undefined : flags.cacheBudget * 2 ** 20,
        output: flags.output,
      });
      if (!o.model || !o.data || !o.outDir) {
        cmd.error("error: train needs --model, --data and --out (flags or --config)", {
          exitCode: 2,
          code: "ffwd.usage",
        });
        return;
      }
      const model = await openModel(o.model, { block: o.block, output: o.output });
      const { data, evalData } = await evalSets(
        await loadDataset(o.data, {
          width: model.inputs.length === 1 ? rowWidth(model.inputs[0]) : undefined,
          inputs: model.inputs,
          labelColumn: o.labelColumn,
        }),
        o,
        model.inputs,
      );
      const progress = new Progress(Math.ceil(data.rows / o.batchSize) * o.epochs, o.maxSteps);
      let result;
      try {
        result = await finetune(model, data, {
          ...o,
          evalData,
          onMetric: (line) => progress.update(line),
          onWarning: (message) => writeErr(`warning: ${message}`),
        });
      } finally {
        progress.stop();
      }
      const out = o.outDir;
      const summary = {
        out,
        steps: result.steps,
        last_loss: result.lastLoss,
        eval: result.eval ?? null,
        seconds: Math.round(result.seconds * 100) / 100,
        trainable_params: result.trainableParams,
        base_params: result.baseParams,
      };
      if (flags.json) console.log(JSON.stringify(summary, null, 2));
      else {
        const ev = result.eval
          ? `, eval loss ${result.eval.loss.toFixed(4)}${
            result.eval.accuracy !== undefined
              ? `, accuracy ${(100 * result.eval.accuracy).toFixed(2)}%`
              : ""
          }`
          : "";
        console.log(
          `trained ${result.steps} steps in ${summary.seconds}s: loss ${
            result.lastLoss.toFixed(4)
          }${ev}; ` +
            `${result.trainableParams.toLocaleString("en-US")} trainable parameters ` +
            `(${
              (100 * result.trainableParams / Math.max(1, result.baseParams)).toFixed(2)
            }% of the base)\n` +
            `adapter: ${out}/adapter_model.safetensors, metrics: ${out}/metrics.jsonl, report: ${out}/report.html`,
        );
      }
    });
}

/** A progress bar on a terminal, plain periodic lines otherwise. */
class Progress {
  #bar: cliProgress.SingleBar | null = null;
  #last = 0;
  #total: number;
  constructor(batches: number, maxSteps?: number) {
    this.#total = maxSteps ?? batches;
    if (Deno.stdout.isTerminal()) {
      this.#bar = new cliProgress.SingleBar({
        format: "step {value}/{total} [{bar}] loss {loss} | {sps} samples/s | ETA {eta_formatted}",
        hideCursor: true,
      }, cliProgress.Presets.shades_classic);
      this.#bar.start(this.#total, 0, { loss: "-", sps: "-" });
    }
  }
  update(line: MetricLine): void {
    if ("eval" in line) {
      const acc = line.accuracy !== undefined
        ? `, accuracy ${(100 * line.accuracy).toFixed(2)}%`
        : "";
      const msg = `epoch ${line.epoch}: eval loss ${line.loss.toFixed(4)}${acc}`;
      if (this.#bar) this.#bar.update({ loss: line.loss.toFixed(4) });
      console.error(msg);
      return;
    }
    if (this.#bar) {
      this.#bar.update(line.step, {
        loss: line.loss.toFixed(4),
        sps: Math.round(line.samples_per_s ?? 0),
      });
    } else if (performance.now() - this.#last > 2000 || line.step === this.#total) {
      this.#last = performance.now();
      console.error(
        `step ${line.step}/${this.#total} loss ${line.loss.toFixed(4)} lr ${
          line.lr.toExponential(2)
        } ${Math.round(line.samples_per_s ?? 0)} samples/s`,
      );
    }
  }
  stop(): void {
    this.#bar?.stop();
  }
}
