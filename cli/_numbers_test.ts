import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { InvalidArgumentError } from "@commander-js/extra-typings";
import {
  fraction,
  labelColumn,
  nonNegativeInteger,
  nonNegativeNumber,
  numbers,
  positiveInteger,
  positiveIntegers,
  positiveNumber,
} from "./_numbers.ts";

Deno.test("the number parsers read decimals, and integers written with an exponent", () => {
  deepStrictEqual(
    [positiveInteger("8"), positiveInteger(" 16 "), positiveInteger("1e4"), positiveInteger("+3")],
    [8, 16, 10000, 3],
  );
  deepStrictEqual([nonNegativeInteger("0"), nonNegativeInteger("-0")], [0, 0]);
  deepStrictEqual([positiveNumber("1e-3"), positiveNumber(".5")], [0.001, 0.5]);
  deepStrictEqual([nonNegativeNumber("0"), fraction("0"), fraction("0.99")], [0, 0, 0.99]);
  deepStrictEqual(numbers("0.7, -0.3"), [0.7, -0.3]);
  deepStrictEqual(positiveIntegers("1024,4096,1024"), [1024, 4096, 1024]);
});

Deno.test("a value out of range or not a number throws commander's InvalidArgumentError", () => {
  const bad: [(v: string) => unknown, string, string][] = [
    [positiveInteger, "abc", "an integer >= 1"],
    [positiveInteger, "0", "an integer >= 1"],
    [positiveInteger, "2.5", "an integer >= 1"],
    [positiveInteger, "", "an integer >= 1"],
    [positiveInteger, "0x10", "an integer >= 1"],
    [nonNegativeInteger, "-1", "an integer >= 0"],
    [positiveNumber, "0", "a number > 0"],
    [positiveNumber, "Infinity", "a number > 0"],
    [nonNegativeNumber, "NaN", "a number >= 0"],
    [fraction, "1", "a number in [0, 1)"],
    [numbers, "1,,2", "comma-separated numbers"],
    [positiveIntegers, "8,x", "comma-separated integers >= 1"],
  ];
  for (const [parse, value, expected] of bad) {
    throws(() => parse(value), (e: unknown) => {
      strictEqual(e instanceof InvalidArgumentError, true, `${value}: ${e}`);
      strictEqual((e as Error).message, `Expected ${expected}`, value);
      return true;
    });
  }
});

Deno.test("a label column is an index when it is an integer, else a header name", () => {
  deepStrictEqual(
    [labelColumn("0"), labelColumn("-1"), labelColumn("label"), labelColumn("1.5")],
    [0, -1, "label", "1.5"],
  );
});
