/**
 * `ffwd merge` of a whole checkpoint against a hand-rolled numpy merge of the same files
 * (`bench/numpy_merge.py`: memory-mapped read, `W + s·(B @ A)`, one write per tensor, fsync), in
 * one run; and the same script writing in 1 MiB pieces, as ffwd does (on this machine's kernel a
 * write() of tens of MiB is many times slower than 1 MiB ones; see `writeAt` in
 * `workflows/_checkpoint_files.ts`), so that the comparison is not only about that.
 *
 * The checkpoint has LLaMA's layout: 6 layers of q/k/v/o (2048×2048) and gate/up/down
 * (2048↔5504), norms, a 24000-token embedding and `lm_head`, 1.5 GiB of F32 with `config.json`
 * beside it; the PEFT adapter (r = 16, alpha = 32) targets q_proj, v_proj, gate_proj, up_proj and
 * down_proj of every layer (30 weights, 0.95 GiB of them). ffwd runs what `ffwd merge` runs for a
 * checkpoint (`mergeCheckpoint` with its check: every other tensor read back and compared,
 * sampled rows against float64).
 *
 * Each run is a fresh process; the tools take turns going first, and before each the previous
 * output is removed and the disk given a few seconds (removing a large file on this machine's ext4
 * issues discards that slow the next writes down). Each tool runs under a fresh copy of this
 * script, whose `getrusage(RUSAGE_CHILDREN)` then gives the tool's own CPU time and peak RSS
 * (numpy also reports its `ru_maxrss`; the resident pages of its memory map count, as they do for
 * any process).
 *
 * ```sh
 * P="--allow-read --allow-write --allow-env --allow-ffi --allow-sys --allow-run"
 * deno run $P bench/merge_checkpoint_bench.ts generate
 * deno run $P bench/merge_checkpoint_bench.ts measure [runs, default 3]
 * ```
 *
 * @module
 */

import { writeSafetensors } from "../src/io/safetensors.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { defaultPeftConfig } from "../adapters/config.ts";
import { Rng } from "../src/rng.ts";
import { loadAdapter } from "../adapters/adapter.ts";
import { mergeCheckpoint } from "../workflows/merge_checkpoint.ts";
import { type Tensor, tensor } from "../src/tensor.ts";

const ROOT = new URL("../.bench/merge_checkpoint/", import.meta.url).pathname;
const REPO = new URL("../", import.meta.url).pathname;
const PYTHON = "/usr/bin/python3"; // Debian's, with numpy
const MiB = 2 ** 20;
const [H, I, V, LAYERS, R] = [2048, 5504, 24000, 6, 16];
const TARGETS = ["self_attn.q_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"]
  .concat("mlp.down_proj");

/** The checkpoint's tensors, filled from a seeded tile when written (one in memory at a time). */
function layout(): Record<string, [number, number] | [number]> {
  const t: Record<string, [number, number] | [number]> = { "model.embed_tokens.weight": [V, H] };
  for (let i = 0; i < LAYERS; i++) {
    const p = `model.layers.${i}`;
    for (const n of ["q", "k", "v", "o"]) t[`${p}.self_attn.${n}_proj.weight`] = [H, H];
    t[`${p}.mlp.gate_proj.weight`] = t[`${p}.mlp.up_proj.weight`] = [I, H];
    t[`${p}.mlp.down_proj.weight`] = [H, I];
    t[`${p}.input_layernorm.weight`] = t[`${p}.post_attention_layernorm.weight`] = [H];
  }
  t["model.norm.weight"] = [H];
  t["lm_head.weight"] = [V, H];
  return t;
}

async function generate(): Promise<void> {
  const dir = `${ROOT}model`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_act: "silu",
      hidden_size: H,
      intermediate_size: I,
      num_hidden_layers: LAYERS,
      num_attention_heads: 16,
      vocab_size: V,
      torch_dtype: "float32",
    }),
  );
  const rng = new Rng(1);
  const tile = rng.fillNormal(new Float32Array(1 << 20), 0, 0.02) as Float32Array;
  let k = 0;
  const lazy = (shape: number[]) => ({
    dtype: "F32" as const,
    shape,
    load: (): Tensor => {
      const t = tensor("F32", shape);
      const shift = (k++ * 7919) % tile.length; // a different phase of the tile per tensor
      for (let i = 0; i < t.data.length; i++) t.data[i] = tile[(i + shift) % tile.length]!;
      return t;
    },
  });
  const tensors = Object.fromEntries(Object.entries(layout()).map(([n, s]) => [n, lazy(s)]));
  await writeSafetensors(`${dir}/model.safetensors`, tensors, {
    metadata: { format: "pt" },
    sync: false,
  });
  const layers = new Map<string, { A: Tensor; B: Tensor }>();
  for (let i = 0; i < LAYERS; i++) {
    for (const target of TARGETS) {
      const [out, inp] = layout()[`model.layers.${i}.${target}.weight`] as [number, number];
      const A = tensor("F32", [R, inp]), B = tensor("F32", [out, R]);
      rng.fillUniform(A.data as Float32Array, -1 / Math.sqrt(inp), 1 / Math.sqrt(inp));
      rng.fillNormal(B.data as Float32Array, 0, 0.01);
      layers.set(`model.layers.${i}.${target}`, { A, B });
    }
  }
  const config = defaultPeftConfig({
    r: R,
    loraAlpha: 32,
    targetModules: ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
  });
  const adapter = { name: "adapter", config, layers, biases: new Map(), extra: new Map() };
  await savePeftAdapter(`${ROOT}adapter`, adapter, { sync: false });
  const size = (await Deno.stat(`${dir}/model.safetensors`)).size;
  console.log(`wrote ${dir}/model.safetensors (${(size / MiB).toFixed(0)} MiB) and ${ROOT}adapter`);
}

interface Run {
  readonly seconds: number;
  /** User + system CPU seconds: less sensitive than wall time to other work on the machine. */
  readonly cpu: number;
  readonly peakRss: number;
  readonly inProcess?: { seconds: number; peakRss: number };
}

/**
 * CPU seconds (user + system) and peak RSS in bytes of the terminated children of this process
 * (getrusage RUSAGE_CHILDREN).
 */
function childrenUsage(): { cpu: number; peakRss: number } {
  const libc = Deno.dlopen("libc.so.6", {
    getrusage: { parameters: ["i32", "buffer"], result: "i32" },
  });
  try {
    const usage = new BigInt64Array(18); // struct rusage on 64-bit Linux: 144 bytes
    if (libc.symbols.getrusage(-1, usage) !== 0) throw new Error("getrusage failed");
    // ru_utime and ru_stime as {seconds, microseconds}, then ru_maxrss in KiB
    const cpu = Number(usage[0]!) + Number(usage[1]!) / 1e6 + Number(usage[2]!) +
      Number(usage[3]!) / 1e6;
    return { cpu, peakRss: Number(usage[4]!) * 1024 };
  } finally {
    libc.close();
  }
}

/**
 * Runs `cmd` through a fresh copy of this script (`child` mode), so that the children's peak RSS
 * it reads is the command's own; throws with its stderr when it fails.
 */
async function timed(cmd: string, args: string[]): Promise<Run & { stdout: string }> {
  const perms = ["--allow-read", "--allow-write", "--allow-env", "--allow-ffi", "--allow-sys"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...perms,
      "--allow-run",
      new URL(import.meta.url).pathname,
      "child",
      cmd,
      ...args,
    ],
    cwd: REPO,
    env: { NO_COLOR: "1" },
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** `child` mode: runs the command, prints its wall time, peak RSS and output as JSON. */
async function child(cmd: string, args: string[]): Promise<void> {
  const t0 = performance.now();
  const out = await new Deno.Command(cmd, { args, cwd: REPO, env: { NO_COLOR: "1" } }).output();
  const seconds = (performance.now() - t0) / 1000;
  const text = new TextDecoder();
  if (!out.success) {
    console.error(text.decode(out.stderr));
    Deno.exit(1);
  }
  const stdout = text.decode(out.stdout);
  console.log(JSON.stringify({ seconds, ...childrenUsage(), stdout }));
}

/** Flushes the page cache's dirty pages and lets the disk settle before a timed run. */
async function settle(paths: string[]): Promise<void> {
  for (const p of paths) await Deno.remove(p, { recursive: true }).catch(() => {});
  const libc = Deno.dlopen("libc.so.6", { sync: { parameters: [], result: "void" } });
  libc.symbols.sync();
  libc.close();
  await new Promise((r) => setTimeout(r, 5000));
}

async function ffwd(): Promise<Run> {
  const out = `${ROOT}out_ffwd`;
  await settle([out]);
  await Deno.mkdir(out);
  const perms = ["--allow-read", "--allow-write", "--allow-env", "--allow-ffi", "--allow-sys"];
  const self = new URL(import.meta.url).pathname;
  const model = `${ROOT}model/model.safetensors`;
  const args = [...perms, self, "ffwd", model, `${ROOT}adapter`, `${out}/merged.safetensors`];
  const r = await timed(Deno.execPath(), ["run", ...args]);
  const report = JSON.parse(await Deno.readTextFile(`${out}/merged.safetensors.parity.json`));
  if (report.verdict !== "pass") throw new Error(`ffwd's check failed: ${r.stdout}`);
  return r;
}

/**
 * `ffwd` mode: what `ffwd merge --model M --adapter A --out O` runs for a checkpoint (the
 * adapter loaded, `mergeCheckpoint`), without the rest of the CLI's commands.
 */
async function ffwdMerge(model: string, adapter: string, out: string): Promise<void> {
  const { report } = await mergeCheckpoint(model, await loadAdapter(adapter), { out });
  const worst = Math.max(...report.tensors.map((t) => t.maxRel));
  console.log(`${report.verdict}, largest relative error ${worst.toExponential(1)}`);
}

/** The numpy script, writing each tensor at once, or in pieces of `piece` bytes. */
async function numpy(piece = 0): Promise<Run> {
  const out = `${ROOT}out_numpy.safetensors`;
  await settle([out]);
  const model = `${ROOT}model/model.safetensors`;
  const args = ["bench/numpy_merge.py", model, `${ROOT}adapter`, out, String(piece)];
  const r = await timed(PYTHON, args);
  const own = JSON.parse(r.stdout);
  return { ...r, inProcess: { seconds: own.seconds, peakRss: own.peak_rss } };
}

async function measure(runs: number): Promise<void> {
  const model = `${ROOT}model/model.safetensors`;
  const size = (await Deno.stat(model).catch(() => {
    throw new Error(`No ${model}: run "merge_checkpoint_bench.ts generate" first`);
  })).size;
  const tools = ["ffwd", "numpy", "numpy 1 MiB writes"] as const;
  const results = Object.fromEntries(tools.map((t) => [t, [] as Run[]]));
  for (let i = 0; i < runs; i++) {
    for (const [k] of tools.entries()) {
      const tool = tools[(i + k) % tools.length]!; // each tool first in turn
      const r = tool === "ffwd" ? await ffwd() : await numpy(tool === "numpy" ? 0 : 2 ** 20);
      results[tool]!.push(r);
      const own = r.inProcess
        ? ` (in the process: ${r.inProcess.seconds.toFixed(2)} s, ru_maxrss ${
          (r.inProcess.peakRss / MiB).toFixed(0)
        } MiB)`
        : "";
      console.log(
        `run ${i + 1} ${tool.padEnd(18)} ${r.seconds.toFixed(2)} s (CPU ${
          r.cpu.toFixed(2)
        } s), peak RSS ${(r.peakRss / MiB).toFixed(0)} MiB${own}`,
      );
    }
  }
  const range = (xs: number[], f: (x: number) => string) =>
    `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
  const budget = 3 * V * H * 4 + 200 * MiB;
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
  };
  console.log(
    `\n${(size / MiB).toFixed(0)} MiB F32 checkpoint, 30 LoRA r=${R} weights, ${runs} runs each:`,
  );
  for (const tool of tools) {
    const rs = results[tool]!;
    console.log(
      `  ${tool.padEnd(18)} ${range(rs.map((r) => r.seconds), (x) => x.toFixed(1))} s (median ${
        median(rs.map((r) => r.seconds)).toFixed(1)
      } s; CPU ${range(rs.map((r) => r.cpu), (x) => x.toFixed(1))} s), peak RSS ${
        range(rs.map((r) => r.peakRss / MiB), (x) => x.toFixed(0))
      } MiB`,
    );
  }
  console.log(
    `  (RSS budget: 3 × the largest tensor (${(V * H * 4 / MiB).toFixed(1)} MiB) + 200 MiB = ${
      (budget / MiB).toFixed(0)
    } MiB)`,
  );
}

if (import.meta.main) {
  if (Deno.args[0] === "generate") await generate();
  else if (Deno.args[0] === "measure") await measure(Number(Deno.args[1] ?? 3));
  else if (Deno.args[0] === "child") await child(Deno.args[1]!, Deno.args.slice(2));
  else if (Deno.args[0] === "ffwd") await ffwdMerge(Deno.args[1]!, Deno.args[2]!, Deno.args[3]!);
  else throw new TypeError("usage: merge_checkpoint_bench.ts generate | measure [runs]");
}
