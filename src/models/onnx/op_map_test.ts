import { type CheckInput, gradcheck } from "../../engine/gradcheck.ts";
import { Rng } from "../../rng.ts";
import type { Tensor } from "../../tensor.ts";
import { maxDiff, randomTensor, withTempDir } from "../../../tests/_assert.ts";
import {
  f32,
  i64,
  io,
  model,
  type ModelParts,
  node,
  runImported,
  runOriginal,
  writeModel,
} from "../../../tests/_onnx.ts";
import { openOnnxModel } from "./import.ts";
import { supportedOps } from "./op_map.ts";

const rng = new Rng(99);
/** Feeds are drawn from [-2, 2). */
const WIDE = { lo: -2, hi: 2 };

/** Imports a hand-made model and checks it against the original file run in onnxruntime. */
async function parity(name: string, parts: ModelParts, feeds: Record<string, Tensor>) {
  return await withTempDir(async (dir) => {
    const path = await writeModel(dir, `${name}.onnx`, model(parts));
    const m = await openOnnxModel(path);
    const got = await runImported(m, feeds);
    const want = await runOriginal(path, feeds);
    for (const o of m.outputs) {
      const d = maxDiff(got[o.name]!, want[o.name]!);
      if (!(d <= 1e-5)) throw new Error(`${name}: output "${o.name}" differs by ${d}`);
    }
    return m;
  });
}

const x3 = io("x", ["N", 2, 3]);

for (const opset of [11, 13]) {
  Deno.test(`PyTorch's Shape→Gather→Unsqueeze→Concat→Reshape flatten folds at opset ${opset}`, async () => {
    const unsqueeze = opset < 13
      ? node("Unsqueeze", ["n"], ["n1"], { axes: { ints: [0] } })
      : node("Unsqueeze", ["n", "zero_axis"], ["n1"]);
    const m = await parity(`flatten${opset}`, {
      nodes: [
        node("Shape", ["x"], ["s"]),
        node("Constant", [], ["idx"], { value: { t: i64("", [], [0]) } }),
        node("Gather", ["s", "idx"], ["n"], { axis: { i: 0 } }),
        unsqueeze,
        node("Constant", [], ["minus1"], { value: { t: i64("", [1], [-1]) } }),
        node("Concat", ["n1", "minus1"], ["target"], { axis: { i: 0 } }),
        node("Reshape", ["x", "target"], ["flat"]),
        node("Gemm", ["flat", "fc.weight", "fc.bias"], ["y"], { transB: { i: 1 } }),
      ],
      inputs: [x3],
      outputs: [io("y", ["N", 4])],
      inits: [
        f32("fc.weight", [4, 6], Array.from({ length: 24 }, (_, i) => i / 10)),
        f32("fc.bias", [4], [1, 2, 3, 4]),
        i64("zero_axis", [1], [0]),
      ],
      opset,
    }, { x: randomTensor([3, 2, 3], rng, WIDE) });
    if (m.outputs[0]!.shape[0] !== "N") {
      throw new Error(`batch not symbolic: ${m.outputs[0]!.shape}`);
    }
  });
}

for (const opset of [11, 13, 18]) {
  Deno.test(`axes as attributes or inputs: Squeeze, Unsqueeze, ReduceSum, ReduceMean at opset ${opset}`, async () => {
    const axesIn = (since: number) => opset >= since;
    const red = (op: string, since: number, x: string, y: string) =>
      axesIn(since) ? node(op, [x, "axes1"], [y], { keepdims: { i: 1 } }) : node(op, [x], [y], {
        axes: { ints: [1] },
        keepdims: { i: 1 },
      });
    await parity(`axes${opset}`, {
      nodes: [
        red("ReduceSum", 13, "x", "s"), // [N, 1, 3]
        axesIn(13)
          ? node("Squeeze", ["s", "axes1"], ["sq"])
          : node("Squeeze", ["s"], ["sq"], { axes: { ints: [1] } }),
        axesIn(13)
          ? node("Unsqueeze", ["sq", "axes2"], ["u"])
          : node("Unsqueeze", ["sq"], ["u"], { axes: { ints: [2] } }),
        red("ReduceMean", 18, "x", "m"), // [N, 1, 3]
        node("Transpose", ["u"], ["ut"], { perm: { ints: [0, 2, 1] } }), // [N, 1, 3]
        node("Add", ["ut", "m"], ["y"]),
      ],
      inputs: [x3],
      outputs: [io("y", ["N", 1, 3])],
      inits: [i64("axes1", [1], [1]), i64("axes2", [1], [2])],
      opset,
    }, { x: randomTensor([2, 2, 3], rng, WIDE) });
  });
}

Deno.test("Slice bounds as attributes (opset 9) and as inputs with steps (opset 13)", async () => {
  await parity("slice9", {
    nodes: [
      node("Slice", ["x"], ["y"], {
        starts: { ints: [1, -2] },
        ends: { ints: [2, 100] },
        axes: { ints: [1, 2] },
      }),
    ],
    inputs: [x3],
    outputs: [io("y", ["N", 1, 2])],
    opset: 9,
  }, { x: randomTensor([2, 2, 3], rng, WIDE) });
  await parity("slice13", {
    nodes: [node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])],
    inputs: [x3],
    outputs: [io("y", ["N", 2, 2])],
    inits: [
      i64("starts", [1], [-1]),
      i64("ends", [1], [-100]),
      i64("axes", [1], [2]),
      i64("steps", [1], [-2]),
    ],
    opset: 13,
  }, { x: randomTensor([2, 2, 3], rng, WIDE) });
});

Deno.test("Clip bounds as attributes (opset 6) and as optional inputs (opset 13)", async () => {
  const x = randomTensor([2, 2, 3], rng, WIDE);
  await parity("clip6", {
    nodes: [node("Clip", ["x"], ["y"], { min: { f: -0.5 }, max: { f: 1 } })],
    inputs: [x3],
    outputs: [io("y", ["N", 2, 3])],
    opset: 6,
  }, { x });
  await parity("clip13", {
    nodes: [node("Clip", ["x", "", "hi"], ["y"])],
    inputs: [x3],
    outputs: [io("y", ["N", 2, 3])],
    inits: [f32("hi", [], [0.25])],
    opset: 13,
  }, { x });
});

for (const opset of [11, 13, 18]) {
  Deno.test(`Split sizes as attribute, input or num_outputs at opset ${opset}`, async () => {
    const split = opset < 13
      ? node("Split", ["x"], ["a", "b"], { axis: { i: 2 }, split: { ints: [1, 2] } })
      : opset < 18
      ? node("Split", ["x", "sizes"], ["a", "b"], { axis: { i: 2 } })
      : node("Split", ["x"], ["a", "b"], { axis: { i: 1 }, num_outputs: { i: 2 } });
    await parity(`split${opset}`, {
      nodes: [split, node("Relu", ["a"], ["ra"]), node("Neg", ["b"], ["nb"])],
      inputs: [x3],
      outputs: [io("ra", []), io("nb", [])],
      inits: [i64("sizes", [2], [1, 2])],
      opset,
    }, { x: randomTensor([2, 2, 3], rng, WIDE) });
  });
}

for (const opset of [11, 13]) {
  Deno.test(`Softmax and LogSoftmax on axis 1 of a 3-D input follow opset ${opset}`, async () => {
    await parity(`softmax${opset}`, {
      nodes: [
        node("Softmax", ["x"], ["p"], { axis: { i: 1 } }),
        node("LogSoftmax", ["x"], ["lp"], { axis: { i: 1 } }),
      ],
      inputs: [x3],
      outputs: [io("p", ["N", 2, 3]), io("lp", ["N", 2, 3])],
      opset,
    }, { x: randomTensor([2, 2, 3], rng, WIDE) });
  });
}

Deno.test("activations, element-wise ops, Where, Dropout, Pad and BatchNormalization match onnxruntime", async () => {
  await parity("elementwise", {
    nodes: [
      node("LeakyRelu", ["x"], ["a"], { alpha: { f: 0.1 } }),
      node("HardSigmoid", ["a"], ["b"], { alpha: { f: 0.3 } }),
      node("Softplus", ["x"], ["c"]),
      node("Tanh", ["c"], ["d"]),
      node("Sigmoid", ["x"], ["e"]),
      node("Erf", ["x"], ["f"]),
      node("Pow", ["x", "two"], ["g"]),
      node("Abs", ["x"], ["ax"]),
      node("Sqrt", ["ax"], ["h"]),
      node("Exp", ["d"], ["i"]),
      node("Log", ["i"], ["j"]),
      node("Greater", ["x", "zero"], ["pos"]),
      node("Where", ["pos", "x", "zero"], ["k"]),
      node("Sum", ["a", "b", "e", "f", "g", "h", "j", "k"], ["s"]),
      node("Dropout", ["s", "ratio"], ["dropped", "mask"]),
      node("Sub", ["dropped", "ax"], ["t"]),
      node("Div", ["t", "two"], ["u"]),
      node("Pad", ["u", "pads", "padval"], ["y"], { mode: { s: "constant" } }),
      node("BatchNormalization", ["x", "bn.w", "bn.b", "bn.mean", "bn.var"], ["bn"], {
        epsilon: { f: 1e-3 },
      }),
    ],
    inputs: [x3],
    outputs: [io("y", []), io("bn", ["N", 2, 3])],
    inits: [
      f32("two", [], [2]),
      f32("zero", [], [0]),
      f32("ratio", [], [0.5]),
      i64("pads", [6], [0, 1, 0, 0, 0, 2]),
      f32("padval", [], [7]),
      f32("bn.w", [2], [1.5, -1]),
      f32("bn.b", [2], [0.1, 0.2]),
      f32("bn.mean", [2], [0.3, -0.3]),
      f32("bn.var", [2], [2, 0.5]),
    ],
    opset: 15,
  }, { x: randomTensor([2, 2, 3], rng, WIDE) });
});

/**
 * Gradchecks an imported model without graph inputs: the initializers named in `checked` are
 * replaced by the checked inputs (the import's `overrides`), so the gradients cross the handlers.
 */
async function importedGradcheck(
  name: string,
  parts: ModelParts,
  checked: Record<string, CheckInput>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const m = await openOnnxModel(await writeModel(dir, `${name}.onnx`, model(parts)));
    await gradcheck((values, g) => {
      const overrides = new Map(Object.keys(checked).map((k, i) => [k, values[i]!]));
      return m.build(g, { overrides }).outputs[0]!;
    }, checked);
  });
}

const zeros = (name: string, dims: number[]) =>
  f32(name, dims, new Array(dims.reduce((a, b) => a * b)).fill(0));

Deno.test("imported BatchNormalization (inference), LayerNormalization and RMSNormalization differentiate", async () => {
  const bn = (rank: number, opset: number) => {
    const x = rank === 4 ? [2, 3, 2, 2] : [4, 3];
    return importedGradcheck(`bn${rank}`, {
      nodes: [
        node("BatchNormalization", ["x", "w", "b", "mean", "var"], ["y"], { epsilon: { f: 1e-3 } }),
      ],
      inputs: [],
      outputs: [io("y", x)],
      inits: [
        zeros("x", x),
        zeros("w", [3]),
        zeros("b", [3]),
        f32("mean", [3], [0.3, -0.3, 1]),
        f32("var", [3], [2, 0.5, 1]),
      ],
      opset,
    }, { x: { shape: x }, w: { shape: [3] }, b: { shape: [3] } });
  };
  await bn(4, 15);
  await bn(2, 9);
  const norm = (op: string, opset: number, bias: boolean) =>
    importedGradcheck(op, {
      nodes: [
        node(op, bias ? ["x", "w", "b"] : ["x", "w"], ["y"], {
          axis: { i: -1 },
          epsilon: { f: 1e-5 },
        }),
      ],
      inputs: [],
      outputs: [io("y", [2, 3, 4])],
      inits: [zeros("x", [2, 3, 4]), zeros("w", [4]), zeros("b", [4])],
      opset,
    }, {
      x: { shape: [2, 3, 4] },
      w: { shape: [4], offset: 1 },
      ...(bias ? { b: { shape: [4] } } : {}),
    });
  await norm("LayerNormalization", 17, true);
  await norm("RMSNormalization", 23, false);
});

Deno.test("imported Softmax of opset 11 (flattened at its axis) differentiates", async () => {
  await importedGradcheck("softmax11", {
    nodes: [node("Softmax", ["x"], ["y"], { axis: { i: 1 } })],
    inputs: [],
    outputs: [io("y", [2, 3, 2])],
    inits: [zeros("x", [2, 3, 2])],
    opset: 11,
  }, { x: { shape: [2, 3, 2] } });
});

Deno.test("com.microsoft Gelu and FastGelu (with bias) map to the standard GELUs", async () => {
  await parity("msgelu", {
    nodes: [
      node("Gelu", ["x"], ["a"], {}, { domain: "com.microsoft" }),
      node("FastGelu", ["x", "bias"], ["b"], {}, { domain: "com.microsoft" }),
    ],
    inputs: [x3],
    outputs: [io("a", ["N", 2, 3]), io("b", ["N", 2, 3])],
    inits: [f32("bias", [3], [0.5, -0.5, 1])],
    opset: 17,
    domains: { "com.microsoft": 1 },
  }, { x: randomTensor([2, 2, 3], rng, WIDE) });
});

Deno.test("Gather on data is an embedding lookup; the supported list has the required ops", async () => {
  const ids = (n: number) => ({
    dtype: "I64" as const,
    shape: [n],
    data: BigInt64Array.from({ length: n }, (_, i) => BigInt((i % 4) - 1)), // -1, 0, 1, 2, -1, …
  });
  for (const n of [3, 5]) {
    await parity("embed", {
      nodes: [node("Gather", ["table", "ids"], ["y"], {}, { name: "embed" })],
      inputs: [io("ids", ["N"], 7)],
      outputs: [io("y", ["N", 2])],
      inits: [f32("table", [3, 2], [1, 2, 3, 4, 5, 6])],
    }, { ids: ids(n) });
  }
  const required =
    "Gemm MatMul Add Sub Mul Div Relu LeakyRelu Sigmoid Tanh Erf Gelu Softmax LogSoftmax " +
    "Sqrt Pow Exp Log Neg Reshape Transpose Flatten Identity Cast Concat Split Slice Squeeze Unsqueeze " +
    "Where Clip Dropout Constant Shape Gather Range Tile Expand Equal ReduceMean ReduceSum " +
    "LayerNormalization " +
    "BatchNormalization RMSNormalization Softplus HardSigmoid com.microsoft.Gelu com.microsoft.FastGelu";
  const missing = required.split(" ").filter((op) => !supportedOps().includes(op));
  if (missing.length) throw new Error(`Missing ops: ${missing}`);
});

Deno.test("opset 6 Add with broadcast = 1 and axis aligns b at that axis", async () => {
  await withTempDir(async (dir) => {
    const path = await writeModel(
      dir,
      "legacy.onnx",
      model({
        nodes: [node("Add", ["x", "b"], ["y"], { broadcast: { i: 1 }, axis: { i: 1 } })],
        inputs: [io("x", [1, 2, 2])],
        outputs: [io("y", [1, 2, 2])],
        inits: [f32("b", [2], [10, 20])],
        opset: 6,
        ir: 3,
      }),
    );
    const m = await openOnnxModel(path);
    const x: Tensor = { dtype: "F32", shape: [1, 2, 2], data: Float32Array.from([1, 2, 3, 4]) };
    const y = (await runImported(m, { x }))["y"]!;
    if ([...y.data].join() !== "11,12,23,24") throw new Error(`got ${[...y.data]}`);
  });
});

Deno.test("half-precision casts compute in float32", async () => {
  await withTempDir(async (dir) => {
    const path = await writeModel(
      dir,
      "half.onnx",
      model({
        nodes: [
          node("Cast", ["x"], ["h"], { to: { i: 10 } }),
          node("Relu", ["h"], ["r"]),
          node("Cast", ["r"], ["y"], { to: { i: 1 } }),
        ],
        inputs: [io("x", ["N", 2], 10)],
        outputs: [io("y", ["N", 2])],
      }),
    );
    const m = await openOnnxModel(path);
    if (m.inputs[0]!.dtype !== "F32" || !/fed as F32/.test(m.notes.join())) {
      throw new Error(`${JSON.stringify(m.inputs)} ${m.notes}`);
    }
    const x: Tensor = { dtype: "F32", shape: [1, 2], data: Float32Array.from([-1, 1.0001]) };
    const y = (await runImported(m, { x }))["y"]!;
    if ([...y.data].join() !== `0,${Math.fround(1.0001)}`) throw new Error(`got ${[...y.data]}`);
  });
});
