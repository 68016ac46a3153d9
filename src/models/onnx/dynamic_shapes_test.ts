// Shape computations that depend on the input, as transformer exports write them: each model runs
// in ffwd and in onnxruntime at two input sizes, keeps its symbolic dimensions, and passes
// gradients through the handlers that build it.
import { grad } from "../../engine/autograd.ts";
import { Graph } from "../../engine/graph.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { reduceSum } from "../../engine/ops/reduce.ts";
import type { Tensor } from "../../tensor.ts";
import {
  assertClose,
  assertEquals,
  maxDiff,
  randomTensor,
  values,
  withTempDir,
} from "../../../tests/_assert.ts";
import { runGraph } from "../../../tests/_ops.ts";
import {
  f32,
  i64,
  io,
  model,
  type ModelParts,
  node,
  runImported,
  runOriginal,
  t32,
  writeModel,
} from "../../../tests/_onnx.ts";
import { type OnnxModel, openOnnxModel } from "./import.ts";

/** Opens the model, checks it against onnxruntime on each feed set and returns it. */
async function parity(parts: ModelParts, feedSets: Record<string, Tensor>[]): Promise<OnnxModel> {
  return await withTempDir(async (dir) => {
    const path = await writeModel(dir, "m.onnx", model(parts));
    const m = await openOnnxModel(path);
    for (const feeds of feedSets) {
      const [got, want] = [await runImported(m, feeds), await runOriginal(path, feeds)];
      for (const o of m.outputs) {
        const d = maxDiff(got[o.name]!, want[o.name]!);
        if (!(d <= 1e-5)) throw new Error(`Output "${o.name}" differs by ${d}`);
      }
    }
    return m;
  });
}

const ids = (batch: number, seq: number): Tensor => ({
  dtype: "I64",
  shape: [batch, seq],
  data: BigInt64Array.from({ length: batch * seq }, (_, i) => BigInt((i * 5) % 7)),
});

/** `seq` (axis 1 of `ids`) as `seq1`, a one-element int64 vector. */
const SEQ = [
  node("Shape", ["ids"], ["ids_shape"]),
  node("Gather", ["ids_shape", "one_s"], ["seq"], { axis: { i: 0 } }),
  node("Unsqueeze", ["seq", "zero"], ["seq1"]),
];
const CONSTS = [i64("zero", [1], [0]), i64("one", [1], [1]), i64("one_s", [], [1])];

Deno.test("Range(0, seq, 1) stays symbolic: DistilBERT's position ids at two lengths", async () => {
  const m = await parity(
    {
      nodes: [
        ...SEQ,
        node("Constant", [], ["start"], { value: { t: i64("", [], [0]) } }),
        node("Constant", [], ["step"], { value: { t: i64("", [], [1]) } }),
        node("Range", ["start", "seq", "step"], ["positions"]),
        node("Unsqueeze", ["positions", "zero"], ["row"]),
        node("Expand", ["row", "ids_shape"], ["position_ids"]),
        node("Gather", ["table", "position_ids"], ["y"]),
      ],
      inputs: [io("ids", ["batch", "seq"], 7)],
      outputs: [io("y", ["batch", "seq", 3])],
      inits: [...CONSTS, f32("table", [8, 3], Array.from({ length: 24 }, (_, i) => i / 4))],
    },
    [{ ids: ids(2, 3) }, { ids: ids(1, 6) }],
  );
  assertEquals(m.outputs[0]!.shape, ["batch", "seq", 3]);
  assertEquals(m.notes.filter((n) => /frozen context/.test(n)), []);
});

Deno.test("Slice with ends read from the input (BERT's position_ids[:, :seq]) keeps seq", async () => {
  // DistilBERT's `node "Slice_6" (Slice): its ends (input 2) must be constant integers` before.
  const m = await parity(
    {
      nodes: [
        ...SEQ,
        node("Slice", ["buffer", "zero", "seq1", "one", "one"], ["pos_ids"], {}, {
          name: "Slice_6",
        }),
        node("Gather", ["table", "pos_ids"], ["pos"]), // [1, seq, 3]
        node("Gather", ["table", "ids"], ["tok"]), // [batch, seq, 3]
        node("Add", ["tok", "pos"], ["y"]),
        // x[:, seq - 2:], a start the folding leaves to the run time
        node("Sub", ["seq1", "two"], ["from"]),
        node("Slice", ["y", "from", "big", "one"], ["tail"]),
      ],
      inputs: [io("ids", ["batch", "seq"], 7)],
      outputs: [io("y", ["batch", "seq", 3]), io("tail", ["batch", 2, 3])],
      inits: [
        ...CONSTS,
        i64("two", [1], [2]),
        i64("big", [1], [2 ** 53 - 1]),
        i64("buffer", [1, 8], [0, 1, 2, 3, 4, 5, 6, 7]),
        f32("table", [8, 3], Array.from({ length: 24 }, (_, i) => Math.sin(i))),
      ],
    },
    [{ ids: ids(2, 3) }, { ids: ids(3, 5) }],
  );
  assertEquals(m.outputs[0]!.shape, ["batch", "seq", 3]);
});

/** A ViT's [CLS] token, `cls_token.expand(batch, -1, -1)` as torch writes it, or as a Tile. */
function clsModel(how: "expand" | "tile"): ModelParts {
  const size = [
    node("Shape", ["x"], ["x_shape"]),
    node("Gather", ["x_shape", "zero_s"], ["b"], { axis: { i: 0 } }),
    node("Unsqueeze", ["b", "zero"], ["b1"]),
  ];
  const expand = [
    node("Concat", ["b1", "minus1", "minus1"], ["size"], { axis: { i: 0 } }),
    node("Shape", ["size"], ["size_shape"]),
    node("ConstantOfShape", ["size_shape"], ["ones"], { value: { t: i64("", [1], [1]) } }),
    node("Mul", ["ones", "minus1"], ["neg"]),
    node("Equal", ["size", "neg"], ["is_neg"]),
    node("Where", ["is_neg", "ones", "size"], ["target"]),
    node("Expand", ["cls", "target"], ["cls_b"]),
  ];
  const tile = [
    node("Concat", ["b1", "one", "one"], ["reps"], { axis: { i: 0 } }),
    node("Tile", ["cls", "reps"], ["cls_b"]),
  ];
  return {
    nodes: [
      ...size,
      ...(how === "expand" ? expand : tile),
      node("Concat", ["cls_b", "x"], ["tokens"], { axis: { i: 1 } }),
      node("Add", ["tokens", "pos"], ["y"]),
    ],
    inputs: [io("x", ["batch", 4, 3])],
    outputs: [io("y", ["batch", 5, 3])],
    inits: [
      ...CONSTS,
      i64("zero_s", [], [0]),
      i64("minus1", [1], [-1]),
      f32("cls", [1, 1, 3], [0.5, -1, 2]),
      f32("pos", [1, 5, 3], Array.from({ length: 15 }, (_, i) => i / 10)),
    ],
  };
}

for (const how of ["expand", "tile"] as const) {
  Deno.test(`a ViT's [CLS] token joins the batch through ${how} and the gradient reaches it`, async () => {
    const feeds = (n: number) => ({ x: randomTensor([n, 4, 3], n) });
    const m = await parity(clsModel(how), [feeds(2), feeds(3)]);
    assertEquals(m.outputs[0]!.shape, ["batch", 5, 3]);
    // cls as a trainable input: its gradient sums the copies of every row of the batch
    const g = new Graph();
    const built = m.build(g, { trainable: new Set(["cls"]) });
    const cls = g.inputs.find((v) => v.name === "cls")!;
    const [dcls] = grad(reduceSum(mul(built.outputs[0]!, 2)), [cls]);
    g.output(dcls!);
    const out = await runGraph(g, {
      x: randomTensor([3, 4, 3], 1),
      cls: t32([1, 1, 3], [0, 0, 0]),
    });
    assertClose(values(out[dcls!.name]), [6, 6, 6]);
  });
}

Deno.test("Reshape, Expand and ConstantOfShape to targets the folding cannot finish run at run time", async () => {
  // x.view(batch · seq, 4) @ W, then .view(batch, seq, 2): both targets are Concats of
  // run-time values; the result keeps [batch, seq, 2].
  const m = await parity(
    {
      nodes: [
        node("Shape", ["x"], ["s"]),
        node("Gather", ["s", "zero"], ["b1"], { axis: { i: 0 } }),
        node("Gather", ["s", "one"], ["seq1"], { axis: { i: 0 } }),
        node("Mul", ["b1", "seq1"], ["rows"]),
        node("Concat", ["rows", "four"], ["flat_shape"], { axis: { i: 0 } }),
        node("Reshape", ["x", "flat_shape"], ["flat"]),
        node("MatMul", ["flat", "w"], ["proj"]),
        node("Concat", ["b1", "seq1", "two"], ["back_shape"], { axis: { i: 0 } }),
        node("Reshape", ["proj", "back_shape"], ["y"]),
        node("Concat", ["rows", "two"], ["wide"], { axis: { i: 0 } }),
        node("Expand", ["bias", "wide"], ["z"]),
        node("ConstantOfShape", ["wide"], ["c"], { value: { t: f32("", [1], [1.5]) } }),
      ],
      inputs: [io("x", ["batch", "seq", 4])],
      outputs: [io("y", ["batch", "seq", 2]), io("z", ["rows", 2]), io("c", ["rows", 2])],
      inits: [
        ...CONSTS,
        i64("two", [1], [2]),
        i64("four", [1], [4]),
        f32("w", [4, 2], [1, 2, 3, 4, 5, 6, 7, 8]),
        f32("bias", [1, 2], [0.5, -0.5]),
      ],
    },
    [{ x: randomTensor([2, 3, 4], 1) }, { x: randomTensor([1, 5, 4], 2) }],
  );
  assertEquals(m.outputs[0]!.shape, ["batch", "seq", 2]);
  assertEquals(m.outputs[1]!.shape[1], 2);
});
