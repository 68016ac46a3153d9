/**
 * `ffwd --help` and `ffwd inspect` must start without onnxruntime or TF.js: the commands that need
 * them (train, predict, serve, merge, export, bench) import them when they run. Checked on the
 * static module graph of `cli/main.ts` (`deno info --json`, dynamic imports left out), and by
 * running `--help` and `inspect` without `--allow-ffi`, which onnxruntime-node needs to load.
 */

import { assert, assertEquals } from "./_assert.ts";
import { denoBinary } from "./_cli.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MAIN = `${ROOT}cli/main.ts`;

/** `deno <args>` from the repository root, `NO_COLOR=1`. */
async function deno(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(denoBinary(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

interface ModuleInfo {
  specifier: string;
  dependencies?: { code?: { specifier?: string }; isDynamic?: boolean }[];
}

/** The modules `root` imports statically, transitively (by specifier, redirects followed). */
async function staticGraph(root: string): Promise<Set<string>> {
  const info = await deno("info", "--json", root);
  assertEquals(info.code, 0, info.stderr);
  const { modules, redirects = {}, roots } = JSON.parse(info.stdout) as {
    modules: ModuleInfo[];
    redirects?: Record<string, string>;
    roots: string[];
  };
  const follow = (s: string) => redirects[s] ?? s;
  const deps = new Map(modules.map((m) => [
    m.specifier,
    (m.dependencies ?? []).filter((d) => !d.isDynamic && d.code?.specifier)
      .map((d) => follow(d.code!.specifier!)),
  ]));
  const seen = new Set<string>();
  const todo = roots.map(follow);
  while (todo.length) {
    const s = todo.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    todo.push(...(deps.get(s) ?? []));
  }
  return seen;
}

Deno.test("cli/main.ts does not import onnxruntime-node or TF.js statically", async () => {
  const graph = await staticGraph(MAIN);
  assert(graph.has(new URL("../cli/serve.ts", import.meta.url).href), "serve is registered");
  const heavy = [...graph].filter((s) => /onnxruntime|@tensorflow/.test(s));
  assertEquals(heavy, [], `statically imported: ${heavy.join(", ")}`);
});

Deno.test("ffwd --help and inspect run without --allow-ffi (onnxruntime is not loaded)", async () => {
  const help = await deno("run", "--allow-read", MAIN, "--help");
  assertEquals(help.code, 0, help.stderr);
  assert(help.stdout.includes("serve"), help.stdout);
  for (const file of ["fixtures/mnist/base.onnx", "fixtures/mnist/base.safetensors"]) {
    const r = await deno("run", "--allow-read", "--allow-env", MAIN, "inspect", file);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.startsWith(file), r.stdout);
  }
});
