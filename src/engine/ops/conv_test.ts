/**
 * Convolution, pooling, Max and Min: forward and gradients against PyTorch's float64 numbers
 * (`fixtures/golden/conv_grads.safetensors`, written by `make_conv_grads.py`; onnxruntime has no
 * float64 Conv, ConvTranspose, AveragePool or global pools), float64 finite differences where
 * onnxruntime has the kernels (MaxPool, Max, Min), and the shape rules.
 *
 * Golden error measure: per tensor, `max|ffwd − torch| / max|torch|` (`relError`), at most 1e-5.
 */

import { assert, assertEquals, assertThrows, f32, relError } from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";
import { readSafetensors } from "../../io/safetensors.ts";
import type { Tensor } from "../../tensor.ts";
import { grad } from "../autograd.ts";
import { gradcheck } from "../gradcheck.ts";
import { Graph, type Value } from "../graph.ts";
import {
  type AutoPad,
  averagePool,
  conv,
  globalAveragePool,
  globalMaxPool,
  maximum,
  maxPool,
  minimum,
  type PoolOptions,
} from "./conv.ts";
import { add } from "./elementwise.ts";
import { reduceSum } from "./reduce.ts";

const GOLDEN = new URL("../../../fixtures/golden/conv_grads.safetensors", import.meta.url);
const RTOL = 1e-5;

/** The ONNX attributes the golden cases use. */
interface Attrs {
  readonly kernel_shape?: number[];
  readonly strides?: number[];
  readonly pads?: number[];
  readonly dilations?: number[];
  readonly auto_pad?: AutoPad;
  readonly group?: number;
  readonly ceil_mode?: number;
  readonly count_include_pad?: number;
}

interface Case {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly attrs: Attrs;
}

const { tensors, metadata } = await readSafetensors(GOLDEN);
const cases = metadata["cases"]!.split(",").map((name) => {
  return { name, ...JSON.parse(metadata[name]!) as Case };
});
const tensor = (key: string): Tensor => {
  const t = tensors.get(key);
  if (!t) throw new TypeError(`The golden file has no tensor "${key}"`);
  return t;
};

/** The builder call an ONNX node with `attrs` stands for. */
function build(c: Case, v: readonly Value[]): Value {
  const a = c.attrs;
  const window: PoolOptions = {
    strides: a.strides,
    pads: a.pads,
    dilations: a.dilations,
    autoPad: a.auto_pad,
    ceilMode: a.ceil_mode === 1,
    countIncludePad: a.count_include_pad === 1,
  };
  switch (c.op) {
    case "Conv":
      return conv(v[0]!, v[1]!, v[2] ?? null, { ...window, group: a.group });
    case "MaxPool":
      return maxPool(v[0]!, a.kernel_shape!, window);
    case "AveragePool":
      return averagePool(v[0]!, a.kernel_shape!, window);
    case "GlobalAveragePool":
      return globalAveragePool(v[0]!);
    case "GlobalMaxPool":
      return globalMaxPool(v[0]!);
    case "Max":
      return maximum(v);
    case "Min":
      return minimum(v);
  }
  throw new TypeError(`Unknown golden op ${c.op}`);
}

for (const c of cases) {
  const symbolic = c.op !== "Max" && c.op !== "Min";
  Deno.test(
    `${c.op} ${c.name}: output and every gradient equal PyTorch's within 1e-5${
      symbolic ? ", batch symbolic" : ""
    }`,
    async () => {
      const g = new Graph();
      const feeds: Record<string, Tensor> = {};
      const inputs = c.inputs.map((k) => {
        const t = tensor(`${c.name}.${k}`);
        feeds[k] = t;
        const shape = symbolic && k === "x" ? ["batch", ...t.shape.slice(1)] : t.shape;
        return g.input(k, "F32", shape);
      });
      const y = build(c, inputs);
      const dy = tensor(`${c.name}.dy`);
      feeds["dy"] = dy;
      const grads = grad(y, inputs, { seed: g.input("dy", "F32", y.shape) });
      const out = await runGraph(g, feeds, { outputs: [y, ...grads] });
      const check = (what: string, got: Tensor, want: Tensor) => {
        assertEquals(got.shape, want.shape, `${c.name}: shape of ${what}`);
        const err = relError(got.data as Float32Array, want.data as Float64Array);
        assert(err <= RTOL, `${c.name}: ${what} differs from PyTorch's, relative error ${err}`);
      };
      check("y", out[y.name]!, tensor(`${c.name}.y`));
      c.inputs.forEach((k, i) => check(`d${k}`, out[grads[i]!.name]!, tensor(`${c.name}.d${k}`)));
    },
  );
}

Deno.test("MaxPool gradients match float64 finite differences: overlaps, asymmetric pads, dilations, ceil_mode, SAME", async () => {
  const cases: [number[], number[], PoolOptions][] = [
    [[2, 2, 6, 5], [3, 3], {}],
    [[1, 2, 7, 6], [3, 2], { strides: [2, 1], pads: [0, 1, 2, 0] }],
    [[1, 1, 9, 8], [2, 3], { strides: [2, 2], dilations: [2, 1], pads: [1, 0, 1, 1] }],
    [[2, 1, 7, 8], [3, 3], { strides: [2, 3], pads: [1, 1, 1, 1], ceilMode: true }],
    [[1, 2, 8, 7], [3, 2], { strides: [2, 2], pads: [1, 1, 1, 1], ceilMode: true }],
    [[1, 2, 7, 6], [2, 3], { strides: [2, 2], autoPad: "SAME_LOWER" }],
    [[2, 3, 11], [4], { strides: [3], autoPad: "SAME_UPPER" }],
  ];
  for (const [shape, kernel, opts] of cases) {
    await gradcheck(([x]) => maxPool(x!, kernel, opts), { x: { shape } });
  }
});

Deno.test("Max and Min gradients match float64 finite differences, broadcasting n-ary", async () => {
  await gradcheck(([a, b]) => maximum([a!, b!]), { a: { shape: [2, 3, 4] }, b: { shape: [3, 1] } });
  await gradcheck(([a, b, c]) => minimum([a!, b!, c!]), {
    a: { shape: [4] },
    b: { shape: [2, 4] },
    c: { shape: [2, 1] },
  });
  await gradcheck(([a]) => maximum([a!, 0.25]), { a: { shape: [3, 5] } });
});

Deno.test("a tie between Max's inputs splits the gradient, as PyTorch's maximum does", async () => {
  const g = new Graph();
  const a = g.input("a", "F32", [4]);
  const b = g.input("b", "F32", [4]);
  const [da, db] = grad(reduceSum(maximum([a, b])), [a, b]);
  const out = await runGraph(g, { a: f32([4], [1, 2, 3, -1]), b: f32([4], [1, 1, 3, 0]) }, {
    outputs: [da!, db!],
  });
  assertEquals(Array.from(out[da!.name]!.data as Float32Array), [0.5, 1, 0.5, 0]);
  assertEquals(Array.from(out[db!.name]!.data as Float32Array), [0.5, 0, 0.5, 1]);
});

Deno.test("Conv's shape rule: batch stays symbolic, channels and groups are checked, errors show shapes", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 4, 9, 8]);
  const w = g.input("w", "F32", [6, 2, 3, 3]);
  assertEquals(conv(x, w, null, { group: 2, strides: [2, 2], pads: [1, 1, 1, 1] }).shape, [
    "batch",
    6,
    5,
    4,
  ]);
  assertEquals(conv(x, w, null, { group: 2, strides: [2, 3], autoPad: "SAME_UPPER" }).shape, [
    "batch",
    6,
    5,
    3,
  ]);
  assertThrows(
    () => conv(x, w, null),
    TypeError,
    "x has 4 channels, w expects 2 per group × 1 groups, x is [batch, 4, 9, 8], w is [6, 2, 3, 3]",
  );
  assertThrows(
    () => conv(x, g.input("k", "F32", [6, 4, 11, 3]), null),
    TypeError,
    "the window spans 11 on spatial axis 0, more than the padded input (9)",
  );
  assertThrows(() => maxPool(x, [2, 2], { strides: [0, 1] }), RangeError, "Invalid strides [0, 1]");
  // ceil_mode adds a window on axis 0; on axis 1 its last window would start in the end pad, so
  // that pad is trimmed (onnxruntime's shape inference would not drop the window, its kernel does).
  const pooled = maxPool(g.input("p", "F32", ["batch", 2, 8, 7]), [3, 2], {
    strides: [2, 2],
    pads: [1, 1, 1, 1],
    ceilMode: true,
  });
  assertEquals(pooled.shape, ["batch", 2, 5, 4]);
  assertEquals(pooled.producer!.attrs["pads"]!.value, [1, 1, 1, 0]);
  assertEquals(pooled.producer!.attrs["ceil_mode"]!.value, 1);
  const floorSized = maxPool(x, [3, 3], { strides: [2, 3], pads: [1, 1, 1, 1], ceilMode: true });
  assertEquals([floorSized.shape, floorSized.producer!.attrs["ceil_mode"]], [
    ["batch", 4, 5, 3],
    undefined,
  ]);
});

Deno.test("a symbolic spatial size gives a size named by its formula, equal for equal geometry", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 1, "samples"]);
  const re = conv(x, g.input("re", "F32", [257, 1, 512]), null, { strides: [160] });
  const im = conv(x, g.input("im", "F32", [257, 1, 512]), null, { strides: [160] });
  assertEquals(re.shape, ["batch", 257, "floor((samples+0+0-512)/160)+1"]);
  assertEquals(add(re, im).shape, re.shape); // the two spectrogram halves broadcast together
  assertEquals(maxPool(x, [3], { pads: [1, 1] }).shape, x.shape);
  assertEquals(
    maxPool(x, [2], { strides: [2], autoPad: "SAME_UPPER" }).shape[2],
    "ceil(samples/2)",
  );
  assertThrows(
    () => grad(reduceSum(re), [x]),
    TypeError,
    "Cannot differentiate Conv (node Conv_",
  );
});

Deno.test("Conv's backward builds only what is asked: no weight gradient for a frozen weight", () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3, 8, 8]);
  const w = g.constant(f32([4, 3, 3, 3], new Float32Array(108)), "w");
  const before = g.nodes.length;
  grad(reduceSum(conv(x, w, null, { pads: [1, 1, 1, 1] })), [x]);
  const ops = g.nodes.slice(before).map((n) => n.op);
  assert(ops.includes("ConvTranspose"), `backward ops: ${ops}`);
  assertEquals(ops.filter((op) => op === "Conv").length, 1); // the forward only
});
