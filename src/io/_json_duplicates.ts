/**
 * Finds repeated keys in JSON text. `JSON.parse` keeps the last of two equal keys without a word,
 * so a safetensors header naming one tensor twice would silently lose one entry. The reference
 * reader refuses such headers; so does ffwd.
 *
 * @module
 */

/** A key that appears twice in one object, with the keys leading to that object. */
export interface DuplicateKey {
  /** Keys of the enclosing objects from the root (`[]` for the top level). */
  readonly path: readonly string[];
  readonly key: string;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;

/**
 * The first key that appears twice in the same object of `text`, or `undefined`. `text` must be
 * valid JSON (run `JSON.parse` first): this scanner only tracks strings and nesting.
 */
export function findDuplicateKey(text: string): DuplicateKey | undefined {
  // One frame per open container: the keys seen so far (null for arrays) and the key it sits under.
  const keys: (Set<string> | null)[] = [];
  const path: string[] = [];
  let lastKey = "";
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      const top = keys[keys.length - 1];
      if (top) {
        let j = end + 1;
        while (isSpace(text.charCodeAt(j))) j++;
        if (text.charCodeAt(j) === COLON) {
          const raw = text.slice(i + 1, end);
          const key = raw.includes("\\") ? (JSON.parse(`"${raw}"`) as string) : raw;
          if (top.has(key)) return { path: path.slice(1), key };
          top.add(key);
          lastKey = key;
        }
      }
      i = end + 1;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      keys.push(c === 0x7b ? new Set() : null);
      path.push(lastKey);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      keys.pop();
      path.pop();
    }
    i++;
  }
  return undefined;
}

/** Index of the closing quote of the string that opens at `start`. */
function stringEnd(text: string, start: number): number {
  let at = start;
  while (true) {
    at = text.indexOf('"', at + 1);
    if (at < 0) return text.length;
    let slashes = 0;
    while (text.charCodeAt(at - 1 - slashes) === BACKSLASH) slashes++;
    if (slashes % 2 === 0) return at;
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}
