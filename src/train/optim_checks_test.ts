/**
 * What the optimizer refuses, and that refusing changes nothing: state of another optimizer or of
 * differently shaped parameters, Nesterov without momentum, hyper-parameters PyTorch refuses, a
 * gradient of the wrong length, a bad learning rate; plus clipping a NaN norm as PyTorch does and
 * a large parameter that grows the kernels' memory. The arithmetic against torch.optim is in
 * `optim_test.ts`.
 *
 * @module
 */

import { assert, assertEquals, assertThrows, sameBytes } from "../../tests/_assert.ts";
import {
  clipGradNorm,
  Optimizer,
  type OptimizerName,
  type OptimizerOptions,
  type OptimizerState,
} from "./optim.ts";

Deno.test("State of one optimizer does not load into another: a TypeError names both", () => {
  const adam = new Optimizer("adam");
  adam.step(
    new Map([["w", new Float32Array(3)]]),
    new Map([["w", new Float32Array([1, 2, 3])]]),
    0.1,
  );
  const state = adam.state();
  for (const into of ["sgd", "momentum", "rmsprop", "adamw"] as const) {
    assertThrows(
      () => new Optimizer(into).load(state),
      TypeError,
      `Cannot load adam optimizer state into a ${into} optimizer`,
    );
  }
  new Optimizer("adam").load(state);
});

Deno.test("Nesterov momentum without momentum or with dampening throws a RangeError", () => {
  for (const opts of [{ nesterov: true }, { nesterov: true, momentum: 0 }]) {
    assertThrows(() => new Optimizer("sgd", opts), RangeError, "Nesterov");
  }
  assertThrows(
    () => new Optimizer("momentum", { nesterov: true, dampening: 0.1 }),
    RangeError,
    "Nesterov",
  );
  assertEquals(new Optimizer("momentum", { nesterov: true }).opts.momentum, 0.9);
});

Deno.test("A gradient whose length differs from its parameter's throws a TypeError naming it", () => {
  for (const name of ["sgd", "momentum", "rmsprop", "adam", "adamw"] as const) {
    const params = new Map([["a", new Float32Array(15)], ["b", new Float32Array(7)]]);
    const grads = new Map([["a", new Float32Array(15)], ["b", new Float32Array(6)]]);
    assertThrows(
      () => new Optimizer(name).step(params, grads, 0.1),
      TypeError,
      `Gradient of "b" has 6 elements, the parameter 7`,
    );
  }
});

Deno.test("A bad gradient, buffer or learning rate leaves parameters and state untouched", () => {
  for (const name of ["sgd", "momentum", "rmsprop", "adam", "adamw"] as const) {
    const opt = new Optimizer(name);
    const params = new Map([["a", new Float32Array([1, 2])], ["b", new Float32Array(3)]]);
    const good = new Map([["a", new Float32Array([1, 1])], ["b", new Float32Array([1, 1, 1])]]);
    opt.step(params, good, 0.1);
    const before = opt.state();
    const values = [...params.values()].map((p) => p.slice());
    // "a" comes first and is fine; "b" is not: nothing may move.
    assertThrows(
      () => opt.step(params, new Map([...good, ["b", new Float32Array(2)]]), 0.1),
      TypeError,
      `Gradient of "b" has 2 elements, the parameter 3`,
    );
    for (const lr of [-0.1, NaN, Infinity]) {
      assertThrows(() => opt.step(params, good, lr), RangeError, "Invalid learning rate");
    }
    assertEquals([...params.values()].map((p) => [...p]), values.map((p) => [...p]));
    assertEquals(opt.state(), before);
    // State saved for a parameter of another size (a resume with another rank) is refused.
    const other = new Optimizer(name);
    other.load(before);
    assertThrows(
      () =>
        other.step(
          new Map([["a", new Float32Array(4)]]),
          new Map([["a", new Float32Array(4)]]),
          0.1,
        ),
      TypeError,
      `Optimizer buffers of "a" have 2 elements, the parameter 4`,
    );
  }
});

Deno.test("Hyper-parameters PyTorch refuses throw a RangeError naming them", () => {
  const cases: [OptimizerName, OptimizerOptions, string][] = [
    ["sgd", { weightDecay: -1 }, "weight decay"],
    ["momentum", { momentum: -0.5 }, "momentum"],
    ["adam", { eps: -1e-8 }, "eps"],
    ["adamw", { betas: [0.9, 1] }, "beta 2"],
    ["adam", { betas: [-0.1, 0.9] }, "beta 1"],
    ["rmsprop", { alpha: -0.9 }, "alpha"],
  ];
  for (const [name, options, what] of cases) {
    assertThrows(() => new Optimizer(name, options), RangeError, `Invalid ${what}`);
  }
});

Deno.test("clipGradNorm with a NaN norm makes the gradients NaN, as clip_grad_norm_ does", () => {
  const g = new Float32Array([1, NaN, 2]);
  const norm = clipGradNorm([g], 1);
  assert(Number.isNaN(norm));
  assert(g.every((v) => Number.isNaN(v)), `${g}`);
});

Deno.test("A parameter of 100,003 elements updates as its pieces do, across memory growth", () => {
  // Each rule is elementwise: one large parameter (the kernels' memory grows several pages)
  // must end where the same elements split over three parameters end, bit for bit.
  const n = 100_003, cut = [0, 40_001, 40_002, n];
  const rng = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2 ** 31;
  for (const name of ["momentum", "rmsprop", "adam", "adamw"] as const) {
    const r = rng(7);
    const init = Float32Array.from({ length: n }, () => r() - 0.5);
    const whole = new Optimizer(name, name === "rmsprop" ? { centered: true } : {});
    const split = new Optimizer(name, name === "rmsprop" ? { centered: true } : {});
    const p = new Map([["w", init.slice()]]);
    const parts = new Map(cut.slice(1).map((end, i) => [`w${i}`, init.slice(cut[i]!, end)]));
    for (let s = 0; s < 3; s++) {
      const g = Float32Array.from({ length: n }, () => r() - 0.5);
      whole.step(p, new Map([["w", g]]), 0.01, 0.5);
      split.step(
        parts,
        new Map(cut.slice(1).map((end, i) => [`w${i}`, g.slice(cut[i]!, end)])),
        0.01,
        0.5,
      );
    }
    const joined = new Float32Array(n);
    cut.slice(1).forEach((_, i) => joined.set(parts.get(`w${i}`)!, cut[i]!));
    assert(sameBytes(p.get("w")!, joined), `${name}: the whole and the pieces differ`);
    assert(!sameBytes(p.get("w")!, init), `${name}: nothing moved`);
    // The state holds the whole parameter's buffers, and loads back into a fresh optimizer.
    const saved = whole.state();
    for (const b of Object.values(saved.buffers["w"]!)) assertEquals(b.length, n);
    const again = new Optimizer(name, name === "rmsprop" ? { centered: true } : {});
    again.load(saved);
    assertEquals(again.state(), saved);
  }
});

Deno.test("Loading a bad state throws and leaves the optimizer as it was", () => {
  const opt = new Optimizer("adam");
  const p = new Map([["a", new Float32Array([1, 2])]]);
  opt.step(p, new Map([["a", new Float32Array([0.5, -0.5])]]), 0.1);
  const before = opt.state();
  const bad: OptimizerState = {
    name: "adam",
    step: 7,
    paramSteps: { a: 7, b: 7 },
    buffers: {
      a: { m: new Float32Array(2), v: new Float32Array(2) },
      b: { m: new Float32Array(3), v: new Float32Array(2) },
    },
  };
  assertThrows(() => opt.load(bad), TypeError, 'Invalid adam optimizer state for "b"');
  assertEquals(opt.state(), before);
});
