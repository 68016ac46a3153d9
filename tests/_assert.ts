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
    if (ErrorClass && !(e instanceof ErrorClass)) {
      throw new Error(
        `Expected ${ErrorClass.name}, got ${(e as Error)?.constructor?.name}: ${
          (e as Error)?.message
        }`,
      );
    }
    if (includes && !String((e as Error)?.message).includes(includes)) {
      throw new Error(
        `Expected the message to include ${JSON.stringify(includes)}, got: ${
          (e as Error)?.message
        }`,
      );
    }
    return e as Error;
  }
  throw new Error("Expected the function to reject");
}
