/**
 * A bounded load test of the real server on loopback: 8 concurrent clients send 2000 requests over
 * 8 adapter names (and the base) while a control loop swaps adapters to other folders, unloads
 * them, and the cache (4 adapters) evicts. Every response must be 200 and equal, bit for bit, to
 * `ffwd predict` for the adapter folder (version) it names. Prints requests/s and p50/p99 latency.
 */

import { assert, assertEquals } from "./_assert.ts";
import { startServe } from "../cli/serve.ts";
import { Rng } from "../src/rng.ts";
import { call, MODEL, offline, randomRows, sameFloat32, writeAdapter } from "./_serve_fixtures.ts";

const CLIENTS = 8;
const REQUESTS = 2000;
const NAMES = Array.from({ length: 8 }, (_, i) => `a${i}`);
const TIME_LIMIT_MS = 60_000;

interface Answer {
  status: number;
  ms: number;
  adapter: string | null;
  version: number | null;
  source: string | null;
  rows: number[];
  outputs: number[][];
}

Deno.test("load: 2000 requests from 8 clients over 8 adapters with swaps and unloads", async () => {
  const dir = await Deno.makeTempDir();
  const folders = NAMES.flatMap((n) => [n, `${n}_v2`]);
  for (const [i, f] of folders.entries()) await writeAdapter(`${dir}/${f}`, 20 + i);
  const pool = randomRows(32, 11);
  const expected = new Map<string | null, number[][]>([[null, await offline(null, pool)]]);
  for (const f of folders) expected.set(f, await offline(`${dir}/${f}`, pool));

  const running = await startServe({
    model: MODEL,
    adaptersDir: dir,
    port: 0,
    maxAdapters: 4,
    maxBatch: 64,
    maxWaitMs: 2,
  });
  const url = running.server.url;
  const answers: Answer[] = [];
  const control: number[] = [];
  let sent = 0;
  const t0 = performance.now();

  const client = async (id: number) => {
    const rng = new Rng(100 + id);
    while (sent < REQUESTS && performance.now() - t0 < TIME_LIMIT_MS) {
      sent++;
      const k = Math.floor(rng.uniform() * (NAMES.length + 1));
      const adapter = k < NAMES.length ? NAMES[k]! : null;
      const rows = Array.from(
        { length: 1 + Math.floor(rng.uniform() * 4) },
        () => Math.floor(rng.uniform() * pool.length),
      );
      const start = performance.now();
      const r = await call(`${url}/v1/predict`, "POST", {
        inputs: rows.map((i) => pool[i]),
        adapter,
      });
      answers.push({
        status: r.status,
        ms: performance.now() - start,
        adapter,
        version: r.json.adapter_version as number | null,
        source: r.json.adapter_source as string | null,
        rows,
        outputs: r.json.outputs as number[][],
      });
    }
  };
  const controller = async (done: () => boolean) => {
    const rng = new Rng(7);
    while (!done()) {
      await new Promise((r) => setTimeout(r, 15));
      const name = NAMES[Math.floor(rng.uniform() * NAMES.length)]!;
      const op = rng.uniform();
      const r = op < 0.3
        ? await call(`${url}/v1/adapters/${name}`, "DELETE")
        : await call(`${url}/v1/adapters`, "POST", { name, path: op < 0.65 ? `${name}_v2` : name });
      control.push(r.status);
    }
  };

  let finished = false;
  const ctl = controller(() => finished);
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
  const elapsed = performance.now() - t0;
  finished = true;
  await ctl;
  const metrics = await (await fetch(`${url}/metrics`)).text();
  await running.server.shutdown();
  await running.close();
  await Deno.remove(dir, { recursive: true });

  const lat = answers.map((a) => a.ms).sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!.toFixed(2);
  console.log(
    `${answers.length} requests in ${(elapsed / 1000).toFixed(2)} s: ${
      (answers.length / elapsed * 1000).toFixed(0)
    } req/s, p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms; ${control.length} swaps/unloads; ` +
      `engine ${JSON.stringify(running.engine.stats)}`,
  );
  assertEquals(answers.length, REQUESTS, "the run hit its time limit");
  assert(elapsed < TIME_LIMIT_MS);
  assertEquals(answers.filter((a) => a.status !== 200).map((a) => a.status), []);
  assert(control.every((s) => s < 500), `control statuses ${control}`);
  const sourceOf = new Map<number, string>();
  for (const a of answers) {
    if (a.adapter === null) {
      assertEquals([a.version, a.source], [null, null]);
    } else {
      assert(a.source === a.adapter || a.source === `${a.adapter}_v2`, `source ${a.source}`);
      assertEquals(sourceOf.get(a.version!) ?? a.source, a.source, `version ${a.version}`);
      sourceOf.set(a.version!, a.source!);
    }
    const want = a.rows.map((i) => expected.get(a.source)![i]!);
    assert(sameFloat32(a.outputs, want), `${a.adapter} v${a.version} (${a.source}) differs`);
  }
  assert(sourceOf.size > NAMES.length, "adapters were replaced during the run");
  assert(running.engine.stats.evictions > 0, "the cache evicted");
  assert(/ffwd_batch_requests_count \d+/.test(metrics));
});
