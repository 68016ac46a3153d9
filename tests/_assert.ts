/**
 * The few assertions the tests use (`@std/assert` is on JSR, which this project cannot reach).
 *
 * @module
 */

/** Throws when `cond` is falsy. */
export function assert(cond: unknown, message = "assertion failed"): asserts cond {
  if (!cond) throw new Error(message);
}

/** Deep equality through JSON-like structure (arrays, plain objects, primitives, bigint). */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  const a = show(actual), e = show(expected);
  if (a !== e) {
    throw new Error(
      `${message ? message + ": " : ""}values differ\n  actual:   ${a}\n  expected: ${e}`,
    );
  }
}

function show(v: unknown): string {
  return JSON.stringify(
    v,
    (_, x) => (typeof x === "bigint" ? `${x}n` : x instanceof Map ? [...x] : x),
  );
}

/** Asserts that `fn` rejects (with `ErrorClass`, and a message containing `includes`); returns the error. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  ErrorClass?: abstract new (...args: never[]) => Error,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, ErrorClass, includes);
  }
  throw new Error("Expected the function to reject");
}

/** Asserts that `fn` throws (with `ErrorClass`, and a message containing `includes`); returns the error. */
export function assertThrows(
  fn: () => unknown,
  ErrorClass?: abstract new (...args: never[]) => Error,
  includes?: string,
): Error {
  try {
    fn();
  } catch (e) {
    return checkError(e, ErrorClass, includes);
  }
  throw new Error("Expected the function to throw");
}

function checkError(
  e: unknown,
  ErrorClass?: abstract new (...args: never[]) => Error,
  includes?: string,
): Error {
  if (ErrorClass && !(e instanceof ErrorClass)) {
    throw new Error(
      `Expected ${ErrorClass.name}, got ${(e as Error)?.constructor?.name}: ${
        (e as Error)?.message
      }`,
    );
  }
  if (includes && !String((e as Error)?.message).includes(includes)) {
    throw new Error(
      `Expected the message to include ${JSON.stringify(includes)}, got: ${(e as Error)?.message}`,
    );
  }
  return e as Error;
}

/**
 * Error of `actual` against `expected` relative to the expected tensor's scale:
 * `max|actual − expected| / max|expected|` (exactly 0 when both are all zeros).
 */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new TypeError(`Cannot compare ${actual.length} values with ${expected.length}`);
  }
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  if (Number.isNaN(worst)) return Infinity;
  return worst === 0 ? 0 : worst / scale;
}

/** Whether two float32 arrays hold the same bytes (NaN payloads and signed zeros included). */
export function sameBytes(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}
