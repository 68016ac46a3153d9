/**
 * The import of convolution, pooling, Max and Min (`_ops_conv.ts`): files written as exporters
 * write them (auto_pad strings, ceil_mode, count_include_pad, a read Indices output, Max of shape
 * integers) are built, not carried, and give what onnxruntime gives for the file itself; a node
 * the builder refuses is carried as frozen context instead.
 */

import { assertEquals, maxDiff, randomTensor } from "../../../tests/_assert.ts";
import { withTempDir } from "../../../tests/_assert.ts";
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
import { Rng } from "../../rng.ts";
import type { Tensor } from "../../tensor.ts";
import { type OnnxModel, openOnnxModel } from "./import.ts";

const rng = new Rng(42);
const weights = (name: string, dims: number[]) =>
  f32(name, dims, Array.from(randomTensor(dims, rng).data));

/** Imports a hand-made model and checks every output against the file run in onnxruntime. */
async function parity(name: string, parts: ModelParts, feeds: Record<string, Tensor>) {
  return await withTempDir(async (dir): Promise<OnnxModel> => {
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

Deno.test("Conv, pools, Max and Min import with their attributes and give onnxruntime's outputs", async () => {
  const m = await parity("cnn", {
    nodes: [
      node("Conv", ["x", "w", "b"], ["c"], {
        auto_pad: { s: "SAME_LOWER" },
        strides: { ints: [2, 2] },
        kernel_shape: { ints: [3, 3] },
      }),
      node("AveragePool", ["c"], ["a"], {
        kernel_shape: { ints: [3, 3] },
        strides: { ints: [2, 2] },
        pads: { ints: [1, 1, 1, 1] },
        ceil_mode: { i: 1 },
        count_include_pad: { i: 1 },
      }),
      node("MaxPool", ["c"], ["p", "at"], {
        kernel_shape: { ints: [2, 2] },
        auto_pad: { s: "SAME_UPPER" },
      }),
      node("GlobalAveragePool", ["p"], ["gp"]),
      node("GlobalMaxPool", ["a"], ["ga"]),
      node("Min", ["gp", "ga", "cap"], ["lo"]),
      node("Max", ["gp", "ga"], ["hi"]),
    ],
    inputs: [io("x", ["N", 2, 7, 8])],
    outputs: [
      io("a", ["N", 3, 3, 3]),
      io("at", ["N", 3, 4, 4], 7),
      io("lo", ["N", 3, 1, 1]),
      io("hi", ["N", 3, 1, 1]),
    ],
    inits: [weights("w", [3, 2, 3, 3]), weights("b", [3]), f32("cap", [], [0.1])],
  }, { x: randomTensor([2, 2, 7, 8], rng) });
  assertEquals(m.notes, []); // nothing carried as frozen context
  assertEquals(m.outputs.map((o) => o.shape), [
    ["N", 3, 3, 3],
    ["N", 3, 4, 4],
    ["N", 3, 1, 1],
    ["N", 3, 1, 1],
  ]);
});

Deno.test("Max of integers known at import folds, so a Reshape target computed with it stays static", async () => {
  const m = await parity("folded", {
    nodes: [
      node("Max", ["t1", "t2"], ["target"]),
      node("Reshape", ["x", "target"], ["flat"]),
      node("Conv", ["x", "w"], ["c"], { kernel_shape: { ints: [2] }, auto_pad: { s: "" } }),
    ],
    inputs: [io("x", ["N", 2, 3])],
    outputs: [io("flat", ["N", 6]), io("c", ["N", 1, 2])],
    inits: [i64("t1", [2], [-1, 6]), i64("t2", [2], [-1, 2]), weights("w", [1, 2, 2])],
    opset: 13, // Max takes integers from opset 12 on
  }, { x: randomTensor([3, 2, 3], rng) });
  assertEquals(m.outputs.map((o) => o.shape), [["N", 6], ["N", 1, 2]]);
});

Deno.test("a MaxPool whose column-major Indices are read runs as frozen context, as onnxruntime computes it", async () => {
  const m = await parity("indices", {
    nodes: [
      node("MaxPool", ["x"], ["p", "at"], {
        kernel_shape: { ints: [2] },
        storage_order: { i: 1 },
      }, { name: "pool" }),
    ],
    inputs: [io("x", [1, 2, 4])],
    outputs: [io("at", [1, 2, 3], 7)],
  }, { x: randomTensor([1, 2, 4], rng) });
  const note = m.notes.find((n) => n.includes("storage_order = 1"));
  assertEquals(note?.endsWith("it runs as frozen context instead"), true, m.notes.join("\n"));
  assertEquals(note?.startsWith('node "pool" (MaxPool): its Indices output'), true, note);
});
