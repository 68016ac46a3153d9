/**
 * `ffwd serve --prepack-cache DIR` run as a user runs it: the first start saves an entry, the
 * second opens it, both answer as a server without the cache does; `--no-prepack` with it is a
 * usage error.
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { withTempDir } from "./_assert.ts";
import { ffwd, spawnFfwd } from "./_cli.ts";

const MODEL = new URL("../fixtures/mnist/base.safetensors", import.meta.url).pathname;

/** Starts `ffwd serve` with `flags`, predicts one row, stops it; returns its stderr and answer. */
async function serveOnce(adapters: string, flags: string[]) {
  const child = spawnFfwd(
    "serve",
    "--model",
    MODEL,
    "--adapters-dir",
    adapters,
    "--port",
    "0",
    ...flags,
  );
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!/Listening on (\S+)/.test(out)) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const url = /Listening on (\S+)/.exec(out)?.[1];
  let answer: unknown = null;
  if (url) {
    const res = await fetch(new URL("/v1/predict", url), {
      method: "POST",
      body: JSON.stringify({ inputs: [new Array(784).fill(0.5)] }),
    });
    answer = (await res.json()).outputs;
    child.kill("SIGTERM");
  }
  if (!url) child.kill("SIGTERM");
  await reader.cancel();
  await child.status;
  return { stderr: await stderr, answer, url };
}

Deno.test("ffwd serve --prepack-cache saves an entry on the first start and opens it on the next", async () => {
  await withTempDir(async (dir) => {
    const cache = `${dir}/cache`;
    const plain = await serveOnce(dir, []);
    const first = await serveOnce(dir, ["--prepack-cache", cache]);
    const second = await serveOnce(dir, ["--prepack-cache", cache]);
    ok(plain.url && first.url && second.url, first.stderr + second.stderr);
    ok(/^Pre-packed cache: saved \S+/m.test(first.stderr), first.stderr);
    ok(/^Pre-packed cache: opened \S+/m.test(second.stderr), second.stderr);
    deepStrictEqual(first.answer, plain.answer);
    deepStrictEqual(second.answer, plain.answer);
    const entries = [...Deno.readDirSync(cache)].filter((e) => e.isDirectory);
    strictEqual(entries.length, 1, JSON.stringify(entries));
  });
});

Deno.test("ffwd serve --prepack-cache with --no-prepack exits 2", async () => {
  await withTempDir(async (dir) => {
    const r = await ffwd(
      "serve",
      "--model",
      MODEL,
      "--adapters-dir",
      dir,
      "--prepack-cache",
      `${dir}/cache`,
      "--no-prepack",
    );
    strictEqual(r.code, 2, r.stderr);
    ok(r.stderr.startsWith("error: --prepack-cache needs pre-packing"), r.stderr);
    deepStrictEqual([...Deno.readDirSync(dir)], []);
  });
});
