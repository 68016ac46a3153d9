/**
 * Serving overhead over HTTP, side by side: `ffwd serve` on the demo's MNIST MLP (784→256→128→10)
 * with a rank-8 adapter on fc1, fc2, fc3 (as the demo's rot45), against the least a server can do
 * (`bench/_plain_server.ts`: `Deno.serve` + onnxruntime-node on the merged ONNX, parse JSON, one
 * `session.run`, reply). One load client (`bench/_serve_load.ts`) sends one 784-wide row (a
 * rotated MNIST digit) per request; each round runs every server once per load, alternating, so a
 * busy machine slows all of them alike, and the ratios are taken per round.
 *
 * ```sh
 * P="--allow-read --allow-write --allow-env --allow-ffi --allow-sys --allow-run=deno --allow-net=127.0.0.1"
 * deno run $P bench/serve_http_bench.ts [rounds] [-- extra ffwd serve flags]
 * ```
 *
 * Loads: 8 clients × 2,000 requests (light) and 64 clients × 4,000 requests (heavy). Every server
 * runs in its own process; the client runs in this one. Besides requests/s and latency each run
 * reports the server's CPU time per request (every thread, from `process_cpu_seconds_total` of its
 * `/metrics`): on a 2-core machine the client and the server share the cores, so a server's CPU
 * per request decides much of the throughput, and it is steadier than requests/s when other work
 * shares the machine. The load average is printed at the start and the end.
 *
 * The plain server takes onnxruntime-node's default session options (a spinning intra-op thread
 * per physical core; see `_plain_server.ts`), as the line it prints says. `FFWD_PLAIN_THREADS=1`
 * gives it one thread, its fastest setting on the 2-core machine, for a comparison with a tuned
 * plain server.
 *
 * @module
 */

import { defaultPeftConfig } from "../adapters/config.ts";
import { loadAdapter } from "../adapters/adapter.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { shortestFloat32 } from "../src/data/files.ts";
import { loadMnist, PIXELS, rotate } from "../src/data/mnist.ts";
import { openModel } from "../src/models/open.ts";
import { Rng } from "../src/rng.ts";
import { exportAdapter } from "../workflows/export.ts";
import { load, type LoadResult } from "./_serve_load.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BASE = `${ROOT}fixtures/mnist/base`;
const SERVE_PERMS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-ffi",
  "--allow-sys",
  "--allow-net=127.0.0.1",
];

/** A server process and its URL. */
export interface Spawned {
  readonly url: string;
  /** The rest of its `Listening on …` line (what it says of itself). */
  readonly banner: string;
  /** CPU seconds the server used so far, all threads (its `process_cpu_seconds_total`). */
  cpu(): Promise<number>;
  stop(): Promise<void>;
}

/** The `process_cpu_seconds_total` a server's `GET /metrics` reports. */
async function cpuOf(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^process_cpu_seconds_total (\S+)$/m.exec(text)?.[1] ?? NaN);
}

/** Starts `deno run <args>` and waits for its `Listening on http://…` line. */
export async function spawnServer(args: string[]): Promise<Spawned> {
  const exec = Deno.execPath();
  const granted = Deno.permissions.querySync({ name: "run", command: exec }).state === "granted";
  const child = new Deno.Command(granted ? exec : "deno", {
    args: ["run", ...SERVE_PERMS, ...args],
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1", FFWD_PLAIN_THREADS: Deno.env.get("FFWD_PLAIN_THREADS") ?? "0" },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`Server exited before listening: ${args.join(" ")}\n${text}`);
    text += value;
    const m = /Listening on (http:\/\/127\.0\.0\.1:\d+)(.*)\n/.exec(text);
    if (m) {
      const drain = (async () => {
        while (!(await reader.read()).done) { /* keep the pipe flowing */ }
      })();
      return {
        url: m[1]!,
        banner: m[2]!.trim(),
        cpu: () => cpuOf(m[1]!),
        stop: async () => {
          child.kill("SIGTERM");
          await child.status;
          await drain;
        },
      };
    }
  }
}

/** A rank-8 adapter on fc1, fc2, fc3 (random weights, B nonzero) and the merged ONNX base. */
export async function rot45Files(dir: string): Promise<{ adapters: string; merged: string }> {
  const rng = new Rng(45);
  const u = (shape: number[]) => ({
    dtype: "F32" as const,
    shape,
    data: rng.fillUniform(new Float32Array(shape[0]! * shape[1]!), -0.05, 0.05) as Float32Array,
  });
  const sizes: Record<string, [number, number]> = {
    fc1: [784, 256],
    fc2: [256, 128],
    fc3: [128, 10],
  };
  const layers = new Map(
    Object.entries(sizes).map(([m, [din, dout]]) => [m, { A: u([8, din]), B: u([dout, 8]) }]),
  );
  const config = defaultPeftConfig({ r: 8, loraAlpha: 16, targetModules: Object.keys(sizes) });
  const adapters = `${dir}/adapters`;
  await Deno.mkdir(adapters, { recursive: true });
  await savePeftAdapter(`${adapters}/rot45`, {
    name: "rot45",
    config,
    layers,
    biases: new Map(),
    extra: new Map(),
  }, { sync: false });
  const merged = `${dir}/merged.onnx`;
  const model = await openModel(`${BASE}.onnx`);
  try {
    await exportAdapter(model, await loadAdapter(`${adapters}/rot45`), { out: merged });
  } finally {
    model.close();
  }
  return { adapters, merged };
}

/** `n` rotated MNIST digits as request bodies, each `{"inputs": [row], "adapter": name}`. */
export async function digitBodies(
  n: number,
  adapter: string | null,
): Promise<Uint8Array<ArrayBuffer>[]> {
  const digits = rotate(await loadMnist(), 45);
  const enc = new TextEncoder();
  return Array.from({ length: n }, (_, i) => {
    const r = (i * 37) % digits.rows;
    const row = Array.from(digits.x.subarray(r * PIXELS, (r + 1) * PIXELS), shortestFloat32);
    return enc.encode(JSON.stringify({ inputs: [row], adapter }));
  });
}

const loadAverage = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1]!;
const range = (v: number[], digits = 0) =>
  `${Math.min(...v).toFixed(digits)}–${Math.max(...v).toFixed(digits)}`;

async function main(rounds: number, extra: string[]): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ffwd_serve_http_" });
  try {
    const { adapters, merged } = await rot45Files(dir);
    const bodies = {
      rot45: await digitBodies(256, "rot45"),
      none: await digitBodies(256, null),
    };
    const ffwd = (args: string[]) => [
      `${ROOT}cli/main.ts`,
      "serve",
      "--model",
      `${BASE}.safetensors`,
      "--adapters-dir",
      adapters,
      "--port",
      "0",
      ...args,
    ];
    const servers = {
      plain: await spawnServer([`${ROOT}bench/_plain_server.ts`, merged]),
      ffwd: await spawnServer(ffwd(extra)),
    };
    const runs: { name: string; server: Spawned; body: Uint8Array<ArrayBuffer>[] }[] = [
      { name: "plain (merged ONNX)", server: servers.plain, body: bodies.rot45 },
      { name: "ffwd serve, rot45", server: servers.ffwd, body: bodies.rot45 },
      { name: "ffwd serve, no adapter", server: servers.ffwd, body: bodies.none },
    ];
    const loads = [
      { name: "8 clients", clients: 8, requests: 2000 },
      { name: "64 clients", clients: 64, requests: 4000 },
    ];
    /** Each run's result and its server's CPU µs per request. */
    const results = new Map<string, (LoadResult & { cpu: number })[]>();
    console.log(`load average ${loadAverage()} (start)`);
    console.log(`plain server: ${servers.plain.banner}`);
    console.log(`ffwd serve flags: ${extra.join(" ") || "(defaults)"}; ${rounds} rounds`);
    try {
      for (const r of runs) { // warm-up: compile, lazy adapter load, connections
        await load(`${r.server.url}/v1/predict`, (i) => r.body[i % r.body.length]!, {
          clients: 8,
          requests: 400,
        });
      }
      for (let round = 0; round < rounds; round++) {
        for (const l of loads) {
          for (const r of runs) {
            const cpu0 = await r.server.cpu();
            const res = await load(
              `${r.server.url}/v1/predict`,
              (i) => r.body[i % r.body.length]!,
              l,
            );
            const cpu = (await r.server.cpu() - cpu0) / res.requests * 1e6;
            if (res.failed) throw new Error(`${r.name}: ${res.failed} requests failed`);
            const key = `${l.name}|${r.name}`;
            results.set(key, [...(results.get(key) ?? []), { ...res, cpu }]);
            console.log(
              `round ${round + 1} ${l.name.padEnd(10)} ${r.name.padEnd(24)} ${
                res.rps.toFixed(0).padStart(6)
              } req/s  p50 ${res.p50.toFixed(2)} ms  p99 ${res.p99.toFixed(2)} ms  server CPU ${
                cpu.toFixed(0)
              } µs/req`,
            );
          }
        }
      }
    } finally {
      await servers.plain.stop();
      await servers.ffwd.stop();
    }
    console.log(`\nload average ${loadAverage()} (end); ${rounds} rounds`);
    for (const l of loads) {
      const plain = results.get(`${l.name}|${runs[0]!.name}`)!;
      for (const r of runs) {
        const mine = results.get(`${l.name}|${r.name}`)!;
        const rps = mine.map((m) => m.rps), p50 = mine.map((m) => m.p50);
        const ratio = r === runs[0]
          ? ""
          : `  ratio to plain per round: req/s ${
            range(mine.map((m, i) => m.rps / plain[i]!.rps), 2)
          } (median ${median(mine.map((m, i) => m.rps / plain[i]!.rps)).toFixed(2)}), p50 ${
            range(mine.map((m, i) => m.p50 / plain[i]!.p50), 2)
          } (median ${median(mine.map((m, i) => m.p50 / plain[i]!.p50)).toFixed(2)})`;
        console.log(
          `${l.name.padEnd(10)} ${r.name.padEnd(24)} ${range(rps)} req/s, p50 ${
            range(p50, 2)
          } ms, server CPU ${median(mine.map((m) => m.cpu)).toFixed(0)} µs/req (median)${ratio}`,
        );
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const sep = Deno.args.indexOf("--");
  const own = sep < 0 ? Deno.args : Deno.args.slice(0, sep);
  await main(Number(own[0] ?? 3), sep < 0 ? [] : Deno.args.slice(sep + 1));
}
