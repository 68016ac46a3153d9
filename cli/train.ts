/**
 * `ffwd train`: fine-tune adapters on a frozen base. Flags and a `--config` file cover the same
 * options (flags win); see `workflows/train_config.ts` for the file's fields.
 *
 * @module
 */

// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import { Option } from "@commander-js/extra-typings";
import type { TrainConfig } from "../workflows/train_config.ts";
import type { MetricLine } from "../src/train/trainer.ts";
import type { Program } from "./_program.ts";
import { writeErr } from "./_errors.ts";

const num = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new TypeError(`Invalid number "${v}"`);
  return n;
};
const int = (v: string) => {
  const n = num(v);
  if (!Number.isInteger(n)) throw new TypeError(`Invalid integer "${v}"`);
  return n;
};

/** Registers `ffwd train`. */
export function registerTrain(program: Program): void {
  program.command("train")
    .description("train LoRA / rsLoRA / DoRA adapters on a frozen base model")
    .option("--model <file>", "base model (.onnx, .safetensors, TF.js model.json)")
    .option("--block <name>", "block to adapt in a file with several")
    .option("--data <file>", "training data (.jsonl, .csv, .safetensors)")
    .option("--out <dir>", "output folder for the adapter, metrics and report")
    .option("--config <file>", "training config (JSON); flags win over it")
    .option("--eval <file>", "evaluation data")
    .option("--eval-split <fraction>", "hold out this fraction of --data for evaluation", num)
    .option("--label-column <name>", "CSV label column (name or 0-based index)")
    .option("--rank <r>", "LoRA rank (default 8)", int)
    .option("--alpha <a>", "LoRA alpha (default 2 × rank)", num)
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
    .option("--dropout <p>", "LoRA dropout (default 0)", num)
    .option("--epochs <n>", "epochs (default 1)", int)
    .option("--max-steps <n>", "optimizer steps (default: epochs × batches)", int)
    .option("--batch-size <n>", "batch size (default 32)", int)
    .option("--grad-accum <n>", "micro-batches per optimizer step", int)
    .option("--lr <x>", "learning rate (default 1e-3)", num)
    .addOption(
      new Option("--schedule <name>", "learning-rate schedule").choices(
        ["constant", "linear", "cosine"] as const,
      ),
    )
    .option("--warmup-steps <n>", "linear warmup steps", int)
    .addOption(
      new Option("--optimizer <name>", "optimizer (default adamw)").choices(
        ["sgd", "momentum", "rmsprop", "adam", "adamw"] as const,
      ),
    )
    .option("--weight-decay <x>", "weight decay", num)
    .option("--clip-norm <x>", "global gradient-norm clipping", num)
    .addOption(
      new Option("--loss <name>", "loss (default cross_entropy)").choices(
        ["mse", "cross_entropy", "bce"] as const,
      ),
    )
    .option("--seed <n>", "seed of initialisation, shuffling and dropout (default 0)", int)
    .option("--no-shuffle", "keep the data order")
    .option("--checkpoint-every <n>", "checkpoint every n steps", int)
    .option(
      "--early-stopping <patience>",
      "stop after this many evaluations without improvement",
      int,
    )
    .option("--init-adapter <dir>", "warm start from an adapter (ffwd, PEFT or MLX)")
    .option("--resume <dir>", "continue a run from its checkpoint")
    .option("--threads <n>", "onnxruntime threads (default: all cores)", int)
    .option("--json", "print the summary as JSON")
    .action(async (flags, cmd) => {
      // Imported here so other subcommands do not load onnxruntime at start-up.
      const { defaultPeftConfig } = await import("../adapters/config.ts");
      const { finetune } = await import("../workflows/finetune.ts");
      const { readTrainConfig } = await import("../workflows/train_config.ts");
      const { loadDataset } = await import("../src/data/files.ts");
      const { splitDataset } = await import("../src/data/dataset.ts");
      const { openModel } = await import("../src/models/open.ts");
      const { Rng } = await import("../src/rng.ts");
      const file: TrainConfig = flags.config ? await readTrainConfig(flags.config) : {};
      const given = (name: string) => cmd.getOptionValueSource(name) === "cli";
      const pick = <T>(flag: T | undefined, key: keyof TrainConfig): T | undefined =>
        flag !== undefined ? flag : (file[key] as T | undefined);
      const modelPath = pick(flags.model, "model");
      const dataPath = pick(flags.data, "data");
      const out = pick(flags.out, "out");
      if (!modelPath || !dataPath || !out) {
        cmd.error("error: train needs --model, --data and --out (flags or --config)", {
          exitCode: 2,
          code: "ffwd.usage",
        });
        return;
      }
      const model = await openModel(modelPath, { block: pick(flags.block, "block") });
      const width = model.inputs[0]?.shape.at(-1);
      const labelColumn = pick(flags.labelColumn, "label_column");
      let data = await loadDataset(dataPath, {
        width: typeof width === "number" ? width : undefined,
        labelColumn,
      });
      const seed = pick(flags.seed, "seed") ?? 0;
      let evalData = flags.eval ?? file.eval
        ? await loadDataset((flags.eval ?? file.eval)!, { width: data.width, labelColumn })
        : undefined;
      const split = pick(flags.evalSplit, "eval_split");
      if (!evalData && split) {
        [data, evalData] = splitDataset(data, split, new Rng(seed).permutation(data.rows));
      }
      const rank = pick(flags.rank, "rank") ?? 8;
      const targetsRaw = pick<string | string[]>(flags.targets, "targets") ?? "all-linear";
      const targets = parseTargets(targetsRaw);
      const config = defaultPeftConfig({
        r: rank,
        loraAlpha: pick(flags.alpha, "alpha") ?? 2 * rank,
        targetModules: targets,
        useDora: pick(flags.dora, "dora") ?? false,
        useRslora: pick(flags.rslora, "rslora") ?? false,
        bias: pick(flags.bias, "bias") ?? "none",
        modulesToSave: (() => {
          const m = pick<string | string[]>(flags.modulesToSave, "modules_to_save");
          return m === undefined
            ? null
            : Array.isArray(m)
            ? m
            : m.split(",").map((t) => t.trim()).filter(Boolean);
        })(),
        loraDropout: pick(flags.dropout, "dropout") ?? 0,
        layersToTransform: file.layers_to_transform ?? null,
        rankPattern: file.rank_pattern ?? {},
        alphaPattern: file.alpha_pattern ?? {},
        initLoraWeights: file.init === "gaussian" ? "gaussian" : true,
        baseModelNameOrPath: modelPath,
      });
      const shuffle = given("shuffle") ? flags.shuffle : (file.shuffle ?? true);
      const epochs = pick(flags.epochs, "epochs") ?? 1;
      const batchSize = pick(flags.batchSize, "batch_size") ?? 32;
      const progress = new Progress(
        Math.ceil(data.rows / batchSize) * epochs,
        pick(flags.maxSteps, "max_steps"),
      );
      let result;
      try {
        result = await finetune(model, data, {
          config,
          loss: pick(flags.loss, "loss") ?? "cross_entropy",
          outDir: out,
          evalData,
          epochs,
          maxSteps: pick(flags.maxSteps, "max_steps"),
          batchSize,
          gradAccum: pick(flags.gradAccum, "grad_accum"),
          lr: pick(flags.lr, "lr") ?? 1e-3,
          schedule: pick(flags.schedule, "schedule"),
          warmupSteps: pick(flags.warmupSteps, "warmup_steps"),
          optimizer: pick(flags.optimizer, "optimizer") ?? "adamw",
          optimizerOptions: {
            weightDecay: pick(flags.weightDecay, "weight_decay"),
            momentum: file.momentum,
            nesterov: file.nesterov,
          },
          clipNorm: pick(flags.clipNorm, "clip_norm"),
          seed,
          shuffle,
          checkpointEvery: pick(flags.checkpointEvery, "checkpoint_every"),
          earlyStopping: pick(flags.earlyStopping, "early_stopping")
            ? { patience: pick(flags.earlyStopping, "early_stopping")! }
            : undefined,
          initAdapter: pick(flags.initAdapter, "init_adapter"),
          resume: pick(flags.resume, "resume"),
          threads: pick(flags.threads, "threads"),
          onMetric: (line) => progress.update(line),
          onWarning: (message) => writeErr(`warning: ${message}`),
        });
      } finally {
        progress.stop();
      }
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

/** `all-linear`, `/regex/`, or a comma-separated list of names. */
function parseTargets(raw: string | readonly string[]): string | string[] {
  if (Array.isArray(raw)) return [...raw];
  const s = (raw as string).trim();
  if (s === "all-linear") return "all-linear";
  if (s.length > 1 && s.startsWith("/") && s.endsWith("/")) return s.slice(1, -1);
  return s.split(",").map((t) => t.trim()).filter(Boolean);
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
