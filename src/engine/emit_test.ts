import { deepStrictEqual, equal, ok, rejects, throws } from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { assertClose, randomTensor, withTempDir } from "../../tests/_assert.ts";
import { runGraph } from "../../tests/_ops.ts";
import { fromBytes, type Tensor } from "../tensor.ts";
import { saveOnnx, serializeOnnx, toModelProto } from "./emit.ts";
import { Graph, int, ints, type Value } from "./graph.ts";
import { constantNode, constantOfShape, int64s, shapeOf } from "./ops/constant.ts";
import { add, mul } from "./ops/elementwise.ts";
import { matmul } from "./ops/matmul.ts";
import { reduceMean, reduceSum } from "./ops/reduce.ts";
import { grad } from "./autograd.ts";
import { cast } from "./ops/shape.ts";
import { fromOrt, toOrt } from "./runtime.ts";

/** ReduceMean over axis 1, ReduceMax over axis 2 (both with an axes attribute), ReduceMean over all. */
function reductions(): Graph {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3, 4]);
  g.output(reduceMean(x, [1], true));
  g.output(
    g.node("ReduceMax", [x], { axes: ints([2]), keepdims: int(0) }, [{
      dtype: "F32",
      shape: ["batch", 3],
    }])[0]!,
  );
  g.output(reduceMean(x));
  return g;
}

Deno.test("reductions emitted at opset 17 and at opset 20 run in onnxruntime and agree", async () => {
  const at17 = toModelProto(reductions(), { opset: 17 });
  const g20 = reductions();
  g20.requireOpset(20);
  const at20 = toModelProto(g20);
  equal(at17.opset, 17);
  equal(at20.opset, 20);
  equal(at20.proto.irVersion, 9n);
  for (const n of at17.proto.graph!.node) {
    equal(n.input.length, 1);
    ok(n.attribute.some((a) => a.name === "axes"));
  }
  const axesInputs = at20.proto.graph!.node.map((n) => n.input.length);
  deepStrictEqual(axesInputs, [2, 2, 2]);
  ok(at20.proto.graph!.node.every((n) => !n.attribute.some((a) => a.name === "axes")));
  const x = randomTensor([2, 3, 4], 1);
  const r17 = await runGraph(reductions(), { x }, { opset: 17 });
  const r20 = await runGraph(g20, { x });
  for (const k of Object.keys(r17)) deepStrictEqual(r20[k], r17[k]);
  // Spot-check the mean over axis 1 against JS.
  const m = r17[Object.keys(r17)[0]!]!.data as Float32Array;
  const want = (x.data[0]! + x.data[4]! + x.data[8]!) / 3;
  ok(Math.abs(m[0]! - want) < 1e-6);
});

Deno.test("the backward of ReduceMean gives the same gradient at opset 17 and 20", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3, 4]);
  const [dx] = grad(reduceSum(reduceMean(mul(x, x), [1, 2])), [x]);
  g.output(dx!);
  const feeds = { x: randomTensor([2, 3, 4], 11) };
  const at17 = await runGraph(g, feeds, { opset: 17 });
  deepStrictEqual(await runGraph(g, feeds, { opset: 20 }), at17);
  const d = at17[dx!.name]!.data as Float32Array;
  ok(Math.abs(d[5]! - (2 * feeds.x.data[5]!) / 12) < 1e-6);
});

Deno.test("the emitted opset is the larger of the requested one and graph.minOpset", () => {
  const g = new Graph();
  g.output(g.input("x", "F32", [2]));
  equal(toModelProto(g).opset, 17);
  equal(toModelProto(g, { opset: 19 }).opset, 19);
  g.requireOpset(20);
  equal(toModelProto(g, { opset: 17 }).opset, 20);
  equal(toModelProto(g, { opset: 21 }).opset, 21);
  throws(() => toModelProto(new Graph(), {}), /no outputs/);
  const h = new Graph();
  h.output(h.input("x", "F32", [2]));
  equal(toModelProto(h, { opset: 13 }).opset, 17); // minOpset starts at 17
});

Deno.test("a reduction with constant axes as an input becomes an attribute below opset 18", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", [2, 3]);
  g.output(
    g.node("ReduceMean", [x, int64s(g, [1])], { keepdims: int(0) }, [{
      dtype: "F32",
      shape: [2],
    }])[0]!,
  );
  const node = toModelProto(g, { opset: 17 }).proto.graph!.node[0]!;
  deepStrictEqual(node.input, ["x"]);
  deepStrictEqual(node.attribute.find((a) => a.name === "axes")?.ints, [1n]);
  const t = randomTensor([2, 3], 2);
  deepStrictEqual(
    await runGraph(g, { x: t }, { opset: 17 }),
    await runGraph(g, { x: t }, { opset: 18 }),
  );
  const h = new Graph();
  const y = h.input("y", "F32", [2, 3]);
  const axes = h.input("axes", "I64", [1]);
  const r = h.node("ReduceMean", [y, axes], {}, [{ dtype: "F32", shape: [2, 1] }])[0]!;
  h.output(r);
  throws(() => toModelProto(h, { opset: 17 }), {
    name: "RangeError",
    message: new RegExp(`ReduceMean \\(node ${r.producer!.name}\\) below opset 18`),
  });
});

/** A graph using every float32 source: input, initializer, casts to float, Constant, ConstantOfShape. */
function everyFloatSource(): Graph {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  const i = g.input("i", "I64", ["batch", 3]);
  const w = g.initializer("w", randomTensor([3, 3], 3));
  const half = g.initializer("half", {
    dtype: "F16",
    shape: [3],
    data: new Uint16Array([0x3c00, 0x3800, 0xb400]), // 1, 0.5, -0.25
  });
  const c = constantNode(g, randomTensor([3], 4));
  const fill = constantOfShape(shapeOf(x), 0.1, "F32", x.shape);
  const y = add(add(matmul(x, w), mul(cast(i, "F32"), 1e-3)), mul(cast(half, "F32"), c));
  g.output(mul(y, fill));
  g.output(g.node("Cast", [i], { to: int(1) }, [{ dtype: "F32", shape: i.shape }])[0]!);
  return g;
}

Deno.test("the float64 twin converts every float32 source and matches float32 within 1e-6", async () => {
  const g = everyFloatSource();
  const proto = toModelProto(g, { float64: true }).proto.graph!;
  for (const v of [...proto.input, ...proto.output]) {
    const t = v.type!.value.case === "tensorType" ? v.type!.value.value.elemType : 0;
    ok(t !== 1, `${v.name} is float32`);
  }
  ok(proto.initializer.every((t) => t.dataType !== 1));
  for (const n of proto.node) {
    for (const a of n.attribute) {
      if (a.t) ok(a.t.dataType === 11 || a.t.dataType === 7, `${n.opType} ${a.name}`);
      if (n.opType === "Cast" && a.name === "to") equal(a.i === 11n || a.i === 7n, true);
    }
  }
  const x = randomTensor([4, 3], 5);
  const i: Tensor<"I64"> = {
    dtype: "I64",
    shape: [4, 3],
    data: BigInt64Array.from({ length: 12 }, (_, k) => BigInt(k * 37 - 200)),
  };
  const single = await runGraph(g, { x, i });
  const double = await runGraph(g, { x, i }, { float64: true }); // x widened to F64
  for (const k of Object.keys(single)) {
    equal(double[k]!.dtype, "F64");
    assertClose(single[k]!, double[k]!, { rtol: 1e-6, what: k });
  }
});

function twoLayers(): { g: Graph; feeds: Record<string, Tensor> } {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 16]);
  const w1 = g.initializer("w1", randomTensor([16, 64], 6)); // 4 KiB
  const w2 = g.initializer("w2", randomTensor([64, 8], 7)); // 2 KiB
  const b = g.initializer("b", randomTensor([8], 8));
  g.output(add(matmul(matmul(x, w1), w2), b));
  return { g, feeds: { x: randomTensor([3, 16], 9) } };
}

Deno.test("spillThreshold moves large initializers to a side file, aligned, and the session agrees", async () => {
  const { g, feeds } = twoLayers();
  const emitted = toModelProto(g, { spillThreshold: 2048 });
  deepStrictEqual(emitted.spill.map((c) => [c.offset, c.bytes.byteLength]), [[0, 4096], [
    4096,
    2048,
  ]]);
  const external = emitted.proto.graph!.initializer.filter((t) => t.externalData.length);
  deepStrictEqual(external.map((t) => t.name), ["w1", "w2"]);
  throws(() => serializeOnnx(g, { spillThreshold: 2048 }), /saveOnnx/);
  const inline = await runGraph(g, feeds);
  deepStrictEqual(await runGraph(g, feeds, { spillThreshold: 2048 }), inline);
  deepStrictEqual(await runGraph(g, feeds, { spillThreshold: 0, float64: false }), inline);
});

Deno.test("initializers over the inline limit are spilled largest first without a threshold", async () => {
  const { g, feeds } = twoLayers();
  const names = (limit: number) =>
    toModelProto(g, { inlineLimit: limit }).proto.graph!.initializer
      .filter((t) => t.externalData.length).map((t) => t.name);
  deepStrictEqual(names(10_000), []);
  deepStrictEqual(names(5000), ["w1"]);
  deepStrictEqual(names(1000), ["w1", "w2"]);
  deepStrictEqual(await runGraph(g, feeds, { inlineLimit: 1000 }), await runGraph(g, feeds));
  // Over the limit, every initializer of 1 MiB or more goes, not just the largest.
  const h = new Graph();
  const x = h.input("x", "F32", [1, 512]);
  const w = [0, 1, 2].map((k) => h.initializer(`w${k}`, randomTensor([512, 512], k))); // 1 MiB each
  h.output(matmul(matmul(matmul(x, w[0]!), w[1]!), w[2]!));
  const spilled = (limit: number) =>
    toModelProto(h, { inlineLimit: limit }).proto.graph!.initializer
      .filter((t) => t.externalData.length).length;
  equal(spilled(3 * 2 ** 20), 0);
  equal(spilled(2.5 * 2 ** 20), 3);
});

Deno.test("saveOnnx() writes <name>.onnx and <name>.onnx.data that onnxruntime loads", async () => {
  const { g, feeds } = twoLayers();
  await withTempDir(async (dir) => {
    const saved = await saveOnnx(`${dir}/mlp.onnx`, g, { spillThreshold: 2048 });
    deepStrictEqual(saved, { model: `${dir}/mlp.onnx`, data: `${dir}/mlp.onnx.data` });
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    deepStrictEqual(files, ["mlp.onnx", "mlp.onnx.data"]); // no temporary files left
    equal(Deno.statSync(saved.data!).size, 4096 + 2048);
    const s = await ort.InferenceSession.create(saved.model);
    const out = await s.run({ x: toOrt(feeds.x!) });
    await s.release();
    deepStrictEqual(fromOrt(out[s.outputNames[0]!]!), Object.values(await runGraph(g, feeds))[0]);
    // Saving a model that needs no side file removes the stale one.
    deepStrictEqual(await saveOnnx(`${dir}/mlp.onnx`, g), { model: `${dir}/mlp.onnx`, data: null });
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["mlp.onnx"]);
    await rejects(saveOnnx(`${dir}/missing/m.onnx`, g), Deno.errors.NotFound);
    await rejects(saveOnnx(`${dir}/m.onnx`, g, { spillFile: "../x" }), /invalid side file name/);
  });
});

// --- A model over protobuf's 2 GiB limit, end to end. Slow and memory-hungry: FFWD_BIG_TESTS=1.

const BIG = Deno.env.get("FFWD_BIG_TESTS") === "1";
const PART = 160 * 2 ** 20; // elements per weight: 640 MiB of F32, four of them make 2.5 GiB

/** Current resident set size (the peak needs /proc, which Deno opens only with --allow-all). */
const rss = () => `${(Deno.memoryUsage().rss / 2 ** 30).toFixed(2)} GiB`;

/** `(i % 1024) + k / 4` at index i, filled by doubling copies (a JS loop over 640 MiB is slow). */
function pattern(n: number, k: number): Float32Array {
  const data = new Float32Array(n);
  for (let i = 0; i < 1024; i++) data[i] = i + k / 4;
  for (let len = 1024; len < n; len *= 2) data.copyWithin(len, 0, Math.min(len, n - len));
  return data;
}

Deno.test({
  name: "a 2.5 GiB model compiles, runs and saves with its initializers spilled automatically",
  ignore: !BIG,
  async fn() {
    const t0 = performance.now();
    const g = new Graph();
    const x = g.input("x", "F32", [4]);
    const idx = g.input("idx", "I64", [4]); // an input: ORT would fold a constant Gather
    const outs: Value[] = [];
    for (let k = 0; k < 4; k++) {
      const w = g.initializer(`w${k}`, { dtype: "F32", shape: [PART], data: pattern(PART, k) });
      const picked = g.node("Gather", [w, idx], { axis: int(0) }, [{ dtype: "F32", shape: [4] }]);
      outs.push(g.output(add(picked[0]!, x)));
    }
    const at = [0, 1, PART / 2 + 3, PART - 1];
    const want = (k: number) => at.map((i) => (i % 1024) + k / 4 + 1);
    const feeds: Record<string, Tensor> = {
      x: { dtype: "F32", shape: [4], data: new Float32Array(4).fill(1) },
      idx: { dtype: "I64", shape: [4], data: BigInt64Array.from(at.map(BigInt)) },
    };
    const t1 = performance.now();
    console.log(`built in ${((t1 - t0) / 1000).toFixed(1)} s, RSS ${rss()}`);
    const out = await runGraph(g, feeds);
    outs.forEach((o, k) => deepStrictEqual([...out[o.name]!.data as Float32Array], want(k)));
    const t2 = performance.now();
    console.log(`compiled and ran in ${((t2 - t1) / 1000).toFixed(1)} s, RSS ${rss()}`);
    await withTempDir(async (dir) => {
      const saved = await saveOnnx(`${dir}/big.onnx`, g, { sync: false });
      ok(Deno.statSync(saved.data!).size > 2 ** 31);
      ok(Deno.statSync(saved.model).size < 2 ** 20); // every weight went to the side file
      const t3 = performance.now();
      const s = await ort.InferenceSession.create(saved.model);
      const r = await s.run({ x: toOrt(feeds.x!), idx: toOrt(feeds.idx!) });
      outs.forEach((o, k) => deepStrictEqual([...r[o.name]!.data as Float32Array], want(k)));
      await s.release();
      const t4 = performance.now();
      const sec = (a: number, b: number) => ((b - a) / 1000).toFixed(1);
      console.log(
        `build ${sec(t0, t1)} s, compile+run ${sec(t1, t2)} s, save ${sec(t2, t3)} s, ` +
          `load+run ${sec(t3, t4)} s, RSS ${rss()}`,
      );
    });
  },
});

Deno.test("fromBytes() views of a saved side file match the spilled tensor", async () => {
  const { g } = twoLayers();
  await withTempDir(async (dir) => {
    const saved = await saveOnnx(`${dir}/m.onnx`, g, { spillThreshold: 4096, sync: false });
    const bytes = await Deno.readFile(saved.data!);
    const w1 = g.initializers.get(g.find("w1")!) as Tensor<"F32">;
    deepStrictEqual(fromBytes("F32", [16, 64], bytes.subarray(0, 4096)).data, w1.data);
  });
});
