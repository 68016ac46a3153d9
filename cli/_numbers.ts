/**
 * The parsers of every numeric option of `ffwd`. A value that does not parse throws commander's
 * `InvalidArgumentError`; commander then prints one line naming the option and the value
 * (`error: option '--rank <r>' argument 'abc' is invalid. Expected an integer >= 1`) and `ffwd`
 * exits with 2, a usage error (see `_errors.ts`).
 *
 * Numbers are decimal (`8`, `-0.5`, `1e-3`); an integer may be written `1e4`.
 *
 * @module
 */

import { InvalidArgumentError } from "@commander-js/extra-typings";

/** A commander option parser. */
export type Parse<T> = (value: string) => T;

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** Parses a decimal, or returns NaN. */
function decimal(value: string): number {
  const s = value.trim();
  return DECIMAL.test(s) ? Number(s) : NaN;
}

function numberParser(
  expected: string,
  accept: (n: number) => boolean,
  integer = false,
): Parse<number> {
  return (value) => {
    const n = decimal(value);
    if (!(integer ? Number.isSafeInteger(n) : Number.isFinite(n)) || !accept(n)) {
      throw new InvalidArgumentError(`Expected ${expected}`);
    }
    return n + 0; // -0 reads as 0
  };
}

/**
 * An integer of at least 1: a count, a size, a rank.
 *
 * @example
 * ```ts
 * import { strictEqual, throws } from "node:assert/strict";
 * import { positiveInteger } from "./_numbers.ts";
 * strictEqual(positiveInteger("16"), 16);
 * throws(() => positiveInteger("abc"), /Expected an integer >= 1/);
 * ```
 */
export const positiveInteger: Parse<number> = numberParser("an integer >= 1", (n) => n >= 1, true);

/** An integer of at least 0: a seed, a number of warmup steps, a port. */
export const nonNegativeInteger: Parse<number> = numberParser(
  "an integer >= 0",
  (n) => n >= 0,
  true,
);

/** A number above 0. */
export const positiveNumber: Parse<number> = numberParser("a number > 0", (n) => n > 0);

/** A number of at least 0. */
export const nonNegativeNumber: Parse<number> = numberParser("a number >= 0", (n) => n >= 0);

/** A fraction in [0, 1): a drop probability, a share of the data held out. */
export const fraction: Parse<number> = numberParser(
  "a number in [0, 1)",
  (n) => n >= 0 && n < 1,
);

/**
 * A comma-separated list of numbers (any finite ones).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { numbers } from "./_numbers.ts";
 * deepStrictEqual(numbers("0.7, 0.3"), [0.7, 0.3]);
 * ```
 */
export const numbers: Parse<number[]> = listParser(
  "comma-separated numbers",
  numberParser("", Number.isFinite),
);

/** A comma-separated list of integers of at least 1 (layer widths). */
export const positiveIntegers: Parse<number[]> = listParser(
  "comma-separated integers >= 1",
  positiveInteger,
);

function listParser(expected: string, each: Parse<number>): Parse<number[]> {
  return (value) => {
    try {
      return value.split(",").map(each);
    } catch {
      throw new InvalidArgumentError(`Expected ${expected}`);
    }
  };
}

/**
 * A CSV label column: a 0-based index when the value is an integer, else a header name.
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { labelColumn } from "./_numbers.ts";
 * deepStrictEqual([labelColumn("2"), labelColumn("-1"), labelColumn("label")], [2, -1, "label"]);
 * ```
 */
export const labelColumn: Parse<string | number> = (value) =>
  /^-?\d+$/.test(value) ? Number(value) : value;
