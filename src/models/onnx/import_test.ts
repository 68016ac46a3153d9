import { grad } from "../../engine/autograd.ts";
import { Graph } from "../../engine/graph.ts";
import { add } from "../../engine/ops/elementwise.ts";
import { reduceSum } from "../../engine/ops/reduce.ts";
import {
  f32,
  i64,
  io,
  model,
  node,
  REALDATA,
  realdataTest,
  runImported,
  runOriginal,
  t32,
  writeModel,
} from "../../../tests/_onnx.ts";
import { assertEquals, maxDiff, withTempDir } from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";
import { openOnnxModel } from "./import.ts";
import { inspectOnnx } from "./inspect.ts";

const MNIST =
  `${REALDATA}onnxruntime__onnxruntime-qnn/onnxruntime/test/testdata/test_training_model.onnx`;
const mnistInput = () => t32([1, 784], Array.from({ length: 784 }, (_, i) => Math.sin(i)));

Deno.test("nodes that are not topologically sorted are sorted", async () => {
  await withTempDir(async (dir) => {
    const m = model({
      // y = relu(x·W + b), written consumer-first
      nodes: [
        node("Relu", ["h"], ["y"]),
        node("Add", ["xw", "fc.bias"], ["h"]),
        node("MatMul", ["x", "fc.weight"], ["xw"]),
      ],
      inputs: [io("x", ["batch", 2])],
      outputs: [io("y", ["batch", 2])],
      inits: [f32("fc.weight", [2, 2], [1, 2, 3, 4]), f32("fc.bias", [2], [-10, 0])],
    });
    const mm = await openOnnxModel(await writeModel(dir, "unsorted.onnx", m));
    assertEquals(mm.layers.map((l) => `${l.name} ${l.biasKey}`), ["fc fc.bias"]);
    const out = await runImported(mm, { x: t32([2, 2], [1, 1, 2, 2]) });
    assertEquals([...out["y"]!.data], [0, 6, 0, 12]);
  });
});

realdataTest(
  "IR < 4 lists weights as inputs: they stay weights, and only real inputs are inputs",
  async () => {
    const mm = await openOnnxModel(
      `${REALDATA}onnx__onnx/onnx/backend/test/data/pytorch-converted/test_Linear/model.onnx`,
    );
    assertEquals(mm.irVersion, 3);
    assertEquals(mm.inputs.map((i) => i.name), ["0"]);
    // PyTorch 0.3 exported a fixed batch of 4: it becomes the symbolic batch.
    assertEquals(mm.inputs[0]!.shape, ["batch", 10]);
    assertEquals(mm.notes, [
      'Input "0" declares a fixed leading dimension of 4: imported as the batch dimension (any number of rows)',
    ]);
    const mnist = await openOnnxModel(MNIST);
    assertEquals(mnist.inputs.map((i) => i.name), ["X"]);
    if (!/"W1".*imported as constants/.test(mnist.notes[0] ?? "")) throw new Error("missing note");
  },
);

realdataTest("a hook that adds a constant shifts the output by that constant", async () => {
  const mm = await openOnnxModel(MNIST);
  const x = mnistInput();
  const base = await runImported(mm, { X: x });
  const sites: string[] = [];
  const shifted = await runImported(mm, { X: x }, {
    hook: ({ layer, x, y, weight, bias }) => {
      sites.push(`${layer.name} x${x} y${y} w${weight} b${bias}`);
      return layer.name === "W3" ? add(y, 1) : y;
    },
  });
  assertEquals(sites, [
    "W1 x[batch, 784] y[batch, 128] w[784, 128] b[128]",
    "W2 x[batch, 128] y[batch, 32] w[128, 32] b[32]",
    "W3 x[batch, 32] y[batch, 10] w[32, 10] b[10]",
  ]);
  const b = base["predictions"]!.data as Float32Array;
  const s = shifted["predictions"]!.data as Float32Array;
  for (let i = 0; i < 10; i++) {
    if (Math.abs(s[i]! - b[i]! - 1) > 1e-5) throw new Error(`element ${i}: ${b[i]} → ${s[i]}`);
  }
  const original = await runOriginal(MNIST, { X: x });
  if (maxDiff(base["predictions"]!, original["predictions"]!) > 1e-5) throw new Error("parity");
});

Deno.test("an op onnxruntime cannot run fails naming the file, the node and onnxruntime's reason", async () => {
  await withTempDir(async (dir) => {
    const m = model({
      nodes: [
        node("Relu", ["x"], ["h"]),
        node("Frobnicate", ["h"], ["y"], {}, {
          name: "frob_1",
          domain: "org.example",
        }),
      ],
      inputs: [io("x", [2])],
      outputs: [io("y", [2])],
      domains: { "org.example": 1 },
    });
    const path = await writeModel(dir, "custom.onnx", m);
    const e = await openOnnxModel(path).then(() => null, (e) => e as Error);
    const want = [
      path,
      "onnxruntime cannot run its frozen context",
      'node "frob_1" (org.example.Frobnicate)',
      "Frobnicate",
    ];
    if (!(e instanceof TypeError) || !want.every((w) => e.message.includes(w))) {
      throw new Error(`Unexpected error: ${e}`);
    }
    const s = await inspectOnnx(path);
    assertEquals(s.frozen, ['node "frob_1" (org.example.Frobnicate)']);
  });
});

Deno.test("ai.onnx.ml post-processing is cut off with a note, and the probabilities become the output", async () => {
  await withTempDir(async (dir) => {
    const m = model({
      nodes: [
        node("Gemm", ["x", "coef", "intercept"], ["logits"]),
        node("Softmax", ["logits"], ["probabilities"], { axis: { i: 1 } }),
        node("ArgMax", ["probabilities"], ["label_index"], { axis: { i: 1 } }),
        node("ArrayFeatureExtractor", ["classes", "label_index"], ["label"], {}, {
          domain: "ai.onnx.ml",
        }),
        node("ZipMap", ["probabilities"], ["output_probability"], {
          classlabels_int64s: { ints: [0, 1] },
        }, {
          domain: "ai.onnx.ml",
        }),
      ],
      inputs: [io("x", ["N", 2])],
      outputs: [io("label", ["N"], 7), io("output_probability", [])],
      inits: [
        f32("coef", [2, 2], [1, 2, 3, 4]),
        f32("intercept", [2], [0, 1]),
        i64("classes", [2], [0, 1]),
      ],
      opset: 12,
      domains: { "ai.onnx.ml": 1 },
    });
    const mm = await openOnnxModel(await writeModel(dir, "skl.onnx", m));
    assertEquals(mm.outputs.map((o) => `${o.name} ${o.dtype} ${o.shape}`), [
      "probabilities F32 N,2",
    ]);
    if (!/Cut off post-processing .*ZipMap/.test(mm.notes.join("\n"))) {
      throw new Error(mm.notes.join());
    }
    assertEquals(mm.layers.map((l) => `${l.name} ${l.orientation}`), ["coef in_out"]);
    const out = await runImported(mm, { x: t32([1, 2], [0, 0]) });
    const p = out["probabilities"]!.data as Float32Array;
    if (Math.abs(p[1]! - Math.exp(1) / (1 + Math.exp(1))) > 1e-6) throw new Error(`${p}`);
  });
});

realdataTest(
  "overrides replace stored weights and trainable weights become differentiable inputs",
  async () => {
    const mm = await openOnnxModel(MNIST);
    const x = mnistInput();
    const zeros = { dtype: "F32" as const, shape: [10], data: new Float32Array(10).fill(0.5) };
    const out = await runImported(mm, { X: x }, {
      overrides: new Map([["W3", { ...zeros, shape: [32, 10], data: new Float32Array(320) }], [
        "B3",
        zeros,
      ]]),
    });
    assertEquals([...out["predictions"]!.data], new Array(10).fill(0.5));
    // Full fine-tuning of B3: d(sum predictions)/dB3 = 1 everywhere.
    const g = new Graph();
    const built = mm.build(g, { trainable: new Set(["B3"]) });
    const b3 = g.inputs.find((v) => v.name === "B3")!;
    const [dB3] = grad(reduceSum(built.outputs[0]!), [b3]);
    g.output(dB3!);
    const r = await runGraph(g, { X: x, B3: zeros });
    assertEquals([...r[dB3!.name]!.data], new Array(10).fill(1));
  },
);

realdataTest(
  "inspectOnnx() gives a JSON-able summary with linear layers and orientations",
  async () => {
    const s = await inspectOnnx(
      `${REALDATA}tracel-ai__burn/crates/burn-import/onnx-tests/tests/linear/linear.onnx`,
    );
    const again = JSON.parse(JSON.stringify(s));
    assertEquals(again, s);
    assertEquals([s.producer.name, s.producer.version, s.irVersion], ["pytorch", "2.0.1", 8]);
    assertEquals(s.opsets, [{ domain: "", version: 16 }]);
    assertEquals(s.ops, { Gemm: 1, MatMul: 2, Add: 1 });
    assertEquals(s.linearLayers.map((l) => `${l.name}:${l.orientation}`), [
      "linear1_with_gemm:out_in",
      "linear2_with_matmul:in_out",
      "linear3_with_matmul:in_out",
    ]);
    assertEquals(s.initializers.find((i) => i.name === "onnx::MatMul_15"), {
      name: "onnx::MatMul_15",
      dtype: "F32",
      shape: [7, 8],
      bytes: 224,
    });
  },
);

Deno.test("ai.onnx.ml preprocessing before the network is not cut: it runs as frozen context", async () => {
  await withTempDir(async (dir) => {
    const m = model({
      nodes: [
        node(
          "Scaler",
          ["x"],
          ["scaled"],
          { offset: { floats: [0.5, 0] }, scale: { floats: [1, 2] } },
          {
            name: "scaler",
            domain: "ai.onnx.ml",
          },
        ),
        node("Gemm", ["scaled", "coef"], ["y"]),
      ],
      inputs: [io("x", ["N", 2])],
      outputs: [io("y", ["N", 2])],
      inits: [f32("coef", [2, 2], [1, 2, 3, 4])],
      domains: { "ai.onnx.ml": 1 },
    });
    const path = await writeModel(dir, "pre.onnx", m);
    const imported = await openOnnxModel(path);
    assertEquals(imported.layers.map((l) => l.name), ["coef"]);
    assertEquals(imported.outputs.map((o) => [o.name, o.shape]), [["y", ["N", 2]]]);
    if (!imported.notes.some((n) => n.includes("(ai.onnx.ml.Scaler) run as frozen context"))) {
      throw new Error(`No frozen-context note: ${imported.notes}`);
    }
    const x = { dtype: "F32" as const, shape: [3, 2], data: Float32Array.from([1, 2, 3, 4, 5, 6]) };
    // (x − offset) · scale, then · coef: row 0 is [0.5, 4] · [[1, 2], [3, 4]] = [12.5, 17]
    const got = await runImported(imported, { x });
    const want = await runOriginal(path, { x });
    assertEquals([...got["y"]!.data].slice(0, 2), [12.5, 17]);
    if (maxDiff(got["y"]!, want["y"]!) !== 0) throw new Error("differs from onnxruntime");
  });
});

Deno.test("a fixed batch is freed only where every node works per row", async () => {
  await withTempDir(async (dir) => {
    const W = f32("W", [4, 3], Array.from({ length: 12 }, (_, i) => (i % 5) - 2));
    // h = x·W, then a tail; the input declares a fixed batch of 1.
    const make = async (tail: ReturnType<typeof node>[], extra: ReturnType<typeof f32>[] = []) => {
      const m = model({
        nodes: [node("MatMul", ["x", "W"], ["h"]), ...tail],
        inputs: [io("x", [1, 4])],
        outputs: [io("y", [1, 3])],
        inits: [W, ...extra],
      });
      return await openOnnxModel(await writeModel(dir, `m${tail.length}_${Math.random()}.onnx`, m));
    };
    const kept = (
      mm: { inputs: readonly { shape: readonly unknown[] }[]; notes: readonly string[] },
      op: string,
    ) => {
      assertEquals(mm.inputs[0]!.shape, [1, 4]);
      const note = mm.notes.find((n) =>
        n.startsWith('Input "x" keeps its fixed leading dimension of 1')
      );
      if (!note?.includes(`(${op}) may combine rows`)) throw new Error(`note: ${mm.notes}`);
    };
    // Per row: an activation and a softmax over the last axis.
    const free = await make([
      node("Relu", ["h"], ["r"]),
      node("Softmax", ["r"], ["y"], { axis: { i: -1 } }),
    ]);
    assertEquals(free.inputs[0]!.shape, ["batch", 4]);
    assertEquals(free.outputs[0]!.shape, ["batch", 3]);
    // Mixing rows: a mean over all axes, a softmax over the batch, a sum over axis 0, a reshape
    // to a constant shape with a residual that broadcasts back.
    kept(
      await make([node("ReduceMean", ["h"], ["m"]), node("Sub", ["h", "m"], ["y"])]),
      "ReduceMean",
    );
    kept(await make([node("Softmax", ["h"], ["y"], { axis: { i: 0 } })]), "Softmax");
    kept(
      await make([node("ReduceSum", ["h", "ax"], ["s"]), node("Div", ["h", "s"], ["y"])], [
        i64("ax", [1], [0]) as unknown as ReturnType<typeof f32>,
      ]),
      "ReduceSum",
    );
    kept(
      await make([
        node("Reshape", ["x", "shape"], ["x1"]),
        node("MatMul", ["x1", "W"], ["h1"]),
        node("Add", ["h", "h1"], ["y"]),
      ], [i64("shape", [2], [1, 4]) as unknown as ReturnType<typeof f32>]),
      "Reshape",
    );
    // PyTorch's x.view(-1, 3): rows stay rows when a row holds exactly 3 values...
    const viewed = await make([node("Reshape", ["h", "rows"], ["y"])], [
      i64("rows", [2], [-1, 3]) as unknown as ReturnType<typeof f32>,
    ]);
    assertEquals(viewed.inputs[0]!.shape, ["batch", 4]);
    assertEquals(viewed.outputs[0]!.shape, ["batch", 3]);
    // ...and not when a row would be cut in two (x.view(-1, 1) of 3-wide rows): the size is kept.
    const cut = await make([node("Reshape", ["h", "ones"], ["y"])], [
      i64("ones", [2], [-1, 1]) as unknown as ReturnType<typeof f32>,
    ]);
    assertEquals(cut.inputs[0]!.shape, [1, 4]);
    if (!cut.notes.some((n) => n.includes("keeps its fixed leading dimension of 1"))) {
      throw new Error(`note: ${cut.notes}`);
    }
  });
});

Deno.test("a fixed leading dimension is kept when another input dimension is symbolic", async () => {
  await withTempDir(async (dir) => {
    // Sequence-first: [seq 5, batch, 4], exported with a dynamic batch and a fixed length.
    const m = model({
      nodes: [node("MatMul", ["x", "W"], ["y"])],
      inputs: [io("x", [5, "batch", 4])],
      outputs: [io("y", [5, "batch", 3])],
      inits: [f32("W", [4, 3], Array.from({ length: 12 }, (_, i) => i))],
    });
    const mm = await openOnnxModel(await writeModel(dir, "seq.onnx", m));
    assertEquals(mm.inputs[0]!.shape, [5, "batch", 4]);
    assertEquals(mm.notes.filter((n) => n.includes("leading dimension")), []);
  });
});
