/**
 * `ffwd inspect` of a safetensors file: its tensors from the header, its metadata, and the
 * feedforward blocks detection recognises in the tensor names (with `config.json` beside the file
 * naming the activation). Finding no block is a result, not an error; a detection that fails (an
 * unreadable config, an activation ffwd does not build) is reported beside the tensors, which are
 * still shown.
 *
 * @module
 */

import type { DetectedBlock } from "../src/models/blocks/detect.ts";
import {
  detectSafetensorsBlocks,
  type FileDetection,
} from "../src/models/blocks/safetensors_model.ts";
import { inspectSafetensors, type SafetensorsSummary } from "../src/io/safetensors.ts";
import { count, dims, indent, keyValues, plural, printable, table } from "./_inspect_text.ts";

/** What detection said about a file: its result, or why it could not run. */
type Blocks = { ok: true; found: FileDetection } | { ok: false; error: string };

/**
 * The JSON form and the table of a safetensors file.
 *
 * @example
 * ```ts ignore
 * import { describeSafetensors } from "./_inspect_safetensors.ts";
 * const { json } = await describeSafetensors("fixtures/hf/llama_3layers/model.safetensors");
 * ```
 */
export async function describeSafetensors(
  path: string,
): Promise<{ json: unknown; table: string }> {
  const summary = await inspectSafetensors(path);
  const blocks = await detect(path);
  const { format, tensors, metadata, parameters } = summary;
  const detected = blocks.ok
    ? {
      blocks: blocks.found.blocks,
      config: blocks.found.config,
      ...(blocks.found.modelType !== undefined ? { modelType: blocks.found.modelType } : {}),
    }
    : { blocks: [], blocksError: blocks.error };
  return {
    json: { format, tensors, metadata, parameters, ...detected },
    table: [...tensorLines(path, summary), ...blockLines(blocks)].join("\n") + "\n",
  };
}

async function detect(path: string): Promise<Blocks> {
  try {
    return { ok: true, found: await detectSafetensorsBlocks(path) };
  } catch (error) {
    // The header was read already, so this is about config.json or the names, not the file.
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

function tensorLines(path: string, s: SafetensorsSummary): string[] {
  const rows = s.tensors.map((t) => [printable(t.name), t.dtype, dims(t.shape), count(t.bytes)]);
  const lines = [
    `${path}: safetensors, ${plural(s.tensors.length, "tensor")}, ${count(s.fileSize)} bytes`,
    "",
    ...table(["name", "dtype", "shape", "bytes"], rows, [false, false, false, true]),
    "",
    `parameters: ${count(s.parameters)}`,
  ];
  const meta = Object.entries(s.metadata);
  if (meta.length === 0) lines.push("metadata: none");
  else lines.push("metadata:", ...keyValues(meta));
  return lines;
}

function blockLines(blocks: Blocks): string[] {
  if (!blocks.ok) return [`blocks: not detected: ${blocks.error}`];
  const { blocks: found, config, modelType } = blocks.found;
  // Detection without a given config reads only `config.json` beside the file.
  const source = config === null
    ? "no config.json beside the file"
    : `config.json beside the file${modelType !== undefined ? `, model_type ${modelType}` : ""}`;
  if (found.length === 0) {
    return [
      `blocks: none detected (${source}); no feedforward layout matches the tensor names, ` +
      "so using this file needs a block spec",
    ];
  }
  const rows = found.map((b) => [
    b.name === "" ? "(root)" : printable(b.name),
    b.layout,
    `${b.activation} (${b.activationFrom})`,
    b.layers.map((l) => printable(relative(b, l))).join(", "),
  ]);
  return [
    `blocks: ${plural(found.length, "feedforward block")} (${source})`,
    ...indent(
      table(["name", "layout", "activation", "layers"], rows, [false, false, false, false]),
    ),
  ];
}

/** A layer's path inside its block (`gate_proj` for `model.layers.0.mlp.gate_proj`). */
function relative(block: DetectedBlock, layer: string): string {
  return block.name !== "" && layer.startsWith(`${block.name}.`)
    ? layer.slice(block.name.length + 1)
    : layer;
}
