/**
 * Which layers get adapters is visible everywhere, run as a user runs `ffwd`: `--help` says what
 * `all-linear` leaves out, `ffwd train` lists the adapted layers and the frozen ones as it starts,
 * `adapter_config.json` saves the layers `all-linear` resolved to (as PEFT does) and keeps names
 * and regular expressions as given, and the report and `ffwd inspect` show them.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { withTempDir } from "./_assert.ts";
import { ffwd } from "./_cli.ts";

const MODEL = new URL("../fixtures/hf/fc_mlp/model.safetensors", import.meta.url).pathname;

async function writeData(path: string): Promise<void> {
  const lines = Array.from({ length: 16 }, (_, i) => {
    const x = Array.from({ length: 8 }, (_, j) => ((i * 5 + j) % 7) / 7 - 0.5);
    return JSON.stringify({ x, y: i % 4 });
  });
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
}

Deno.test("ffwd train --help says what all-linear leaves out and that bce takes logits", async () => {
  const help = (await ffwd("train", "--help")).stdout.replace(/\s+/g, " ");
  ok(help.includes("all-linear (every linear layer but a whole model's output layer"), help);
  ok(help.includes("bce (binary cross-entropy on logits, targets in [0, 1])"), help);
  ok(help.includes("cross_entropy (class labels or one-hot rows, on logits)"), help);
});

Deno.test("all-linear: the run lists its layers, the config saves their names, report and inspect show them", async () => {
  await withTempDir(async (dir) => {
    await writeData(`${dir}/train.jsonl`);
    const out = `${dir}/run`;
    const r = await ffwd(
      "train",
      ...["--model", MODEL, "--data", `${dir}/train.jsonl`, "--out", out, "--max-steps", "1"],
    );
    strictEqual(r.code, 0, r.stderr);
    const err = r.stderr.split("\n");
    deepStrictEqual(err.slice(0, 4), [
      "training LoRA adapters on 2 of 3 linear layers, rank 8, alpha 16:",
      "  fc1  [8 → 16]",
      "  fc2  [16 → 16]",
      "left frozen: fc3 (all-linear leaves out a whole model's output layer, as PEFT does; " +
      "--targets '/.*/' adapts every layer)",
    ]);
    ok(r.stdout.startsWith("trained 1 step in "), r.stdout);
    const config = JSON.parse(await Deno.readTextFile(`${out}/adapter_config.json`));
    deepStrictEqual(config.target_modules, ["fc1", "fc2"]);
    const training = JSON.parse(await Deno.readTextFile(`${out}/ffwd_training.json`));
    strictEqual(training.targets, "all-linear");
    const report = await Deno.readTextFile(`${out}/report.html`);
    ok(report.includes(`<dd><span class="chip">fc1</span><span class="chip">fc2</span></dd>`));
    ok(!report.includes("regular expression"), "all-linear is not a regular expression");
    const inspect = await ffwd("inspect", out);
    ok(/\n {2}targets +fc1, fc2\n/.test(inspect.stdout), inspect.stdout);
  });
});

Deno.test("a regular expression is kept in the config; report and inspect show the layers it matched", async () => {
  await withTempDir(async (dir) => {
    await writeData(`${dir}/train.jsonl`);
    const out = `${dir}/run`;
    const r = await ffwd(
      "train",
      ...["--model", MODEL, "--data", `${dir}/train.jsonl`, "--out", out, "--max-steps", "2"],
      ...["--targets", "/fc[13]/", "--rank", "2"],
    );
    strictEqual(r.code, 0, r.stderr);
    ok(r.stderr.startsWith("training LoRA adapters on 2 of 3 linear layers, rank 2, alpha 4:\n"));
    ok(r.stderr.includes("\nleft frozen: fc2\n"), r.stderr);
    ok(r.stdout.startsWith("trained 2 steps in "), r.stdout);
    const config = JSON.parse(await Deno.readTextFile(`${out}/adapter_config.json`));
    strictEqual(config.target_modules, "fc[13]");
    const report = await Deno.readTextFile(`${out}/report.html`);
    ok(report.includes(`<code>fc[13]</code> <span class="meta">(regular expression)</span>`));
    ok(report.includes(`<dt>adapted</dt><dd><span class="chip">fc1</span><span class="chip">fc3`));
    const inspect = await ffwd("inspect", out);
    ok(inspect.stdout.includes("targets              fc[13] (regular expression): fc1, fc3"));
  });
});
