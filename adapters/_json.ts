/**
 * JSON helpers of the adapter modules (imported only by siblings).
 *
 * @module
 */

/** A JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | {
  [key: string]: JsonValue;
};

/** Reads a JSON file; errors name it (`NotFound` kept as the class of a missing file). */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot read "${path}": no such file`);
    }
    throw new Error(`Cannot read "${path}": ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot read "${path}": invalid JSON (${(e as Error).message})`);
  }
}

/** The value at `path` inside `json`. */
export function at(json: unknown, path: readonly PropertyKey[]): unknown {
  let v = json;
  for (const k of path) {
    v = v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  }
  return v;
}

/** A value for a message: JSON, or "nothing". */
export function show(v: unknown): string {
  return v === undefined ? "nothing" : JSON.stringify(v);
}

/** A deep copy of a JSON value. */
export function copy<T extends JsonValue | readonly JsonValue[]>(v: T): JsonValue {
  return JSON.parse(JSON.stringify(v));
}

/** Object keys sorted at every level, as Python's `json.dumps(sort_keys=True)`. */
export function sortKeys(v: JsonValue): JsonValue {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v === null || typeof v !== "object") return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k]!)]));
}

/** Whether two JSON values are equal, ignoring key order. */
export function sameJson(a: JsonValue, b: JsonValue): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}
