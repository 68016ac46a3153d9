/**
 * `ffwd inspect <file> [--json]`: what a model file holds, read from its header only, so it is
 * instant however large the file.
 *
 * The file's kind decides what is shown; each kind is one entry of {@linkcode KINDS}, chosen by
 * the file's name, with safetensors as the fallback (its errors say what a file is when it is
 * not safetensors: a Git LFS pointer, a PyTorch pickle, ...).
 *
 * `--json` prints, for a safetensors file:
 *
 * ```json
 * {
 *   "format": "safetensors",
 *   "tensors": [{ "name": "fc1.weight", "dtype": "F32", "shape": [512, 784], "bytes": 1605632 }],
 *   "metadata": { "format": "pt" },
 *   "parameters": 401408
 * }
 * ```
 *
 * `tensors` are in file order, `bytes` is each tensor's data size, `metadata` is the
 * `__metadata__` strings (`{}` when there are none) and `parameters` the total number of elements.
 *
 * @module
 */

import { inspectSafetensors, type SafetensorsSummary } from "../src/io/safetensors.ts";
import { writeOut } from "./_errors.ts";
import type { Program } from "./_program.ts";

/** One kind of file `inspect` understands. */
interface FileKind {
  readonly name: string;
  /** Whether this kind handles the file, judged by its name and type. */
  claims(path: string, info: Deno.FileInfo): boolean;
  /** Reads the file and returns its JSON form and its human-readable table. */
  describe(path: string): Promise<{ json: unknown; table: string }>;
}

const safetensors: FileKind = {
  name: "safetensors",
  claims: (path, info) => info.isFile && /\.safetensors$/i.test(path),
  async describe(path) {
    const summary = await inspectSafetensors(path);
    const { format, tensors, metadata, parameters } = summary;
    return {
      json: { format, tensors, metadata, parameters },
      table: safetensorsTable(path, summary),
    };
  },
};

/** The kinds of file `inspect` reads, tried in order. ONNX, TF.js and adapter folders go here. */
const KINDS: readonly FileKind[] = [safetensors];

/** Used when no kind claims a regular file by its name. */
const FALLBACK: FileKind = safetensors;

/**
 * Adds `inspect <file> [--json]` to the program.
 *
 * @example
 * ```ts
 * import { Command } from "@commander-js/extra-typings";
 * import { registerInspect } from "./inspect.ts";
 * const program = new Command().option("--debug");
 * registerInspect(program);
 * ```
 */
export function registerInspect(program: Program): void {
  program
    .command("inspect")
    .description("show the tensors, shapes and metadata of a model file (header only)")
    .argument("<file>", "a .safetensors file")
    .option("--json", "print JSON instead of a table")
    .action(async (file, options) => {
      const { json, table } = await (await kindOf(file)).describe(file);
      writeOut(options.json ? `${prettyJson(json)}\n` : table);
    });
}

async function kindOf(path: string): Promise<FileKind> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot read "${path}": no such file`, { cause: error });
    }
    throw error;
  }
  const kind = KINDS.find((k) => k.claims(path, info));
  if (kind) return kind;
  if (info.isDirectory) {
    throw new TypeError(
      `Cannot inspect "${path}": it is a folder; inspect reads ${
        KINDS.map((k) => k.name).join(", ")
      } files`,
    );
  }
  return FALLBACK;
}

function safetensorsTable(path: string, s: SafetensorsSummary): string {
  const rows = s.tensors.map((t) => [
    printable(t.name),
    t.dtype,
    `[${t.shape.join(", ")}]`,
    t.bytes.toLocaleString("en-US"),
  ]);
  const lines = [
    `${path}: safetensors, ${s.tensors.length} tensor${s.tensors.length === 1 ? "" : "s"}, ${
      s.fileSize.toLocaleString("en-US")
    } bytes`,
    "",
    ...table(["name", "dtype", "shape", "bytes"], rows, [false, false, false, true]),
    "",
    `parameters: ${s.parameters.toLocaleString("en-US")}`,
  ];
  const meta = Object.entries(s.metadata);
  if (meta.length === 0) {
    lines.push("metadata: none");
  } else {
    lines.push("metadata:");
    const width = Math.max(...meta.map(([k]) => printable(k).length));
    for (const [k, v] of meta) lines.push(`  ${printable(k).padEnd(width)}  ${printable(v)}`);
  }
  return lines.join("\n") + "\n";
}

/** Left- or right-aligned columns separated by two spaces. */
function table(head: string[], rows: string[][], right: boolean[]): string[] {
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) =>
    cells.map((cell, c) => right[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))
      .join("  ").trimEnd();
  return [line(head), ...rows.map(line)];
}

/** Shows names with control characters escaped, so one tensor stays on one line. */
function printable(s: string): string {
  // deno-lint-ignore no-control-regex
  return /[\x00-\x1f\x7f]/.test(s) ? JSON.stringify(s) : s;
}

/** Indented JSON with arrays of numbers (shapes) kept on one line. */
function prettyJson(value: unknown): string {
  // Raw newlines only occur between JSON tokens, never inside strings, so this cannot touch names.
  return JSON.stringify(value, null, 2).replace(
    /\[\n\s*(-?[\d.e+-]+(?:,\n\s*-?[\d.e+-]+)*)\n\s*\]/g,
    (_, items: string) => `[${items.split(/,\n\s*/).join(", ")}]`,
  );
}
