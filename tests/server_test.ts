/**
 * The real server on a free loopback port, over HTTP: outputs equal `ffwd predict`, adapters
 * loaded, swapped, unloaded and evicted while requests are in flight, every error path, metrics,
 * and a shutdown that answers requests in flight.
 */

import { Command } from "@commander-js/extra-typings";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { predictFile, registerPredict } from "../cli/predict.ts";
import { type RunningServe, type ServeCliOptions, startServe } from "../cli/serve.ts";
import { call, MODEL, offline, randomRows, sameFloat32, writeAdapter } from "./_serve_fixtures.ts";

const PEFT = new URL("../fixtures/peft", import.meta.url).pathname;

/** Adapter folders a0…a3 and b0 in a fresh folder, plus one adapter outside it. */
async function adaptersDir(): Promise<{ dir: string; outside: string }> {
  const root = await Deno.makeTempDir();
  const dir = `${root}/adapters`;
  await Deno.mkdir(dir);
  for (const [i, n] of ["a0", "a1", "a2", "a3", "b0"].entries()) {
    await writeAdapter(`${dir}/${n}`, i);
  }
  const outside = `${root}/outside`;
  await writeAdapter(outside, 9);
  return { dir, outside };
}

async function start(
  opts: Partial<ServeCliOptions> = {},
): Promise<RunningServe & { dir: string; outside: string; url: string; stop(): Promise<void> }> {
  const { dir, outside } = await adaptersDir();
  const running = await startServe({ model: MODEL, adaptersDir: dir, port: 0, ...opts });
  const stop = async () => {
    await running.server.shutdown();
    await running.close();
    await Deno.remove(dir.slice(0, dir.lastIndexOf("/")), { recursive: true });
  };
  return { ...running, dir, outside, url: running.server.url, stop };
}

/** Waits until `rows` rows wait in the batcher (their snapshots are resolved). */
async function queued(s: RunningServe, rows: number): Promise<void> {
  for (let i = 0; s.server.queuedRows < rows; i++) {
    assert(i < 500, `only ${s.server.queuedRows} of ${rows} rows arrived`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const predict = (url: string, inputs: number[][], adapter: string | null, headers = {}) =>
  call(`${url}/v1/predict`, "POST", { inputs, adapter }, headers);

Deno.test("served outputs equal `ffwd predict` bit for bit, alone and in mixed batches", async () => {
  // `ffwd predict` skips weight pre-packing; packed and unpacked GEMMs may round differently.
  const s = await start({ maxWaitMs: 20, prepack: false });
  const rows = randomRows(6, 1);
  try {
    for (const a of ["a0", "a1", "a3", null]) {
      const want = await offline(a && `${s.dir}/${a}`, rows);
      const alone = await predict(s.url, rows, a);
      assertEquals(alone.status, 200, JSON.stringify(alone.json));
      assert(sameFloat32(alone.json.outputs as number[][], want), `adapter ${a} differs`);
      assertEquals(alone.json.adapter, a);
    }
    // Concurrent requests over several adapters run as mixed batches, with the same results.
    const names = ["a0", "a1", null, "a2", "a3", "a0", "b0", null];
    const results = await Promise.all(names.map((a, i) => predict(s.url, [rows[i % 6]!], a)));
    for (const [i, a] of names.entries()) {
      const want = await offline(a && `${s.dir}/${a}`, [rows[i % 6]!]);
      assert(sameFloat32(results[i]!.json.outputs as number[][], want), `mixed row ${i} differs`);
    }
    assert(s.server.metrics.batchRequests.count() < names.length + 4, "requests were batched");
  } finally {
    await s.stop();
  }
});

Deno.test("swap, unload and eviction while requests are in flight keep each on its version", async () => {
  const s = await start({ maxWaitMs: 1000, maxAdapters: 2 });
  const rows = randomRows(3, 2);
  const a0 = await offline(`${s.dir}/a0`, rows);
  const a1 = await offline(`${s.dir}/a1`, rows);
  const b0 = await offline(`${s.dir}/b0`, rows);
  try {
    const v1 = (await call(`${s.url}/v1/adapters`, "POST", { name: "a0", path: "a0" })).json;
    assertEquals(v1.source, "a0");
    const warm = await predict(s.url, rows, "a1"); // lazy load
    const inFlight = [predict(s.url, rows, "a0"), predict(s.url, rows, "a1")];
    let settled = false;
    Promise.all(inFlight).finally(() => settled = true);
    await queued(s, 6); // both have resolved their snapshots and wait for their batch
    const swapped = await call(`${s.url}/v1/adapters`, "POST", { name: "a0", path: "b0" });
    assertEquals(swapped.status, 201);
    const afterSwap = predict(s.url, rows, "a0");
    await queued(s, 9);
    assertEquals((await call(`${s.url}/v1/adapters/a0`, "DELETE")).status, 200);
    for (const n of ["a2", "a3"]) await call(`${s.url}/v1/adapters`, "POST", { name: n, path: n });
    const listed = (await call(`${s.url}/v1/adapters`, "GET")).json.adapters as { name: string }[];
    assertEquals(listed.map((a) => a.name), ["a2", "a3"]); // a1 evicted, a0 unloaded
    assert(!settled, "the requests were still in flight during the changes");
    const [r0, r1] = await Promise.all(inFlight);
    assertEquals([r0!.status, r0!.json.adapter_version], [200, v1.version]);
    assert(sameFloat32(r0!.json.outputs as number[][], a0), "in-flight a0 used the old weights");
    assertEquals(r1!.json.adapter_version, warm.json.adapter_version);
    assert(sameFloat32(r1!.json.outputs as number[][], a1), "evicted a1 still answered");
    const r2 = await afterSwap;
    assertEquals(r2.json.adapter_version, swapped.json.version);
    assert(sameFloat32(r2.json.outputs as number[][], b0), "the swapped name served b0");
    const back = await predict(s.url, rows, "a0"); // reloads lazily from <dir>/a0
    assert((back.json.adapter_version as number) > (swapped.json.version as number));
    assert(sameFloat32(back.json.outputs as number[][], a0), "a0 reloaded from its folder");
    assert(s.engine.stats.evictions >= 2, JSON.stringify(s.engine.stats));
  } finally {
    await s.stop();
  }
});

Deno.test("every error path answers JSON with the right status", async () => {
  const s = await start({ token: "s3cret", maxBodyBytes: 4096 });
  const auth = { authorization: "Bearer s3cret" };
  const ok = randomRows(2, 3);
  const expect = async (
    p: Promise<{ status: number; json: Record<string, unknown> }>,
    status: number,
    includes: string,
  ) => {
    const r = await p;
    assertEquals(r.status, status, JSON.stringify(r.json));
    assert(String(r.json.error).includes(includes), `"${r.json.error}" lacks "${includes}"`);
  };
  try {
    await expect(predict(s.url, ok, null), 401, "bearer token");
    await expect(predict(s.url, ok, null, { authorization: "Bearer s3cre" }), 401, "token");
    await expect(predict(s.url, ok, null, { authorization: "s3cret" }), 401, "token");
    assertEquals((await call(`${s.url}/healthz`, "GET")).status, 200);
    assertEquals((await predict(s.url, ok, null, auth)).status, 200);
    const post = (body: unknown) => call(`${s.url}/v1/predict`, "POST", body, auth);
    await expect(post('{"inputs": [[1, 2'), 400, "Malformed JSON");
    await expect(
      post({ inputs: [ok[0], [1, 2, 3, 4, 5]] }),
      400,
      "inputs[1] has 5 values, expected 8",
    );
    await expect(post({ inputs: [[1, "x", 3, 4, 5, 6, 7, 8]] }), 400, "inputs[0][1]");
    await expect(post({ adapter: "a0" }), 400, "inputs");
    await expect(post({ inputs: ok, adapter: "../a0" }), 400, "adapter");
    await expect(post({ inputs: ok, adapter: "nope" }), 404, 'Unknown adapter "nope"');
    await expect(post({ inputs: randomRows(40, 4) }), 413, "over the limit of 4096 bytes");
    const chunked = new ReadableStream<Uint8Array>({ // no content-length: counted while read
      start(c) {
        for (let i = 0; i < 3; i++) c.enqueue(new TextEncoder().encode(" ".repeat(2000)));
        c.close();
      },
    });
    const res = await fetch(`${s.url}/v1/predict`, {
      method: "POST",
      body: chunked,
      headers: auth,
    });
    assertEquals([res.status, (await res.json()).error], [
      413,
      "Request body is over the limit of 4096 bytes",
    ]);
    const add = (name: string, path: string) =>
      call(`${s.url}/v1/adapters`, "POST", { name, path }, auth);
    await expect(add("x", s.outside), 403, "outside the adapters folder");
    await expect(add("x", "../outside"), 403, "outside");
    await Deno.symlink(s.outside, `${s.dir}/link`);
    await expect(add("x", "link"), 403, "outside");
    await expect(post({ inputs: ok, adapter: "link" }), 403, "outside"); // lazy load by name
    await expect(add("x", "missing"), 404, "does not exist");
    await Deno.mkdir(`${s.dir}/other`);
    for (const f of ["adapter_config.json", "adapter_model.safetensors"]) {
      await Deno.copyFile(`${PEFT}/mlp_lora/${f}`, `${s.dir}/other/${f}`);
    }
    await expect(add("x", "other"), 422, "modules_to_save");
    assertEquals((await add("x", "a1")).status, 201);
    await expect(call(`${s.url}/v1/nothing`, "GET", undefined, auth), 404, "No route");
    await expect(call(`${s.url}/v1/predict`, "GET", undefined, auth), 405, "not allowed");
    await expect(call(`${s.url}/v1/adapters/zz`, "DELETE", undefined, auth), 404, "zz");
    const metrics = await (await fetch(`${s.url}/metrics`, { headers: auth })).text();
    for (
      const line of [
        'ffwd_http_requests_total{route="/v1/predict",method="POST",status="401"} 3',
        'ffwd_http_errors_total{route="/v1/predict",status="400"} 5',
        'ffwd_http_request_duration_seconds_count{route="/v1/predict"}',
        "ffwd_batch_rows_bucket",
        "ffwd_adapter_loads_total 1\n",
        "ffwd_adapter_evictions_total 0",
      ]
    ) assert(metrics.includes(line), `metrics lack ${line}:\n${metrics}`);
  } finally {
    await s.stop();
  }
});

Deno.test("shutdown answers the requests in flight, then refuses connections", async () => {
  const s = await start({ maxWaitMs: 1000 });
  const rows = randomRows(2, 5);
  const want = await offline(`${s.dir}/a2`, rows);
  const inFlight = Array.from({ length: 5 }, () => predict(s.url, rows, "a2"));
  await queued(s, 10);
  const stopped = s.stop();
  const results = await Promise.all(inFlight);
  await stopped;
  for (const r of results) {
    assertEquals(r.status, 200);
    assert(sameFloat32(r.json.outputs as number[][], want), "in-flight result");
  }
  let refused = false;
  await fetch(`${s.url}/healthz`).then((r) => r.body?.cancel(), () => refused = true);
  assert(refused, "the server still accepts connections");
});

Deno.test("`ffwd predict --out` writes one {y} line per row, equal to the engine's output", async () => {
  const { dir } = await adaptersDir();
  const rows = randomRows(7, 6);
  const data = `${dir}/x.jsonl`;
  await Deno.writeTextFile(data, rows.map((x) => JSON.stringify({ x, y: 0 })).join("\n"));
  const program = new Command().option("--debug").exitOverride();
  registerPredict(program);
  const out = `${dir}/y.jsonl`;
  const args = ["predict", "--model", MODEL, "--adapter", `${dir}/a1`, "--data", data];
  await program.parseAsync([...args, "--out", out, "--batch-size", "3"], { from: "user" });
  const lines = (await Deno.readTextFile(out)).trim().split("\n").map((l) => JSON.parse(l).y);
  assert(sameFloat32(lines, await offline(`${dir}/a1`, rows)), "predict --out differs");
});

Deno.test("adapters with modules_to_save or trained biases are refused, not served without them", async () => {
  const data = await Deno.makeTempFile({ suffix: ".jsonl" });
  await Deno.writeTextFile(data, '{"x": [1, 2, 3, 4, 5, 6]}\n');
  for (const [name, what] of [["mlp_lora", "modules_to_save"], ["mlp_dora", "biases"]]) {
    await assertRejects(
      () =>
        predictFile({
          model: `${PEFT}/${name}/base.safetensors`,
          adapter: `${PEFT}/${name}`,
          data,
        }),
      TypeError,
      what,
    );
  }
});
