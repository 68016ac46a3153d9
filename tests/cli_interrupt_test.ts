/**
 * Interrupting `ffwd train`, as a user does: a real training process gets SIGINT once its first
 * metrics line is written. It finishes the step, saves the run (checkpoint, adapter, summary,
 * report), says how to resume and exits with 130; `ffwd train --resume DIR` alone then ends
 * byte for byte where the uninterrupted run ends, and its report shows the whole run. A second
 * signal stops at once, and the last checkpoint it leaves resumes the same way.
 */

import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { loadAdapter } from "../adapters/adapter.ts";
import { parseMetrics } from "../report/run.ts";
import { Rng } from "../src/rng.ts";
import { readCheckpoint } from "../workflows/checkpoint.ts";
import { withTempDir } from "./_assert.ts";
import { ffwd, spawnFfwd } from "./_cli.ts";

const MODEL = new URL("../fixtures/hf/fc_mlp/model.safetensors", import.meta.url).pathname;
const STEPS = 40 * 24; // 40 epochs of 192 training rows in batches of 8

/** Four classes from the signs of the first two of 8 inputs. */
async function writeData(path: string): Promise<void> {
  const rng = new Rng(5);
  const lines = Array.from({ length: 256 }, () => {
    const x = Array.from({ length: 8 }, () => Math.round(rng.uniform() * 200 - 100) / 100);
    return JSON.stringify({ x, y: (x[0]! > 0 ? 1 : 0) + (x[1]! > 0 ? 2 : 0) });
  });
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
}

/** A stream's text so far, and a promise of the whole. */
function collect(stream: ReadableStream<Uint8Array>): { text: string; done: Promise<string> } {
  const out = { text: "", done: Promise.resolve("") };
  out.done = (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) out.text += chunk;
    return out.text;
  })();
  return out;
}

async function until(what: string, ready: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function hasMetrics(dir: string): Promise<boolean> {
  try {
    return (await Deno.readTextFile(`${dir}/metrics.jsonl`)).includes("\n");
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Training lines of a run's metrics, one per step (a resumed run may log a step twice). */
async function steps(dir: string): Promise<number[]> {
  return parseMetrics(await Deno.readTextFile(`${dir}/metrics.jsonl`)).steps.map((s) => s.loss);
}

async function sameAdapter(dir: string, reference: string): Promise<void> {
  for (const file of ["adapter_model.safetensors", "adapter_config.json"]) {
    deepStrictEqual(
      await Deno.readFile(`${dir}/${file}`),
      await Deno.readFile(`${reference}/${file}`),
      `${dir}/${file}`,
    );
  }
  deepStrictEqual(await steps(dir), await steps(reference));
}

Deno.test("ffwd train on SIGINT saves the run and exits 130; --resume ends where the uninterrupted run ends", async (t) => {
  await withTempDir(async (dir) => {
    const data = `${dir}/train.jsonl`;
    await writeData(data);
    const args = (out: string, ...more: string[]) => [
      "train",
      ...["--model", MODEL, "--data", data, "--out", out, "--epochs", "40", "--batch-size", "8"],
      ...["--eval-split", "0.25", "--dropout", "0.1", "--schedule", "cosine", "--threads", "1"],
      ...more,
    ];
    const full = `${dir}/full`;
    const whole = await ffwd(...args(full));
    strictEqual(whole.code, 0, whole.stderr);

    await t.step(
      "one SIGINT: the step ends, the run is saved, and resuming completes it",
      async () => {
        const out = `${dir}/cut`;
        const child = spawnFfwd(...args(out));
        const stderr = collect(child.stderr), stdout = collect(child.stdout);
        await until("the first metrics line", () => hasMetrics(out));
        child.kill("SIGINT");
        strictEqual((await child.status).code, 130, await stderr.done);
        await stdout.done;
        const last = (await stderr.done).trimEnd().split("\n").at(-1)!;
        const said = /^interrupted at step (\d+); resume with: ffwd train --resume (.*)$/.exec(
          last,
        );
        ok(said && said[2] === out, last);
        const at = Number(said[1]);
        ok(at >= 1 && at < STEPS, `interrupted at step ${at} of ${STEPS}`);
        strictEqual((await readCheckpoint(out)).step, at);
        strictEqual((await loadAdapter(out)).training?.steps, at);
        const summary = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
        deepStrictEqual([summary.steps, summary.interrupted], [at, true]);
        ok((await Deno.readTextFile(`${out}/report.html`)).includes(">interrupted</span>"));

        const resumed = await ffwd("train", "--resume", out);
        strictEqual(resumed.code, 0, resumed.stderr);
        await sameAdapter(out, full);
        const report = await Deno.readTextFile(`${out}/report.html`);
        ok(
          report.includes(`${STEPS} steps \u00b7 40 evaluations`),
          "the report shows the whole run",
        );
        ok(!report.includes(">interrupted</span>"), "the resumed run is no longer interrupted");
      },
    );

    await t.step(
      "a second signal stops at once; the last checkpoint resumes to the same end",
      async () => {
        const out = `${dir}/abort`;
        const child = spawnFfwd(...args(out, "--checkpoint-every", "4"));
        const stderr = collect(child.stderr), stdout = collect(child.stdout);
        await until(
          "the first checkpoint",
          () => exists(`${out}/checkpoint/trainer_state.safetensors`),
        );
        child.kill("SIGINT");
        await until("the notice of the first signal", () => stderr.text.includes("interrupt:"));
        try {
          child.kill("SIGTERM");
        } catch { /* it may have finished saving already */ }
        strictEqual((await child.status).code, 130, await stderr.done);
        await stdout.done;
        match(await stderr.done, /stopped at once/);
        ok((await readCheckpoint(out)).step >= 1);
        // No folder swap was cut short: no staging or old copy is left beside the run.
        deepStrictEqual([...Deno.readDirSync(dir)].filter((e) => e.name.startsWith(".")), []);
        deepStrictEqual([...Deno.readDirSync(out)].filter((e) => e.name.startsWith(".")), []);
        // Flags win over the options the checkpoint saved: fewer checkpoints, the same numbers.
        const resumed = await ffwd("train", "--resume", out, "--checkpoint-every", "100000");
        strictEqual(resumed.code, 0, resumed.stderr);
        await sameAdapter(out, full);
      },
    );
  });
});
