import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { Graph, liveNodes } from "./graph.ts";
import { add, exp, mul } from "./ops/elementwise.ts";
import { relu } from "./ops/activation.ts";

const f32 = (shape: number[]) => ({
  dtype: "F32" as const,
  shape,
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
});

Deno.test("Graph refuses a second value with a taken name, whatever its kind", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  throws(() => g.input("x", "F32", [3]), { name: "TypeError", message: /"x": the name is taken/ });
  throws(() => g.initializer("x", f32([3])), /"x": the name is taken/);
  g.node("Relu", [x], {}, [{ dtype: "F32", shape: x.shape, name: "h" }]);
  throws(
    () => g.node("Relu", [x], {}, [{ dtype: "F32", shape: x.shape, name: "h" }]),
    /"h": the name is taken/,
  );
  throws(() => g.input("", "F32", [1]), /empty string/);
});

Deno.test("generated names skip names the user took first", () => {
  const g = new Graph();
  g.input("const_0", "F32", [1]);
  g.input("const_1", "F32", [1]);
  const c = g.constant(f32([1]));
  ok(!["const_0", "const_1"].includes(c.name), c.name);
  const names = new Set([...g.initializers.keys(), ...g.inputs].map((v) => v.name));
  equal(names.size, 3);
  const x = g.input("x", "F32", [2]);
  const outs = [relu(x), relu(x), relu(x)].map((v) => v.name);
  equal(new Set(outs).size, 3);
  for (const n of outs) ok(g.has(n));
});

Deno.test("liveNodes() keeps the nodes the outputs need, in graph order", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  const a = relu(x);
  const dead = exp(a); // computed from a live value, used by nothing
  const b = mul(a, 2);
  const c = add(b, a);
  g.output(c);
  const live = liveNodes(g);
  deepStrictEqual(live.map((n) => n.outputs[0]), [a, b, c]);
  ok(!live.includes(dead.producer!));
  deepStrictEqual(liveNodes(g, [b]).map((n) => n.outputs[0]), [a, b]);
  deepStrictEqual(liveNodes(g, [x]), []);
  // Graph order is a topological order: every live node's inputs come first.
  const seen = new Set(g.inputs);
  for (const n of live) {
    for (const i of n.inputs) ok(!i || i.kind !== "node" || seen.has(i));
    for (const o of n.outputs) seen.add(o);
  }
});

Deno.test("find() returns inputs, initializers and node outputs by name", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  const w = g.initializer("w", f32([3]));
  const y = g.node("Mul", [x, w], {}, [{ dtype: "F32", shape: x.shape, name: "y" }])[0]!;
  equal(g.find("x"), x);
  equal(g.find("w"), w);
  equal(g.find("y"), y);
  equal(g.find("nope"), undefined);
  equal(y.producer?.op, "Mul");
  equal(w.kind, "initializer");
});

Deno.test("values of another graph cannot be used or output", () => {
  const g = new Graph();
  const h = new Graph();
  const x = h.input("x", "F32", [2]);
  throws(() => g.node("Relu", [x], {}, [{ dtype: "F32", shape: [2] }]), /another graph in Relu/);
  throws(() => g.output(x), /another graph/);
});

Deno.test("requireOpset() only raises minOpset", () => {
  const g = new Graph();
  equal(g.minOpset, 17);
  g.requireOpset(20);
  g.requireOpset(18);
  equal(g.minOpset, 20);
});

Deno.test("an external initializer needs an absolute path and a byte length matching its shape", () => {
  const g = new Graph();
  const ext = {
    kind: "external" as const,
    dtype: "F32" as const,
    shape: [2, 3],
    path: "/data/model.safetensors",
    offset: 8,
    length: 24,
  };
  equal(g.initializer("w", ext).kind, "initializer");
  throws(() => g.initializer("a", { ...ext, path: "model.safetensors" }), /not absolute/);
  throws(
    () => g.initializer("b", { ...ext, length: 20 }),
    /20 bytes, expected 24 for F32 \[2, 3\]/,
  );
  throws(() => g.initializer("c", { ...ext, offset: -1 }), /invalid offset -1/);
});

Deno.test("an input shape must have sizes >= 0 or named dimensions", () => {
  const g = new Graph();
  throws(() => g.input("x", "F32", [-1, 3]), /invalid shape \[-1, 3\]/);
  throws(() => g.input("y", "F32", [1.5]), /invalid shape/);
  equal(g.input("z", "F32", [0, "n"]).rank, 2);
});
