import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import type { ModelIO } from "../models/model.ts";
import { HttpError } from "./_http.ts";
import { requestFeeds } from "./_request.ts";

const image: ModelIO[] = [{ name: "input.1", dtype: "F32", shape: ["batch", 1, 2, 2] }];
const text: ModelIO[] = [
  { name: "ids", dtype: "I64", shape: ["batch", "seq"] },
  { name: "mask", dtype: "I64", shape: ["batch", "seq"] },
];

Deno.test("array rows, nested or flat, and {x} rows become the one input's tensor", () => {
  const feeds = requestFeeds([[[[1, 2], [3, 4]]], [5, 6, 7, 8], { x: [9, 10, 11, 12] }], image);
  assertEquals(Object.keys(feeds), ["input.1"]);
  assertEquals(feeds["input.1"]!.shape, [3, 1, 2, 2]);
  assertEquals([...feeds["input.1"]!.data], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
});

Deno.test("rows of consecutive requests keep their own values", () => {
  const a = requestFeeds([[1, 2, 3, 4]], image)["input.1"]!;
  const b = requestFeeds([[5, 6, 7, 8], [9, 10, 11, 12]], image)["input.1"]!;
  assertEquals([...a.data], [1, 2, 3, 4]);
  assertEquals([...b.data], [5, 6, 7, 8, 9, 10, 11, 12]);
});

Deno.test("named rows take each input's dtype; bad rows are 400s naming the row and input", () => {
  const feeds = requestFeeds([{ ids: [5, 6, 7], mask: [1, 1, 0] }], text);
  assertEquals(feeds.ids, { dtype: "I64", shape: [1, 3], data: new BigInt64Array([5n, 6n, 7n]) });
  const cases: [unknown[], string][] = [
    [[[1, 2, 3]], "inputs[0] is an array, but the model has 2 inputs"],
    [[{ ids: [1], mask: [1], typo: [1] }], "inputs[0].typo is not an input of the model"],
    [[{ ids: [1, 2] }], 'inputs[0] has no input "mask"'],
    [[{ ids: [1, 2], mask: [1] }], "inputs[0].mask has seq = 1 (shape [1]), but inputs[0].ids"],
    [[{ ids: [1, 1e999], mask: [1, 1] }], "inputs[0].ids[1] is Infinity, expected a finite"],
    [["a"], 'inputs[0] is "a", expected an array or an object of inputs by name'],
  ];
  for (const [rows, message] of cases) {
    const e = assertThrows(() => requestFeeds(rows, text), HttpError, message);
    assertEquals((e as HttpError).status, 400);
  }
});

Deno.test("a model whose inputs JSON cannot give is a 500, not the request's fault", () => {
  const half: ModelIO[] = [{ name: "x", dtype: "F16", shape: ["batch", 2] }];
  const e = assertThrows(() => requestFeeds([[1, 2]], half), HttpError, "half-precision");
  assertEquals((e as HttpError).status, 500);
});
