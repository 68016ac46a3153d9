/**
 * Whole models against PyTorch, side by side in one run (the machine is shared, so only ratios
 * measured together mean anything):
 *
 * - `bert`: a BERT-mini (4 layers, hidden 256, 4 heads, FFN 1024, seq 128, batch 32) with LoRA
 *   r=8 on every layer's `intermediate.dense` and `output.dense`: ms per training step of
 *   `ffwd bench train --model` against `bench/torch_bert_mini.py time` (PEFT-style LoRA, AdamW,
 *   2 threads). Target: ffwd at most 0.6× PyTorch.
 * - `cnn`: conv 32-64-64 on 28×28, dense 3136→256→10, LoRA r=8 on fc1 and fc2, 4,096 images,
 *   5 epochs of batch 64: the wall time of the whole `deno task ffwd train` process (start-up,
 *   imports, data, the frozen-prefix cache, training, writing the adapter and report) against
 *   `bench/torch_cnn.py time`'s training loop alone. Target: at most 0.5×.
 *
 * The Python scripts export the models with torch.onnx.export and write the data, into `--dir`
 * (default: a temporary folder, removed at the end); then each of `--runs` rounds runs ffwd and
 * PyTorch one after the other. Ratios are ffwd / PyTorch per round, of the medians, and for BERT
 * of the fastest steps of all rounds (the least disturbed on a shared machine).
 *
 *     deno run --allow-read --allow-write --allow-env --allow-ffi --allow-sys --allow-run \
 *       bench/whole_bench.ts [bert|cnn|all] [--torch] [--runs 3] [--dir DIR] \
 *       [--python /usr/bin/python3] [--torch-lib DIR] [--steps 10] [--warmup 2] [--threads 2]
 *
 * Without `--torch` only ffwd is timed (the export still needs Python). `--torch-lib` puts a
 * folder first on PyTorch's `LD_LIBRARY_PATH` (only the Python processes'): Debian's
 * python3-torch links the reference BLAS (`libblas3`, ~1.5 GFLOP/s); the folder of
 * `libopenblas0-pthread` (installed, or unpacked from its .deb with `dpkg-deb -x`) runs it on
 * OpenBLAS. PyTorch's JSON names the BLAS it loaded.
 *
 * @module
 */

import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url).pathname;
const BERT_TARGETS = "/encoder\\.layer\\.\\d+\\.(intermediate|output)\\.dense/";

const { values: flags, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    torch: { type: "boolean", default: false },
    runs: { type: "string", default: "3" },
    dir: { type: "string" },
    python: { type: "string", default: "/usr/bin/python3" },
    "torch-lib": { type: "string" },
    steps: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    threads: { type: "string", default: "2" },
  },
});

/** The last JSON object a subprocess prints, and its wall time from spawn to exit. */
async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ json: Record<string, unknown>; seconds: number }> {
  const t0 = performance.now();
  const out = await new Deno.Command(cmd, { args, cwd: ROOT, env: { NO_COLOR: "1", ...env } })
    .output();
  const seconds = (performance.now() - t0) / 1000;
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (out.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited with ${out.code}:\n${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return { json: JSON.parse(stdout.slice(stdout.lastIndexOf("\n{") + 1)), seconds };
}

function python(script: string, args: string[]) {
  const lib = flags["torch-lib"];
  const env: Record<string, string> = lib
    ? { LD_LIBRARY_PATH: [lib, Deno.env.get("LD_LIBRARY_PATH")].filter(Boolean).join(":") }
    : {};
  return run(flags.python, [`bench/${script}`, ...args], env);
}

function ffwd(args: string[]) {
  return run(Deno.execPath(), ["task", "ffwd", ...args]);
}

async function exported(script: string, folder: string): Promise<void> {
  try {
    await Deno.stat(`${folder}/model.onnx`);
    await Deno.stat(`${folder}/data.safetensors`);
  } catch {
    await python(script, ["export", folder]);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const r3 = (x: number) => Math.round(x * 1000) / 1000;

interface Case {
  /** What is compared, and the target ratio. */
  title: string;
  target: number;
  unit: string;
  /** One ffwd measurement (and its fastest step, when it has steps), and its record. */
  ffwd(round: number): Promise<Measured>;
  torch(): Promise<Measured>;
}

interface Measured {
  value: number;
  best?: number;
  record: Record<string, unknown>;
}

function bertCase(dir: string): Case {
  const folder = `${dir}/bert_mini`;
  const [steps, warmup, threads] = [flags.steps, flags.warmup, flags.threads];
  return {
    title: "BERT-mini, LoRA r=8 on the FFNs, batch 32 × seq 128: ms per step",
    target: 0.6,
    unit: "ms/step",
    async ffwd() {
      await exported("torch_bert_mini.py", folder);
      const { json } = await ffwd([
        ...["bench", "train", "--model", `${folder}/model.onnx`],
        ...["--data", `${folder}/data.safetensors`, "--targets", BERT_TARGETS],
        ...["--rank", "8", "--batch", "32", "--steps", steps, "--warmup", warmup],
        ...["--threads", threads, "--json"],
      ]);
      const { ms_per_step, best_ms, median_ms, matmul_gflops, gflops, cache_ms } = json;
      return {
        value: ms_per_step as number,
        best: best_ms as number,
        record: { ms_per_step, best_ms, median_ms, gflops, matmul_gflops, cache_ms },
      };
    },
    async torch() {
      const { json } = await python("torch_bert_mini.py", [
        ...["time", "--steps", steps, "--warmup", warmup, "--threads", threads],
      ]);
      return { value: json.ms_per_step as number, best: json.best_ms as number, record: json };
    },
  };
}

function cnnCase(dir: string): Case {
  const folder = `${dir}/cnn`;
  const train = (round: number) => [
    ...["train", "--model", `${folder}/model.onnx`, "--data", `${folder}/data.safetensors`],
    ...["--targets", "fc1,fc2", "--rank", "8", "--epochs", "5", "--batch-size", "64"],
    ...["--threads", flags.threads, "--out", `${folder}/run${round}`, "--json"],
  ];
  return {
    title:
      "CNN, LoRA r=8 on fc1, fc2, 4,096 images × 5 epochs, batch 64: the whole ffwd train process against PyTorch's loop alone, s",
    target: 0.5,
    unit: "s",
    async ffwd(round) {
      await exported("torch_cnn.py", folder);
      if (round === 0) await ffwd(train(-1)); // Deno's module cache, as on any later run
      const { json, seconds } = await ffwd(train(round));
      const summary = JSON.parse(await Deno.readTextFile(`${folder}/run${round}/summary.json`));
      return {
        value: r3(seconds),
        record: {
          process_s: r3(seconds),
          loop_s: json.seconds,
          prefix_cache_s: r3(summary.prefix_cache?.seconds ?? 0),
          steps: json.steps,
          last_loss: json.last_loss,
        },
      };
    },
    async torch() {
      const { json } = await python("torch_cnn.py", ["time", "--threads", flags.threads]);
      return { value: json.loop_s as number, record: json };
    },
  };
}

async function measure(c: Case, runs: number) {
  console.log(`\n${c.title}`);
  const ours: number[] = [], theirs: number[] = [];
  const bests: [number, number] = [Infinity, Infinity];
  for (let round = 0; round < runs; round++) {
    const f = await c.ffwd(round);
    ours.push(f.value);
    bests[0] = Math.min(bests[0], f.best ?? Infinity);
    console.log(`  round ${round + 1} ffwd    ${f.value} ${c.unit}  ${JSON.stringify(f.record)}`);
    if (!flags.torch) continue;
    const t = await c.torch();
    theirs.push(t.value);
    bests[1] = Math.min(bests[1], t.best ?? Infinity);
    console.log(`  round ${round + 1} PyTorch ${t.value} ${c.unit}  ${JSON.stringify(t.record)}`);
    console.log(`  round ${round + 1} ratio   ${r3(f.value / t.value)} (target <= ${c.target})`);
  }
  const result: Record<string, unknown> = { case: c.title, unit: c.unit, ffwd: ours };
  if (theirs.length) {
    const ratio = r3(median(ours) / median(theirs));
    Object.assign(result, {
      torch: theirs,
      ratios: ours.map((v, i) => r3(v / theirs[i]!)),
      ratio_of_medians: ratio,
      ...(Number.isFinite(bests[0] + bests[1])
        ? { best: bests, ratio_of_bests: r3(bests[0] / bests[1]) }
        : {}),
      target: c.target,
      met: ratio <= c.target,
    });
  }
  console.log(JSON.stringify(result));
  return result;
}

if (import.meta.main) {
  const which = positionals[0] ?? "all";
  if (!["bert", "cnn", "all"].includes(which)) {
    console.error(`error: unknown case "${which}": expected bert, cnn or all`);
    Deno.exit(2);
  }
  const runs = Number(flags.runs);
  const dir = flags.dir ?? await Deno.makeTempDir({ prefix: "ffwd_whole_bench_" });
  await Deno.mkdir(dir, { recursive: true });
  try {
    if (which !== "cnn") await measure(bertCase(dir), runs);
    if (which !== "bert") await measure(cnnCase(dir), runs);
  } finally {
    if (!flags.dir) await Deno.remove(dir, { recursive: true });
  }
}
