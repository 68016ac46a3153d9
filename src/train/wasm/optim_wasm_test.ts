/**
 * The committed WebAssembly is what `optim.wat` assembles to, and it loads.
 *
 * @module
 */

import { assert, assertEquals } from "../../../tests/_assert.ts";
import { assemble, render } from "./build.ts";
import { KernelArena } from "./kernels.ts";

Deno.test("optim_wasm.ts holds exactly what wabt assembles from optim.wat (run `deno task gen:wasm`)", async () => {
  const committed = await Deno.readTextFile(new URL("optim_wasm.ts", import.meta.url));
  assertEquals(committed, render(await assemble()));
});

Deno.test("KernelArena hands out aligned, zeroed, non-overlapping slots and grows its memory", () => {
  const a = new KernelArena();
  const first = a.alloc(5);
  const second = a.alloc(70_000);
  assertEquals([first % 16, second % 16, second - first >= 32], [0, 0, true]);
  a.view(first, 5).fill(1);
  assert(a.view(second, 70_000).every((v) => v === 0));
  assert(a.k.memory.buffer.byteLength >= second + 280_000);
  assertEquals([...a.view(first, 5)], [1, 1, 1, 1, 1]);
});
