import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import type { Tensor } from "../tensor.ts";
import type { InputSpec } from "./feeds.ts";
import { InputColumn, sameSymbols } from "./json_inputs.ts";

const spec = (dtype: Tensor["dtype"], ...row: (number | string)[]): InputSpec => ({
  name: "v",
  dtype,
  shape: ["batch", ...row],
});

/** The tensor of `values`, one row each, read by a fresh column. */
function read(s: InputSpec, values: unknown[]): Tensor {
  const c = new InputColumn(s, { rows: values.length });
  values.forEach((v, i) => c.add(i, `inputs[${i}]`, v));
  return c.tensor(values.length);
}

Deno.test("a row nested to the row shape and the same row flat give the same tensor", () => {
  const nested = read(spec("F32", 2, 3), [[[1, 2, 3], [4, 5, 6]], [1, 2, 3, 4, 5, 6]]);
  assertEquals(nested.shape, [2, 2, 3]);
  assertEquals([...nested.data], [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]);
  assertEquals(read(spec("F32"), [7, 8]).shape, [2]); // a number a row
});

Deno.test("the first row fixes a symbolic dimension; a later row of another length names both", () => {
  assertEquals(read(spec("I64", "seq", 2), [[1, 2, 3, 4, 5, 6]]).shape, [1, 3, 2]);
  assertThrows(
    () => read(spec("I64", "seq"), [[1, 2, 3], [1, 2]]),
    TypeError,
    'inputs[1] has 2 values, expected 3 as in inputs[0] (input "v": I64 [batch, seq])',
  );
  assertThrows(() => read(spec("F32", 4), [[1, 2, 3]]), TypeError, "has 3 values, expected 4");
});

Deno.test("ragged rows and sub-arrays that are not arrays fail naming the sub-array", () => {
  assertThrows(
    () => read(spec("F32", 2, 2), [[[1, 2], [3]]]),
    TypeError,
    "inputs[0][1] has 1 values, expected 2 (the rows are ragged",
  );
  assertThrows(() => read(spec("F32", 2, 2), [[[1, 2], 3]]), TypeError, "inputs[0][1] is not");
});

Deno.test("values the dtype cannot take are TypeErrors; numbers it cannot hold are RangeErrors", () => {
  const cases: [InputSpec, unknown, ErrorConstructor, string][] = [
    [spec("F32", 2), [1, "a"], TypeError, 'inputs[0][1] is "a", not a number'],
    [spec("F32", 2), [1, 1e999], RangeError, "inputs[0][1] is Infinity, expected a finite"],
    [spec("I64", 2), [1, 1.5], TypeError, "inputs[0][1] is 1.5, expected an integer"],
    [spec("U8", 2), [1, 300], RangeError, 'inputs[0][1] is 300, out of range for input "v": U8'],
    [spec("I32", 1), [2 ** 31], RangeError, "is 2147483648, out of range"],
    [spec("BOOL", 2), [1, 2], RangeError, "inputs[0][1] is 2, out of range"],
    [spec("U64", 1), [-1], RangeError, "is -1, out of range"],
  ];
  for (const [s, row, type, message] of cases) {
    assertThrows(() => read(s, [row]), type, message);
  }
  assertEquals([...read(spec("BOOL", 3), [[true, false, 1]]).data], [1, 0, 1]);
  assertEquals([...read(spec("I64", 2), [[-3, 2 ** 40]]).data], [-3n, 2n ** 40n]);
});

Deno.test("a column grows past the rows it was made for and returns exactly the rows read", () => {
  const c = new InputColumn(spec("I32", 2), { rows: 1 });
  for (let i = 0; i < 5; i++) c.add(i, `row ${i}`, [i, -i]);
  const t = c.tensor(5);
  assertEquals(t.shape, [5, 2]);
  assertEquals([...t.data], [0, -0, 1, -1, 2, -2, 3, -3, 4, -4]);
});

Deno.test("rows are written into the arrays `alloc` makes", () => {
  const slab = new Float32Array(16);
  const c = new InputColumn(spec("F32", 3), { rows: 2, alloc: (_, n) => slab.subarray(4, 4 + n) });
  c.add(0, "a", [1, 2, 3]);
  c.add(1, "b", [4, 5, 6]);
  assertEquals(c.tensor(2).data.buffer, slab.buffer);
  assertEquals([...slab], [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0]);
});

Deno.test("half-precision inputs are refused: JSON numbers do not convert to their bits", () => {
  assertThrows(() => new InputColumn(spec("F16", 4)), TypeError, "half-precision graph inputs");
});

Deno.test("sameSymbols() names both inputs when a shared dimension differs, and passes otherwise", () => {
  const two = (a: number[], b: number[]) => {
    const ids = new InputColumn({ name: "ids", dtype: "I64", shape: ["batch", "seq"] });
    const mask = new InputColumn({ name: "mask", dtype: "I64", shape: ["batch", "seq"] });
    ids.add(0, "row 1, inputs.ids", a);
    mask.add(0, "row 1, inputs.mask", b);
    sameSymbols([ids, mask]);
  };
  two([1, 2], [1, 1]);
  assertThrows(
    () => two([1, 2, 3], [1, 1]),
    TypeError,
    "row 1, inputs.mask has seq = 2 (shape [2]), but row 1, inputs.ids has seq = 3",
  );
});
