// Loading an MNIST-sized training set (60,000 rows × 784 floats) from JSON Lines and from CSV:
// `deno bench --allow-read --allow-write bench/data_files_bench.ts`. Before timing, the two files
// are loaded once and checked to give the same rows, and the buffers sized from the file.
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { writeAll } from "../src/fs/atomic.ts";
import { loadDataset } from "../src/data/files.ts";

const ROWS = 60_000;
const WIDTH = 784;
const dir = await Deno.makeTempDir();
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

// 101 distinct MNIST-like rows (most pixels 0, the rest k / 255), repeated: writing stays quick and
// the parser still sees 60,000 lines.
let seed = 1;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const pool = Array.from({ length: 101 }, () => {
  const ink = random() / 2; // rows differ in length, as digits do
  const x = Array.from(
    { length: WIDTH },
    () => random() < ink ? Math.floor(random() * 256) / 255 : 0,
  );
  return { x, json: JSON.stringify(x), csv: x.join(",") };
});
const encoder = new TextEncoder();
async function write(name: string, line: (r: number) => string): Promise<string> {
  const path = `${dir}/${name}`;
  using out = await Deno.open(path, { write: true, create: true });
  for (let r = 0; r < ROWS; r += 500) {
    let text = "";
    for (let k = r; k < r + 500; k++) text += line(k);
    await writeAll(out, encoder.encode(text));
  }
  return path;
}
const jsonl = await write("big.jsonl", (r) => `{"x":${pool[r % 101]!.json},"y":${r % 10}}\n`);
const csv = await write("big.csv", (r) => `${r % 10},${pool[r % 101]!.csv}\n`);

{
  const a = await loadDataset(jsonl, { width: WIDTH });
  const b = await loadDataset(csv, { width: WIDTH, labelColumn: 0 });
  strictEqual(a.rows, ROWS);
  deepStrictEqual(a.x.subarray(202 * WIDTH, 203 * WIDTH), new Float32Array(pool[0]!.x));
  ok(a.x.every((v, i) => v === b.x[i]), "the JSONL and CSV files load to different rows");
  deepStrictEqual(a.y, b.y);
  // the buffers were sized from the file: little spare memory, no trimming copy
  ok(a.x.buffer.byteLength <= a.x.byteLength * 1.125, `${a.x.buffer.byteLength} bytes held`);
}

Deno.bench("loadDataset() 60,000 × 784 JSON Lines (110 MB)", { n: 3, warmup: 1 }, async () => {
  strictEqual((await loadDataset(jsonl, { width: WIDTH })).rows, ROWS);
});

Deno.bench("loadDataset() 60,000 × 784 CSV (100 MB)", { n: 3, warmup: 1 }, async () => {
  strictEqual((await loadDataset(csv, { width: WIDTH, labelColumn: 0 })).rows, ROWS);
});
