/** Throws an `Error` with `message` when `cond` is false (the engine's internal invariant check). */
export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}
