/**
 * `deno task example:all`: the tutorial's three applications one after another (image, text,
 * speech; see each file), then one overview table of the shifted tasks.
 *
 * @module
 */

import { runImageExample } from "./image.ts";
import { runSpeechExample } from "./speech.ts";
import { runTextExample } from "./text.ts";
import { type ExampleResult, log, pct, printRows } from "./_shared.ts";

/** Runs the three examples, prints their tables and the overview, and returns their results. */
export async function runAll(): Promise<Record<string, ExampleResult>> {
  const results: Record<string, ExampleResult> = {};
  const tasks = {
    image: ["inverted digits", "accuracy", runImageExample],
    text: ["spam or not (SMS)", "accuracy", runTextExample],
    speech: ['wake word "seven", new speakers', "balanced acc.", runSpeechExample],
  } as const;
  for (const [name, [, , run]] of Object.entries(tasks)) {
    results[name] = await run();
    log("");
  }
  log("The tutorial's applications, each on the held-out test set of its shifted task:");
  printRows([
    ["example", "shifted task", "metric", "base", "adapted", "trainable", "train"],
    ...Object.entries(tasks).map(([name, [task, metric]]) => {
      const r = results[name]!;
      return [
        name,
        task,
        metric,
        pct(r.scores.base[0]!),
        pct(r.scores.adapted[0]!),
        r.trainableParameters.toLocaleString("en-US"),
        `${r.trainSeconds.toFixed(1)} s`,
      ];
    }),
  ], 3);
  return results;
}

if (import.meta.main) {
  const results = await runAll();
  if (Object.values(results).some((r) => !r.parity.pass)) Deno.exit(1);
}
