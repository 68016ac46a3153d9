/**
 * Recognises files that are clearly not safetensors from their first bytes, so that errors can say
 * what the file is (a Git LFS pointer, a PyTorch pickle, an HTML error page, ...) instead of only
 * that its header length makes no sense.
 *
 * @module
 */

/** Quotes text for an error message. */
const q = (s: string): string => JSON.stringify(s);

const LFS_PREFIX = "version https://git-lfs.github.com/spec/";

/**
 * Names a file that is clearly something other than safetensors, from its first bytes, or returns
 * `undefined`. The result reads as a complete clause after the file's name.
 */
export function identify(prefix: Uint8Array): string | undefined {
  // one char per byte (TextDecoder's "latin1" is really windows-1252, which remaps 0x80-0x9f)
  const head = String.fromCharCode(...prefix.subarray(0, 1024));
  if (head.startsWith(LFS_PREFIX)) {
    const size = /\nsize (\d+)/.exec(head)?.[1];
    return `this is a Git LFS pointer, not tensor data: fetch the real file (git lfs pull)${
      size ? `; the real file is ${size} bytes` : ""
    }`;
  }
  const known: [string, string][] = [
    ["PK\x03\x04", "a zip archive (a PyTorch checkpoint?)"],
    ["\x93NUMPY", "a NumPy .npy file"],
    ["GGUF", "a GGUF file"],
    ["\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model?)"],
    ["\x1f\x8b", "a gzip file"],
  ];
  for (const [magic, what] of known) {
    if (head.startsWith(magic)) return `not a safetensors file: it is ${what}`;
  }
  if (head.charCodeAt(0) === 0x80 && head.charCodeAt(1) >= 2 && head.charCodeAt(1) <= 5) {
    return "not a safetensors file: it is a Python pickle (a PyTorch checkpoint?)";
  }
  const text = head.slice(0, 64);
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    return "not a safetensors file: it is JSON text, not an 8-byte header length and a header";
  }
  if (/^<(!doctype|html|\?xml)/i.test(trimmed)) {
    return "not a safetensors file: it is an HTML or XML page (a failed download?)";
  }
  if (text.length >= 8 && /^[\t\n\r\x20-\x7e]+$/.test(text.slice(0, 8))) {
    return `not a safetensors file: it starts with the text ${
      q(text.replace(/[^\x20-\x7e].*$/s, "").slice(0, 40))
    }`;
  }
  return undefined;
}
