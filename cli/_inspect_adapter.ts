/**
 * `ffwd inspect` of a LoRA adapter folder (PEFT's `adapter_config.json` +
 * `adapter_model.safetensors`, or MLX-LM's `adapters.safetensors`): the configuration in PEFT's
 * terms, each adapted layer's rank, alpha and scale, the tensors as stored and the parameter
 * count, all from {@linkcode inspectAdapter}. `inspect.ts` imports this module only when it meets
 * an adapter folder.
 *
 * @module
 */

import { isAllLinear } from "../adapters/targets.ts";
import { type AdapterSummary, inspectAdapter } from "../workflows/inspect.ts";
import {
  count,
  dims,
  indent,
  keyValues,
  plural,
  printable,
  short,
  table,
} from "./_inspect_text.ts";

/**
 * The JSON form (`format: "adapter"`, then the {@linkcode AdapterSummary}) and the table of an
 * adapter folder.
 *
 * @example
 * ```ts ignore
 * import { describeAdapter } from "./_inspect_adapter.ts";
 * const { table } = await describeAdapter("fixtures/peft/mlp_lora");
 * ```
 */
export async function describeAdapter(dir: string): Promise<{ json: unknown; table: string }> {
  const s = await inspectAdapter(dir);
  return { json: { format: "adapter", ...s }, table: adapterTable(s).join("\n") + "\n" };
}

function adapterTable(s: AdapterSummary): string[] {
  const kind = s.kind === "peft" ? "PEFT" : "MLX-LM";
  return [
    `${s.path}: ${kind} LoRA adapter, ${plural(s.layers.length, "layer")}, ` +
    `${plural(s.tensors.length, "tensor")}`,
    `files: ${s.files.map(printable).join(", ")}`,
    "",
    "config:",
    ...keyValues(configRows(s.config, s.layers.map((l) => l.module))),
    "",
    `layers: ${s.layers.length}`,
    ...indent(table(
      ["module", "rank", "alpha", "scale"],
      s.layers.map((l) => [printable(l.module), String(l.rank), short(l.alpha), short(l.scale)]),
      [false, true, true, true],
    )),
    "",
    `tensors: ${s.tensors.length}`,
    ...indent(table(
      ["name", "dtype", "shape"],
      s.tensors.map((t) => [printable(t.name), t.dtype, dims(t.shape)]),
      [false, false, false],
    )),
    "",
    `parameters: ${count(s.parameters)}`,
  ];
}

function configRows(c: AdapterSummary["config"], modules: readonly string[]): [string, string][] {
  const yes = (b: boolean) => (b ? "yes" : "no");
  const list = (v: readonly (string | number)[] | string | null, none: string) =>
    v === null ? none : typeof v === "string" ? v : v.join(", ") || none;
  const pattern = (p: Readonly<Record<string, number>>) =>
    Object.entries(p).map(([k, v]) => `${k}: ${short(v)}`).join(", ") || "none";
  return [
    ["rank", String(c.rank)],
    ["alpha", short(c.alpha)],
    ["scale", `${short(c.scale)} (${c.rslora ? "alpha / sqrt(rank)" : "alpha / rank"})`],
    ["targets", targets(c.targetModules, modules)],
    ["layers to transform", list(c.layersToTransform, "all")],
    ["DoRA", yes(c.dora)],
    ["rsLoRA", yes(c.rslora)],
    ["dropout", short(c.dropout)],
    ["bias", c.bias],
    ["fan_in_fan_out", yes(c.fanInFanOut)],
    ["rank pattern", pattern(c.rankPattern)],
    ["alpha pattern", pattern(c.alphaPattern)],
    ["modules to save", list(c.modulesToSave, "none")],
    ["base model", c.baseModel ?? "unknown"],
    ["task type", c.taskType ?? "none"],
  ];
}

/** `target_modules`, and the modules a pattern matched (the adapter's layers). */
function targets(t: AdapterSummary["config"]["targetModules"], modules: readonly string[]): string {
  if (t === null) return "none (the architecture's default)";
  const allLinear = isAllLinear(t);
  if (typeof t !== "string" && !allLinear) return t.map(printable).join(", ") || "none";
  const what = allLinear
    ? "all-linear (every linear layer but a whole model's output layer)"
    : `${printable(t as string)} (regular expression)`;
  return `${what}: ${modules.map(printable).join(", ") || "no layer"}`;
}
