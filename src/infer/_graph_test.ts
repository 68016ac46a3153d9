import { assertEquals, assertRejects } from "../../tests/_assert.ts";
import type { Session } from "../engine/runtime.ts";
import { CurrentGraph, type ServingGraph } from "./_graph.ts";

/** A graph whose session records its release in `released`. */
function fake(name: string, dora: boolean, released: string[]): ServingGraph {
  const release = () => (released.push(name), Promise.resolve());
  return { session: { release } as unknown as Session, stacker: null, outputName: name, dora };
}

Deno.test("a replaced graph's session is released after the last run on it, not before", async () => {
  const released: string[] = [];
  const graphs = new CurrentGraph(
    fake("lora", false, released),
    () => Promise.resolve(fake("dora", true, released)),
  );
  let finish!: () => void;
  const gate = new Promise<void>((r) => finish = r);
  const inFlight = graphs.use(async (g) => (await gate, g.outputName));
  await graphs.ensureDora();
  assertEquals([graphs.graph.outputName, released], ["dora", []]);
  assertEquals(await graphs.use((g) => Promise.resolve(g.outputName)), "dora");
  finish();
  assertEquals(await inFlight, "lora");
  assertEquals(released, ["lora"]);
  await graphs.release();
  assertEquals(released, ["lora", "dora"]);
});

Deno.test("ensureDora() compiles once for concurrent callers, and again after a failure", async () => {
  const released: string[] = [];
  let compiles = 0;
  const graphs = new CurrentGraph(fake("lora", false, released), () => {
    compiles++;
    if (compiles === 1) return Promise.reject(new Error("out of memory"));
    return Promise.resolve(fake("dora", true, released));
  });
  await assertRejects(() => graphs.ensureDora(), Error, "out of memory");
  assertEquals([graphs.graph.dora, released], [false, []]);
  await Promise.all([graphs.ensureDora(), graphs.ensureDora(), graphs.ensureDora()]);
  await graphs.ensureDora();
  assertEquals([compiles, graphs.graph.dora, released], [2, true, ["lora"]]);
});

Deno.test("a graph with DoRA's term that finishes compiling after release() is released too", async () => {
  const released: string[] = [];
  let done!: (g: ServingGraph) => void;
  const graphs = new CurrentGraph(
    fake("lora", false, released),
    () => new Promise((r) => done = r),
  );
  const switching = graphs.ensureDora();
  await graphs.release();
  done(fake("dora", true, released));
  await assertRejects(() => switching, Error, "closed");
  assertEquals(released, ["lora", "dora"]);
});
