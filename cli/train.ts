/**
 * `ffwd train`: fine-tune adapters on a frozen base, or with `--full` train every weight (a model
 * `ffwd init` made, from scratch). Flags and a `--config` file cover the same options (flags win);
 * see `workflows/train_config.ts` for the file's fields. It prints the layers that get adapters
 * and those trained whole as it starts. Ctrl-C or SIGTERM saves the run after the current step and
 * exits with 130 (a second signal stops at once, the last checkpoint whole); `--resume DIR`
 * continues it with the options its checkpoint saved.
 *
 * @module
 */

// @ts-types="@types/cli-progress"
import cliProgress from "cli-progress";
import { Option } from "@commander-js/extra-typings";
import { TRAIN_DEFAULTS as D } from "../workflows/train_options.ts";
import type { MetricLine } from "../src/train/trainer.ts";
import type { LayerAdapter } from "../src/lora/branch.ts";
import type { PeftConfig } from "../adapters/config.ts";
import { isAllLinear } from "../adapters/targets.ts";
import type { Program } from "./_program.ts";
import { Interrupted, writeErr } from "./_errors.ts";
import { onInterrupt } from "./_interrupt.ts";
import { checkModelFile } from "./_paths.ts";
import { plural } from "./_inspect_text.ts";
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
    .description(
      "train LoRA / rsLoRA / DoRA adapters on a frozen base model (--full: every weight instead)",
    )
    .option("--model <file>", "base model (.onnx, .safetensors, TF.js model.json)")
    .option("--block <name>", "block to adapt in a file with several")
    .option(
      "--output <name>",
      "end the model at this value (another output, or the logits a final Softmax reads)",
    )
    .option("--data <file>", "training data (.jsonl, .csv, .safetensors)")
    .option("--out <dir>", "output folder for the adapter, metrics and report")
    .option("--config <file>", "training config (JSON); flags win over it")
    .option("--eval <file>", "evaluation data")
    .option("--eval-split <fraction>", "hold out this fraction of --data for evaluation", fraction)
    .option("--label-column <name>", "CSV label column (name or 0-based index)", labelColumn)
    .option("--rank <r>", `LoRA rank (default ${D.rank})`, positiveInteger)
    .option("--alpha <a>", `LoRA alpha (default ${D.alphaPerRank} × rank)`, positiveNumber)
    .option(
      "--targets <names>",
      "layers to adapt: all-linear (every linear layer but a whole model's output layer, as " +
        "PEFT; the default), a comma list of names, /regex/, or none (with --modules-to-save); " +
        "ffwd inspect MODEL lists them",
    )
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
    .option(
      "--full",
      "train every weight and bias of every linear layer, no adapter (--targets none, every " +
        "layer a module to save); ffwd export or merge turns the folder into a model",
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
      new Option(
        "--loss <name>",
        "loss on the model's output: cross_entropy (class labels or one-hot rows, on logits), " +
          "mse (targets), bce (binary cross-entropy on logits, targets in [0, 1]) " +
          `(default ${D.loss})`,
      ).choices(
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
    .option(
      "--save-best",
      "save the adapter of the evaluation with the lowest eval loss, not the last step's " +
        "(needs --eval or --eval-split; --resume keeps it)",
    )
    .option("--init-adapter <dir>", "warm start from an adapter (ffwd, PEFT or MLX)")
    .option(
      "--resume <dir>",
      "continue an interrupted run from its checkpoint, with its options (flags override)",
    )
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
      const { resolveTrainOptions } = await import("../workflows/train_options.ts");
      const { stopWrites, findCheckpoint, readCheckpointConfig } = await import(
        "../workflows/checkpoint.ts"
      );
      const { loadDataset } = await import("../src/data/files.ts");
      const { openModel } = await import("../src/models/open.ts");
      const given = flags.config ? await readTrainConfig(flags.config) : {};
      // A resumed run takes the options its checkpoint saved, and its folder; flags win.
      const resumeDir = flags.resume ?? given.resume;
      const found = resumeDir ? await findCheckpoint(resumeDir) : undefined;
      const saved = found ? await readCheckpointConfig(found.folder) : undefined;
      const o = resolveTrainOptions({ ...saved, ...given }, {
        model: flags.model,
        block: flags.block,
        data: flags.data,
        outDir: flags.out ?? given.out ?? found?.run,
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
        full: flags.full,
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
        saveBest: flags.saveBest,
        initAdapter: flags.initAdapter,
        resume: resumeDir,
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
      const out = o.outDir;
      await checkModelFile(o.model);
      const model = await openModel(o.model, { block: o.block, output: o.output });
      const data = await loadDataset(o.data, { model, labelColumn: o.labelColumn });
      let progress: Progress | undefined;
      const resumeHint = `resume with: ffwd train --resume ${shellWord(out)}`;
      using interrupt = onInterrupt({
        first: () =>
          writeErr(
            "interrupt: saving the run after the current step (interrupt again to stop now)",
          ),
        second: async () => {
          await stopWrites();
          progress?.stop();
          // Loaded already: the run imported it.
          const { findCheckpoint } = await import("../workflows/checkpoint.ts");
          const saved = await findCheckpoint(out).then(() => true, () => false);
          writeErr(
            saved
              ? `stopped at once, leaving the last checkpoint whole; ${resumeHint}`
              : "stopped at once, before the first checkpoint: nothing to resume",
          );
        },
      });
      let result;
      try {
        result = await finetune(model, data, {
          ...o,
          signal: interrupt.signal,
          onStart: (plan) => {
            writeErr(describeTargets(plan, o.config.targetModules));
            const batches = Math.ceil(plan.trainRows / o.batchSize);
            progress = new Progress(
              o.maxSteps ?? o.epochs * Math.ceil(batches / (o.gradAccum ?? 1)),
            );
          },
          onMetric: (line) => progress?.update(line),
          onWarning: (message) => writeErr(`warning: ${message}`),
        });
      } catch (e) {
        if (e !== interrupt.signal.reason) throw e;
        throw new Interrupted("interrupted before training started: nothing was written");
      } finally {
        progress?.stop();
      }
      const summary = {
        out,
        steps: result.steps,
        last_loss: result.lastLoss,
        eval: result.eval ?? null,
        best: result.best ?? null,
        seconds: Math.round(result.seconds * 100) / 100,
        trainable_params: result.trainableParams,
        base_params: result.baseParams,
        interrupted: result.interrupted,
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
        const best = result.best
          ? `; saved the adapter of epoch ${result.best.epoch} (step ${result.best.step}), ` +
            `eval loss ${result.best.loss.toFixed(4)}`
          : "";
        const saved = result.adapter.layers.size
          ? "adapter"
          : "trained layers (PEFT modules_to_save; ffwd export writes the model)";
        console.log(
          `trained ${plural(result.steps, "step")} in ${summary.seconds}s: loss ${
            result.lastLoss.toFixed(4)
          }${ev}; ` +
            `${result.trainableParams.toLocaleString("en-US")} trainable parameters ` +
            `(${
              (100 * result.trainableParams / Math.max(1, result.baseParams)).toFixed(2)
            }% of the base)${best}\n` +
            `${saved}: ${out}/adapter_model.safetensors, metrics: ${out}/metrics.jsonl, report: ${out}/report.html`,
        );
      }
      if (result.interrupted) {
        throw new Interrupted(`interrupted at step ${result.steps}; ${resumeHint}`);
      }
    });
}

/**
 * The layers that get adapters, those trained whole, and those left frozen (why, when
 * `all-linear` left out the output layer). Layers that differ only by their index
 * (`model.layers.3.mlp.up_proj`) share a line.
 */
function describeTargets(
  plan: {
    adapters: readonly LayerAdapter[];
    whole: readonly string[];
    frozen: readonly string[];
  },
  targets: PeftConfig["targetModules"],
): string {
  const { adapters, whole, frozen } = plan;
  const total = adapters.length + whole.length + frozen.length;
  const trainedWhole = whole.length
    ? [
      `training ${whole.length} of ${total} linear layers whole (every weight and bias): ${
        shortList(whole)
      }`,
    ]
    : [];
  if (adapters.length === 0) {
    return [...trainedWhole, ...(frozen.length ? [`left frozen: ${shortList(frozen)}`] : [])]
      .join("\n");
  }
  const same = (f: (a: LayerAdapter) => number) => new Set(adapters.map(f)).size === 1;
  const shared = same((a) => a.rank) && same((a) => a.alpha);
  const groups = new Map<string, { count: number; line: string }>();
  for (const a of adapters) {
    const name = a.layer.name.replace(/\.\d+(?=\.|$)/g, ".*");
    const dims = `[${a.layer.inFeatures} → ${a.layer.outFeatures}]`;
    const hyper = shared ? "" : `  rank ${a.rank}, alpha ${a.alpha}`;
    const key = `${name} ${dims}${hyper}`;
    const g = groups.get(key) ?? { count: 0, line: "" };
    g.count++;
    g.line = `  ${g.count > 1 ? name : a.layer.name}  ${dims}${hyper}${
      g.count > 1 ? ` ×${g.count}` : ""
    }`;
    groups.set(key, g);
  }
  const first = adapters[0]!;
  const lines = [
    `training ${adapters.some((a) => a.dora) ? "DoRA" : "LoRA"} adapters on ${adapters.length} ` +
    `of ${total} linear layers${shared ? `, rank ${first.rank}, alpha ${first.alpha}` : ""}:`,
    ...[...groups.values()].map((g) => g.line),
    ...trainedWhole,
  ];
  if (frozen.length) {
    lines.push(
      `left frozen: ${shortList(frozen)}${
        isAllLinear(targets)
          ? " (all-linear leaves out a whole model's output layer, as PEFT does; " +
            "--targets '/.*/' adapts every layer)"
          : ""
      }`,
    );
  }
  return lines.join("\n");
}

/** Up to six names, then how many more. */
function shortList(names: readonly string[]): string {
  return names.slice(0, 6).join(", ") + (names.length > 6 ? `, and ${names.length - 6} more` : "");
}

/** `path` as one shell word: as it is when that is safe, else single-quoted. */
function shellWord(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
}

/** A progress bar on a terminal, plain periodic lines otherwise. */
class Progress {
  #bar: cliProgress.SingleBar | null = null;
  #last = 0;
  #total: number;
  constructor(steps: number) {
    this.#total = steps;
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
