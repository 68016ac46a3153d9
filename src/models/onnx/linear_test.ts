import { create } from "@bufbuild/protobuf";
import { StringStringEntryProtoSchema } from "../../onnx/gen/onnx_pb.ts";
import { Graph } from "../../engine/graph.ts";
import { add } from "../../engine/ops/elementwise.ts";
import {
  f32,
  io,
  model,
  node,
  REALDATA,
  realdataTest,
  runImported,
  t32,
  writeModel,
} from "../../../tests/_onnx.ts";
import { assertEquals, withTempDir } from "../../../tests/_assert.ts";
import { openOnnxModel } from "./import.ts";
import { layerName } from "./linear.ts";

const summary = async (path: string) =>
  (await openOnnxModel(REALDATA + path)).layers.map((l) =>
    [l.name, l.inFeatures, l.outFeatures, l.orientation, l.weightKey, l.biasKey ?? "-"].join(" ")
  );

realdataTest(
  "the three PyTorch Linear export styles of linear.onnx are found and named",
  async () => {
    assertEquals(
      await summary("tracel-ai__burn/crates/burn-import/onnx-tests/tests/linear/linear.onnx"),
      [
        // Gemm with transB = 1: weight [out, in]
        "linear1_with_gemm 3 4 out_in linear1_with_gemm.weight linear1_with_gemm.bias",
        // bias-free MatMul on an anonymous pre-transposed [in, out] constant: named by node scope
        "linear2_with_matmul 5 6 in_out onnx::MatMul_14 -",
        // 3-D MatMul + Add(bias, y), bias first
        "linear3_with_matmul 7 8 in_out onnx::MatMul_15 linear3_with_matmul.bias",
      ],
    );
  },
);

realdataTest(
  "old PyTorch exports: Gemm and Transpose→MatMul are [out, in] layers named by initializer",
  async () => {
    const dir = "onnx__onnx/onnx/backend/test/data/pytorch-converted/";
    assertEquals(await summary(dir + "test_Linear/model.onnx"), ["1 10 8 out_in 1 2"]);
    assertEquals(await summary(dir + "test_Linear_no_bias/model.onnx"), ["1 10 8 out_in 1 -"]);
  },
);

realdataTest("Gemm with transB = 0 stores [in, out]", async () => {
  assertEquals(await summary("tracel-ai__burn/crates/onnx-ir/tests/fixtures/gemm_linear.onnx"), [
    "weight 3 4 in_out weight bias",
  ]);
});

realdataTest("tf2onnx and keras2onnx layers are named after the Keras layer", async () => {
  assertEquals(await summary("tracel-ai__burn/examples/raspberry-pi-pico/src/model/sine.onnx"), [
    "dense 1 16 in_out sequential/dense/MatMul/ReadVariableOp:0 sequential/dense/BiasAdd/ReadVariableOp:0",
    "dense_1 16 16 in_out sequential/dense_1/MatMul/ReadVariableOp:0 sequential/dense_1/BiasAdd/ReadVariableOp:0",
    "dense_2 16 1 in_out sequential/dense_2/MatMul/ReadVariableOp:0 sequential/dense_2/BiasAdd/ReadVariableOp:0",
  ]);
  assertEquals(await summary("kraiskil__onnx2c/test/velardo/lesson9.onnx"), [
    "dense 2 5 in_out dense/kernel:0 dense/bias:0",
    "dense_1 5 1 in_out dense_1/kernel:0 dense_1/bias:0",
  ]);
});

realdataTest("MatMul + Add on [in, out] initializers (ONNX Runtime's MNIST MLP)", async () => {
  assertEquals(
    await summary(
      "onnxruntime__onnxruntime-qnn/onnxruntime/test/testdata/test_training_model.onnx",
    ),
    ["W1 784 128 in_out W1 B1", "W2 128 32 in_out W2 B2", "W3 32 10 in_out W3 B3"],
  );
});

realdataTest("zero-size LoRA placeholders are not linear layers", async () => {
  assertEquals(await summary("pykeio__ort/tests/data/lora_model.onnx"), [
    "weight_x 4 4 in_out weight_x -",
  ]);
});

Deno.test("layerName() reads PyTorch module paths, node scopes and Keras layer names", () => {
  assertEquals(layerName("fc1.weight"), "fc1");
  assertEquals(layerName("onnx::MatMul_3", "mlp.0.bias"), "mlp.0");
  assertEquals(layerName("onnx::MatMul_3", undefined, ["/mlp/mlp.0/MatMul"]), "mlp.0");
  assertEquals(
    layerName("onnx::MatMul_9", undefined, ["/model/layers.0/mlp/up_proj/MatMul"]),
    "model.layers.0.mlp.up_proj",
  );
  assertEquals(layerName("onnx::MatMul_9", undefined, ["/0/Gemm"]), "0");
  assertEquals(layerName("sequential/dense/MatMul/ReadVariableOp:0"), "dense");
  assertEquals(layerName("dense_2/kernel:0"), "dense_2");
  assertEquals(layerName("W1", "B1", ["MatMul_0"]), "W1");
});

Deno.test("layerName() rebuilds module paths from TorchScript scopes as torch writes them", () => {
  // ModuleList children are scoped by their unqualified name (`layer.0`) under their caller
  assertEquals(
    layerName("onnx::MatMul_7", undefined, ["/bert/encoder/layer.0/intermediate/dense/MatMul"]),
    "bert.encoder.layer.0.intermediate.dense",
  );
  // a called Sequential inside a called Sequential: `layer1.0` extends `layer1`
  assertEquals(
    layerName("onnx::MatMul_8", undefined, ["/layer1/layer1.0/fc/MatMul"]),
    "layer1.0.fc",
  );
  // ops of the root module have no scope
  assertEquals(layerName("onnx::MatMul_9", undefined, ["/MatMul"]), "onnx::MatMul_9");
});

Deno.test("layerName() takes the scope over a weight of another module (tied, deduplicated)", () => {
  // GPT-2's lm_head multiplies by the token embedding, transposed
  assertEquals(layerName("transformer.wte.weight", undefined, ["/lm_head/MatMul"]), "lm_head");
  // the exporter kept one copy of two equal weights, named after layer 0's
  assertEquals(
    layerName("encoder.layer.0.output.dense.weight", undefined, [
      "/encoder/layer.1/output/dense/MatMul",
    ]),
    "encoder.layer.1.output.dense",
  );
  // a scope that agrees keeps the fuller initializer path (a ModuleDict `heads` is never called)
  assertEquals(layerName("heads.a.weight", "heads.a.bias", ["/a/Gemm"]), "heads.a");
});

Deno.test("layerName() reads the module of a dynamo export's name_scopes metadata", () => {
  const scoped = (value: string) => ({
    name: "node_linear",
    metadataProps: [create(StringStringEntryProtoSchema, {
      key: "pkg.torch.onnx.name_scopes",
      value,
    })],
  });
  assertEquals(
    layerName("val_3", undefined, [scoped("['', 'network', 'network.0', 'linear']")]),
    "network.0",
  );
  assertEquals(
    layerName("transformer.wte.weight", undefined, [scoped("['', 'lm_head', 'linear_12']")]),
    "lm_head",
  );
  assertEquals(layerName("val_3", undefined, [scoped("['', 'matmul']")]), "val_3");
});

Deno.test("a name two layers share never takes a third layer's own name", async () => {
  await withTempDir(async (dir) => {
    const m = model({
      nodes: [
        node("MatMul", ["x", "onnx::MatMul_1"], ["h"], {}, { name: "/dense/MatMul" }),
        node("MatMul", ["h", "onnx::MatMul_2"], ["g"], {}, { name: "/dense/MatMul_1" }),
        node("MatMul", ["g", "onnx::MatMul_3"], ["y"], {}, { name: "/dense_1/MatMul" }),
      ],
      inputs: [io("x", ["n", 2])],
      outputs: [io("y", ["n", 2])],
      inits: [1, 2, 3].map((i) => f32(`onnx::MatMul_${i}`, [2, 2], [1, 0, 0, i])),
    });
    const mm = await openOnnxModel(await writeModel(dir, "twice.onnx", m));
    // `dense` called twice: its second call skips `dense_1`, the name of another module
    assertEquals(mm.layers.map((l) => l.name), ["dense", "dense_2", "dense_1"]);
  });
});

Deno.test("layer names are unique, and tied weights give two layers", async () => {
  await withTempDir(async (dir) => {
    const m = model({
      nodes: [
        node("MatMul", ["x", "w"], ["h"], {}, { name: "a" }),
        node("MatMul", ["h", "w"], ["y"], {}, { name: "b" }),
      ],
      inputs: [io("x", ["n", 2])],
      outputs: [io("y", ["n", 2])],
      inits: [f32("w", [2, 2], [1, 2, 3, 4])],
    });
    const mm = await openOnnxModel(await writeModel(dir, "tied.onnx", m));
    assertEquals(mm.layers.map((l) => `${l.name}:${l.weightKey}`), ["w:w", "w_1:w"]);
  });
});

Deno.test("Gemm alpha and beta: the hook sees y = alpha·x·Wᵀ + beta·b and the weight as stored", async () => {
  await withTempDir(async (dir) => {
    const m = model({
      nodes: [node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], {
        alpha: { f: 2 },
        beta: { f: 0.5 },
        transB: { i: 1 },
      })],
      inputs: [io("x", ["n", 2])],
      outputs: [io("y", ["n", 3])],
      inits: [f32("fc.weight", [3, 2], [1, 0, 0, 1, 1, 1]), f32("fc.bias", [3], [10, 20, 30])],
    });
    const mm = await openOnnxModel(await writeModel(dir, "gemm.onnx", m));
    const l = mm.layers[0]!;
    assertEquals([l.name, l.orientation, l.alpha, l.beta], ["fc", "out_in", 2, 0.5]);
    const seen: string[] = [];
    const out = await runImported(mm, { x: t32([1, 2], [1, 2]) }, {
      hook: (site) => {
        seen.push(`${site.weight.shape} ${site.bias?.shape} ${site.y.shape}`);
        return site.y;
      },
    });
    // 2·[1, 2, 3] + 0.5·[10, 20, 30]
    assertEquals([...out["y"]!.data], [7, 14, 21]);
    assertEquals(seen, ["3,2 3 n,3"]);
    const g = new Graph();
    mm.build(g, { hook: ({ y }) => add(y, 1) });
    if (g.outputs.length !== 1) throw new Error("expected one output");
  });
});
