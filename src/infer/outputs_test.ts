import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import { argmaxRows, probabilities, scoreRows } from "./outputs.ts";

const rows = (shape: number[], values: number[]) => ({
  rows: values.length / (shape.reduce((a, b) => a * b, 1) || 1),
  shape,
  y: new Float32Array(values),
});

Deno.test("probabilities() is a softmax over the last axis that survives large logits", () => {
  const p = probabilities(rows([3], [1000, 1000, -1000, 1, 2, 3]));
  assertEquals([...p.y.subarray(0, 3)], [0.5, 0.5, 0]);
  const e = [Math.exp(-2), Math.exp(-1), 1].map((v, _, a) => v / (a[0]! + a[1]! + a[2]!));
  assertEquals([...p.y.subarray(3)], [...new Float32Array(e)]);
});

Deno.test("a one-wide output gets the sigmoid, and its class is logit > 0", () => {
  const out = rows([1], [-5.960331, 3.9751828, 0]);
  const p = probabilities(out);
  assertEquals([...p.y], [
    ...new Float32Array([1 / (1 + Math.exp(5.960331)), 1 / (1 + Math.exp(-3.9751828)), 0.5]),
  ]);
  assertEquals([...argmaxRows(out).y], [0, 1, 0]);
  const labels = { kind: "labels" as const, data: new BigInt64Array([0n, 1n, 1n]) };
  assertEquals(scoreRows(out, labels), { accuracy: 2 / 3, correct: 2, rows: 3 });
});

Deno.test("argmaxRows() takes the first of tied values and drops the last axis", () => {
  const out = argmaxRows(rows([2, 3], [1, 1, 0, 0, 2, 2]));
  assertEquals([...out.y], [0, 1]);
  assertEquals(out.shape, [2]);
});

Deno.test("scoreRows() gives the mean squared error of float targets and refuses what cannot compare", () => {
  const out = rows([2], [1, 2, 3, 4]);
  const targets = { kind: "targets" as const, width: 2, data: new Float32Array([1, 0, 3, 6]) };
  assertEquals(scoreRows(out, targets), { mse: 2, rows: 2 });
  const wide = { kind: "targets" as const, width: 1, data: new Float32Array([1, 0]) };
  assertThrows(
    () => scoreRows(out, wide),
    RangeError,
    "targets have 1 values per row, the output 2",
  );
  const labels = { kind: "labels" as const, data: new BigInt64Array([0n]) };
  assertThrows(
    () => scoreRows(rows([2, 3], [0, 1, 2, 3, 4, 5]), labels),
    RangeError,
    "2 classes per row",
  );
});
