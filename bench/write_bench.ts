/**
 * One large `write` call against `writeAll`'s 1 MiB pieces (`src/fs/atomic.ts`), side by side in
 * rounds: a 512 MiB buffer written into the page cache both ways, in a fresh file each time.
 *
 * ```sh
 * deno run --allow-read --allow-write bench/write_bench.ts [rounds]
 * ```
 *
 * @module
 */

import { writeAll } from "../src/fs/atomic.ts";

if (import.meta.main) {
  const rounds = Number(Deno.args[0] ?? 3);
  const bytes = new Uint8Array(512 << 20).fill(7);
  const dir = await Deno.makeTempDir({ prefix: "ffwd_write_bench_" });
  try {
    for (let r = 0; r < rounds; r++) {
      const times: string[] = [];
      for (
        const [how, write] of [
          ["one call", async (f: Deno.FsFile) => {
            for (let done = 0; done < bytes.length;) done += await f.write(bytes.subarray(done));
          }],
          ["1 MiB pieces", (f: Deno.FsFile) => writeAll(f, bytes)],
        ] as const
      ) {
        using file = await Deno.open(`${dir}/f`, { write: true, create: true, truncate: true });
        const t0 = performance.now();
        await write(file);
        times.push(`${how} ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      }
      console.log(`round ${r}: ${times.join(", ")}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
