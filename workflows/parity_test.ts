import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { openTfjsModel } from "../src/models/tfjs.ts";
import type { Tensor } from "../src/tensor.ts";
import { compareRuns, failures, makeProbe, type ParityReport, storageTolerance } from "./parity.ts";

const TFJS = new URL("../fixtures/tfjs/dense/model.json", import.meta.url).pathname;

const t = (values: number[]): Tensor => ({
  dtype: "F32",
  shape: [values.length],
  data: new Float32Array(values),
});

Deno.test("storageTolerance() is 1e-5 for float32 and 8 half-units of the coarsest half-precision storage", () => {
  strictEqual(storageTolerance(["F32"]).relative, 1e-5);
  strictEqual(storageTolerance(["F32", "F16"]).relative, 2 ** -8);
  strictEqual(storageTolerance(["F16", "BF16"]).relative, 2 ** -6);
  ok(/2\^-9/.test(storageTolerance(["BF16"]).reason));
});

Deno.test("compareRuns() measures each pair relative to the reference's largest magnitude", () => {
  const [out] = compareRuns(
    { unmerged: [t([1, -4, 0])], merged: [t([1, -4.0004, 0])], file: [t([1, -4.0004, 0.0001])] },
    ["y"],
    2e-4,
  );
  deepStrictEqual(out!.pairs.map((p) => p.pair), [
    "unmerged vs merged",
    "unmerged vs file",
    "merged vs file",
  ]);
  const [ab, ac, bc] = out!.pairs;
  ok(Math.abs(ab!.maxRel - 1e-4) < 1e-7 && ab!.pass);
  ok(ac!.pass && ac!.tolerance === 2e-4);
  // merged vs file holds the same weights: 1e-5 whatever the storage, so 0.0001 / 4 fails
  strictEqual(bc!.tolerance, 1e-5);
  strictEqual(bc!.pass, false);
  const nan = compareRuns({ unmerged: [t([1])], merged: [t([NaN])] }, ["y"], 1)[0]!.pairs[0]!;
  strictEqual(nan.pass, false);
  const report = { outputs: [out!] } as unknown as ParityReport;
  ok(
    /output "y": merged vs file relative error 2\.5\d*e-5 > 0\.00001/.test(failures(report)),
    failures(report),
  );
});

Deno.test("makeProbe() is seeded and reads JSONL probe files of the model's width", async () => {
  const model = await openTfjsModel(TFJS);
  const a = await makeProbe(model, { rows: 3, seed: 5 });
  const b = await makeProbe(model, { rows: 3, seed: 5 });
  deepStrictEqual(a.feeds.fc1_input!.shape, [3, 8]);
  deepStrictEqual(a.feeds.fc1_input!.data, b.feeds.fc1_input!.data);
  strictEqual(a.source, "seeded normal (seed 5)");
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/p.jsonl`,
    `${JSON.stringify({ x: [1, 2, 3, 4, 5, 6, 7, 8] })}\n`,
  );
  const file = await makeProbe(model, { file: `${dir}/p.jsonl` });
  deepStrictEqual([...file.feeds.fc1_input!.data], [1, 2, 3, 4, 5, 6, 7, 8]);
  await Deno.writeTextFile(`${dir}/bad.jsonl`, `${JSON.stringify({ x: [1, 2] })}\n`);
  await rejects(makeProbe(model, { file: `${dir}/bad.jsonl` }), /2 values, expected 8|expected 8/);
  await Deno.remove(dir, { recursive: true });
});
