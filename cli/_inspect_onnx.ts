/**
 * `ffwd inspect` of an ONNX file: producer, opsets, op histogram, inputs and outputs,
 * initializers (with their external data location), the linear layers ffwd sees with their
 * weight orientation, grouped by role (attention, ffn, head, other: the rules are in
 * `src/models/onnx/inspect.ts`), the nodes it cannot import, and import notes. `inspect.ts`
 * imports this module only when it meets a `.onnx` file, so other kinds never load the ONNX
 * reader.
 *
 * @module
 */

import { inspectOnnx, LAYER_ROLES, type OnnxSummary } from "../src/models/onnx/inspect.ts";
import { count, dims, indent, names, plural, printable, table } from "./_inspect_text.ts";

/**
 * The JSON form (the {@linkcode OnnxSummary}, `format` first) and the table of an ONNX file.
 *
 * @example
 * ```ts ignore
 * import { describeOnnx } from "./_inspect_onnx.ts";
 * const { table } = await describeOnnx("fixtures/mnist/base.onnx");
 * ```
 */
export async function describeOnnx(path: string): Promise<{ json: unknown; table: string }> {
  const s = await inspectOnnx(path);
  const { format, ...rest } = s;
  return { json: { format, ...rest }, table: onnxTable(path, s).join("\n") + "\n" };
}

function onnxTable(path: string, s: OnnxSummary): string[] {
  const producer = [s.producer.name, s.producer.version].filter((p) => p !== "").join(" ");
  const opsets = s.opsets.map((o) => `${o.domain === "" ? "ai.onnx" : o.domain} ${o.version}`);
  const nodes = Object.values(s.ops).reduce((a, b) => a + b, 0);
  const ops = Object.entries(s.ops).sort(([a, m], [b, n]) => n - m || a.localeCompare(b));
  return [
    `${path}: ONNX, IR version ${s.irVersion}, producer ${producer || "unknown"}, ` +
    `opset ${opsets.join(", ") || "none"}`,
    "",
    `ops: ${plural(nodes, "node")}: ${ops.map(([op, n]) => `${op} ${n}`).join(", ") || "none"}`,
    "inputs:",
    ...indent(table(
      ["name", "dtype", "shape"],
      s.inputs.map((i) => [printable(i.name), i.dtype, dims(i.shape)]),
      [false, false, false],
    )),
    `outputs: ${names(s.outputs)}`,
    "",
    ...initializerLines(s),
    "",
    ...linearLines(s),
    "",
    `frozen context (no gradient crosses it): ${s.frozen.map(printable).join(", ") || "none"}`,
    ...(s.notes.length === 0 ? ["notes: none"] : ["notes:", ...s.notes.map((n) => `  - ${n}`)]),
  ];
}

function initializerLines(s: OnnxSummary): string[] {
  const inits = s.initializers;
  const bytes = inits.reduce((a, i) => a + i.bytes, 0);
  const external = inits.some((i) => i.external);
  const rows = inits.map((i) => [
    printable(i.name),
    i.dtype,
    dims(i.shape),
    count(i.bytes),
    ...(external ? [i.external ? location(i.external) : "(inline)"] : []),
  ]);
  const head = ["name", "dtype", "shape", "bytes", ...(external ? ["location"] : [])];
  return [
    `initializers: ${plural(inits.length, "tensor")}, ${count(bytes)} bytes`,
    ...indent(table(head, rows, [false, false, false, true, false])),
  ];
}

/** `weights.bin @ 1024 +4096` (offset, then length when the model gives one). */
function location(e: { location: string; offset: number; length?: number }): string {
  return `${printable(e.location)} @ ${e.offset}${e.length !== undefined ? ` +${e.length}` : ""}`;
}

/** The layers grouped by role (attention, ffn, head, other), model order within a group. */
function linearLines(s: OnnxSummary): string[] {
  if (s.linearLayers.length === 0) return ["linear layers: none"];
  const groups = LAYER_ROLES.map((role) => ({
    role,
    layers: s.linearLayers.filter((l) => l.role === role),
  })).filter((g) => g.layers.length > 0);
  const rows = groups.flatMap((g) =>
    g.layers.map((l) => [
      printable(l.name),
      String(l.inFeatures),
      String(l.outFeatures),
      l.orientation,
      l.dtype,
      printable(l.weightKey),
      l.biasKey !== undefined ? printable(l.biasKey) : "-",
      printable(l.node),
    ])
  );
  // One table, so the columns line up across groups; each group repeats the header.
  const [head, ...lines] = table(
    ["name", "in", "out", "orientation", "dtype", "weight", "bias", "node"],
    rows,
    [false, true, true, false, false, false, false, false],
  );
  let at = 0;
  return [
    `linear layers: ${s.linearLayers.length} (${
      groups.map((g) => `${g.role} ${g.layers.length}`).join(", ")
    })`,
    ...groups.flatMap((g) => [
      `  ${g.role}:`,
      ...indent(indent([head!, ...lines.slice(at, at += g.layers.length)])),
    ]),
  ];
}
