/**
 * What `ffwd merge` and `ffwd export` share: opening the model and running the export, then
 * printing where the files and the parity report are and the verdict (or the report as JSON).
 * Imported by `merge.ts` and `export.ts` only.
 *
 * @module
 */

import type { Adapter } from "../adapters/adapter.ts";
import { exportAdapter, type ExportOptions } from "../workflows/export.ts";
import { largestError, ParityError, type ParityReport } from "../workflows/parity.ts";
import { openModel } from "../src/models/open.ts";
import { writeOut } from "./_errors.ts";
import { tolerance } from "./_inspect_text.ts";

/** Options both commands take. */
export interface ModelArgs {
  model: string;
  block?: string;
  spec?: string;
  probe?: string;
  json?: true;
}

/**
 * Opens the model, exports, prints, and closes the model. On a failed parity check with
 * `--json`, the report is printed before the error propagates (exit code 1).
 *
 * @example
 * ```ts ignore
 * await runExport(args, adapter, { out: "merged.onnx", format: "onnx" });
 * ```
 */
export async function runExport(
  args: ModelArgs,
  adapter: Adapter,
  opts: Omit<ExportOptions, "probe" | "spec">,
  lines: readonly string[] = [],
): Promise<void> {
  const model = await openModel(args.model, { block: args.block, spec: args.spec });
  try {
    const result = await exportAdapter(model, adapter, {
      ...opts,
      probe: args.probe,
      spec: args.spec,
    });
    if (args.json) {
      writeOut(`${JSON.stringify(result.report, null, 2)}\n`);
      return;
    }
    const [first, ...rest] = result.files.filter((f) => f !== result.reportPath);
    const extra = rest.length
      ? ` (+ ${rest.map((f) => f.slice(f.lastIndexOf("/") + 1)).join(", ")})`
      : "";
    const out = [...lines, `wrote ${first}${extra}`];
    if (result.report) out.push(verdict(result.report), `report: ${result.reportPath}`);
    writeOut(`${out.join("\n")}\n`);
  } catch (e) {
    if (args.json && e instanceof ParityError) writeOut(`${JSON.stringify(e.report, null, 2)}\n`);
    throw e;
  } finally {
    model.close();
  }
}

/** `parity: pass, largest relative error 2.4e-7 (tolerance 1e-5, F32 storage) over 3 checks`. */
function verdict(r: ParityReport): string {
  const pairs = r.outputs.flatMap((o) => o.pairs);
  const worst = largestError(r);
  return `parity: ${r.verdict}, largest relative error ${worst.toExponential(1)} (tolerance ${
    tolerance(r.tolerance.relative)
  }, ${r.storage} storage) over ${pairs.length} comparison${
    pairs.length === 1 ? "" : "s"
  } of ${r.outputs.length} output${
    r.outputs.length === 1 ? "" : "s"
  } on ${r.probe.rows} probe rows`;
}
