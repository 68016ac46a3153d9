/**
 * Where a real model's training step spends its time: the step `ffwd bench train --model` times
 * (`buildModelStep` in `train_model.ts`), run under onnxruntime's profiler. It prints the kernel
 * time per step by phase (forward up to the loss, backward after it) and op type, then the
 * slowest nodes with their output shapes. Nodes are told apart by their place in ffwd's graph:
 * the autograd appends the backward after the loss. Fused nodes (`MatMul_7/MatMulScaleFusion/`)
 * count for the node they start from; nodes onnxruntime made up count as "other".
 *
 *     deno run --allow-read --allow-write --allow-env --allow-ffi --allow-sys bench/profile_step.ts \
 *       --model FILE --data FILE [--targets T] [--rank 8] [--batch 32] [--steps 5] [--threads N] \
 *       [--no-cache] [--top 25]
 *
 * @module
 */

import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import {
  defaultThreads,
  ortSessionOptions,
  toOrt,
  writeModelFolder,
} from "../src/engine/runtime.ts";
import { buildModelStep } from "./train_model.ts";

const { values: o } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    data: { type: "string" },
    targets: { type: "string" },
    rank: { type: "string", default: "8" },
    batch: { type: "string", default: "32" },
    steps: { type: "string", default: "5" },
    threads: { type: "string" },
    "no-cache": { type: "boolean", default: false },
    top: { type: "string", default: "25" },
  },
});

/** One event of onnxruntime's profile (Chrome trace format). */
interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args: { op_name?: string; output_type_shape?: unknown };
}

if (import.meta.main) {
  if (!o.model || !o.data) {
    console.error("error: profile_step.ts needs --model and --data");
    Deno.exit(2);
  }
  const threads = o.threads ? Number(o.threads) : defaultThreads();
  const s = await buildModelStep({
    model: o.model,
    data: o.data,
    targets: o.targets,
    rank: Number(o.rank),
    batch: Number(o.batch),
    threads,
    cache: !o["no-cache"],
  });
  const dir = await Deno.makeTempDir({ prefix: "ffwd_profile_" });
  try {
    const { graph, loss } = s.step.spec;
    const path = await writeModelFolder(graph, dir, {
      outputs: s.step.session.outputs,
      fed: s.fed,
    });
    const session = await ort.InferenceSession.create(path, {
      ...ortSessionOptions(threads, {}, dir),
      enableProfiling: true,
      profileFilePrefix: `${dir}/profile`,
    });
    const warm = 2, steps = Number(o.steps);
    const wall: number[] = [];
    for (let i = 0; i < warm + steps; i++) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const [k, t] of Object.entries(s.batches[i % s.batches.length]!)) feeds[k] = toOrt(t);
      for (const p of s.step.spec.params) {
        const data = s.params.get(p.name)!;
        feeds[p.name] = toOrt({ dtype: "F32", shape: p.shape as number[], data });
      }
      const t0 = performance.now();
      await session.run(feeds);
      if (i >= warm) wall.push(performance.now() - t0);
    }
    session.endProfiling();
    await session.release();
    const file = [...Deno.readDirSync(dir)].find((e) => e.name.startsWith("profile"))!.name;
    const events: ProfileEvent[] = JSON.parse(await Deno.readTextFile(`${dir}/${file}`));
    const runs = events.filter((e) => e.cat === "Session" && e.name === "model_run");
    const from = runs[warm]!.ts;
    const lossAt = graph.nodes.indexOf(loss.producer!);
    const index = new Map(graph.nodes.map((n, i) => [n.name, i]));
    const phaseOf = (node: string) => {
      const i = index.get(node.split("/")[0]!);
      return i === undefined ? "other" : i <= lossAt ? "forward" : "backward";
    };
    const byOp = new Map<string, number>();
    const byNode = new Map<string, { op: string; phase: string; us: number; shape: string }>();
    let kernels = 0;
    for (const e of events) {
      if (e.cat !== "Node" || !e.name.endsWith("_kernel_time") || e.ts < from) continue;
      const node = e.name.slice(0, -"_kernel_time".length);
      const op = e.args.op_name ?? "?";
      const phase = phaseOf(node);
      byOp.set(`${phase} ${op}`, (byOp.get(`${phase} ${op}`) ?? 0) + e.dur);
      const shape = JSON.stringify(e.args.output_type_shape ?? "").replace(/"float":|[{}"]/g, "");
      const n = byNode.get(node) ?? { op, phase, us: 0, shape };
      n.us += e.dur;
      byNode.set(node, n);
      kernels += e.dur;
    }
    const ms = (us: number) => (us / steps / 1000).toFixed(1).padStart(8);
    const mean = wall.reduce((a, b) => a + b, 0) / steps;
    console.log(
      `${o.model}: ${s.step.spec.params.length / 2} adapters, batch ${o.batch}, prefix ${
        s.cache ? "cached" : "recomputed"
      }; step ${mean.toFixed(1)} ms (session.run), kernels ${ms(kernels).trim()} ms`,
    );
    const phases = new Map<string, number>();
    for (const [k, us] of byOp) {
      phases.set(k.split(" ")[0]!, (phases.get(k.split(" ")[0]!) ?? 0) + us);
    }
    for (const [p, us] of phases) console.log(`  ${p.padEnd(9)} ${ms(us)} ms`);
    const table = (title: string, rows: Map<string, number>, top: number) => {
      console.log(`\n${title} (ms per step, share of kernel time)`);
      const sorted = [...rows].sort((a, b) => b[1] - a[1]).slice(0, top);
      for (const [k, us] of sorted.filter(([, us]) => us / steps >= 50)) {
        console.log(`  ${k.padEnd(48)} ${ms(us)} ${(100 * us / kernels).toFixed(1).padStart(5)}%`);
      }
    };
    table("by phase and op type", byOp, Infinity);
    const byShape = new Map<string, number>();
    for (const n of byNode.values()) {
      const k = `${n.phase} ${n.op} ${n.shape}`;
      byShape.set(k, (byShape.get(k) ?? 0) + n.us);
    }
    table("by phase, op type and output shape", byShape, Number(o.top));
    console.log(`\nslowest nodes (ms per step)`);
    for (const [name, n] of [...byNode].sort((a, b) => b[1].us - a[1].us).slice(0, Number(o.top))) {
      console.log(
        `  ${ms(n.us)} ${n.phase.padEnd(8)} ${n.op.padEnd(14)} ${name.padEnd(40)} ${n.shape}`,
      );
    }
  } finally {
    await s.release();
    await Deno.remove(dir, { recursive: true });
  }
}
