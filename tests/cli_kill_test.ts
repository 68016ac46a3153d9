// A merge or an export killed outright (SIGKILL: no handler runs) leaves either no output or a
// complete one: every file is written to a staging name and renamed into place whole.
import { ok } from "node:assert/strict";
import { withTempDir } from "./_assert.ts";
import { spawnFfwd } from "./_cli.ts";
import { randomAdapter } from "./_random_adapter.ts";
import { savePeftAdapter } from "../adapters/peft.ts";
import { openSafetensors, writeSafetensors } from "../src/io/safetensors.ts";
import { openModel } from "../src/models/open.ts";
import { Rng } from "../src/rng.ts";

/** An MLP large enough (2 × 1024×1024 F32, 8 MiB) that writing it takes a while. */
async function makeBase(dir: string): Promise<string> {
  const rng = new Rng(9);
  const t = (shape: number[]) => ({
    dtype: "F32" as const,
    shape,
    data: rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b)), 0, 0.02) as Float32Array,
  });
  const path = `${dir}/base.safetensors`;
  await writeSafetensors(
    path,
    new Map([
      ["fc1.weight", t([1024, 1024])],
      ["fc1.bias", t([1024])],
      ["fc2.weight", t([1024, 1024])],
      ["fc2.bias", t([1024])],
    ]),
  );
  return path;
}

/** Whether `path` is absent, or a whole safetensors file whose tensors all read. */
async function absentOrWhole(path: string): Promise<boolean> {
  if (!(await Deno.stat(path).then(() => true, () => false))) return true;
  using f = await openSafetensors(path);
  for (const t of f.header.tensors) await f.readTensor(t.name);
  return f.header.tensors.length === 4;
}

Deno.test("a merge or export killed with SIGKILL leaves no output or a complete one", async () => {
  await withTempDir(async (dir) => {
    const base = await makeBase(dir);
    const model = await openModel(base);
    await savePeftAdapter(`${dir}/adapter`, randomAdapter(model, { r: 4, seed: 2 }));
    model.close();
    let completed = 0, killed = 0;
    for (const [k, delay] of [50, 150, 300, 450, 600, 900, 1400, 2500].entries()) {
      for (const command of ["merge", "export"]) {
        const out = `${dir}/out_${command}_${k}/merged.safetensors`;
        const child = spawnFfwd(
          command,
          "--model",
          base,
          "--adapter",
          `${dir}/adapter`,
          "--out",
          out,
        );
        await new Promise((r) => setTimeout(r, delay));
        try {
          child.kill("SIGKILL");
        } catch { /* it finished first */ }
        const status = await child.status;
        await child.stdout.cancel();
        await child.stderr.cancel();
        ok(await absentOrWhole(out), `${command} killed after ${delay} ms left a partial ${out}`);
        if (status.success) completed++;
        if (status.signal === "SIGKILL") killed++;
      }
    }
    // Both kinds of ending happened: runs killed on the way, and runs that finished (whose whole
    // outputs the check above read back).
    ok(killed > 0 && completed > 0, `${killed} killed, ${completed} completed`);
  });
});
