// The load time of an MNIST-sized training set, printed and not asserted (machines differ). Run
// alone with `deno test --allow-read --allow-write src/train/data_files_timing_test.ts`.
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import process from "node:process";
import { writeAll } from "../io/atomic.ts";
import { loadDataset, type LoadDatasetOptions } from "./data_files.ts";

Deno.test("loadDataset() reads 60,000 rows of 784 floats of JSONL and CSV (timing)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const rows = 60_000;
    const width = 784;
    // 101 distinct MNIST-like rows (most pixels 0, the rest k / 255), repeated: writing stays quick
    // and the parser still sees 60,000 lines.
    let seed = 1;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const pool = Array.from({ length: 101 }, () => {
      const ink = random() / 2; // rows differ in length, as digits do
      const x = Array.from(
        { length: width },
        () => random() < ink ? Math.floor(random() * 256) / 255 : 0,
      );
      return { x, json: JSON.stringify(x), csv: x.join(",") };
    });
    const encoder = new TextEncoder();
    const write = async (name: string, line: (r: number) => string) => {
      using out = await Deno.open(`${dir}/${name}`, { write: true, create: true });
      for (let r = 0; r < rows; r += 500) {
        let text = "";
        for (let k = r; k < r + 500; k++) text += line(k);
        await writeAll(out, encoder.encode(text));
      }
    };
    await write("big.jsonl", (r) => `{"x":${pool[r % 101]!.json},"y":${r % 10}}\n`);
    await write("big.csv", (r) => `${r % 10},${pool[r % 101]!.csv}\n`);
    const mb = (name: string) => (Deno.statSync(`${dir}/${name}`).size / 1e6).toFixed(0);
    // CPU time is printed beside wall time: on a busy machine the wall time mostly waits.
    const timed = async (name: string, options: LoadDatasetOptions) => {
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      const data = await loadDataset(`${dir}/${name}`, options);
      const cpu = process.cpuUsage(cpu0);
      const s = (ms: number) => (ms / 1000).toFixed(2);
      console.log(
        `${name}: ${rows} × ${width} (${mb(name)} MB) in ${s(performance.now() - t0)} s ` +
          `(CPU ${s(cpu.user / 1000)} s user, ${s(cpu.system / 1000)} s system)`,
      );
      return data;
    };
    const a = await timed("big.jsonl", { width });
    const b = await timed("big.csv", { width, labelColumn: 0 });
    strictEqual(a.rows, rows);
    deepStrictEqual(a.x.subarray(202 * width, 203 * width), new Float32Array(pool[0]!.x));
    let differ = 0;
    for (let i = 0; i < a.x.length; i++) if (a.x[i] !== b.x[i]) differ++;
    strictEqual(differ, 0);
    deepStrictEqual(a.y, b.y);
    // the buffers were sized from the file: little spare memory, no trimming copy
    ok(a.x.buffer.byteLength <= a.x.byteLength * 1.125, `${a.x.buffer.byteLength} bytes held`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
