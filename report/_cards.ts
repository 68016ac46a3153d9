/**
 * The report's non-chart parts (imported only by siblings): headline numbers, the adapter's
 * configuration, parameter counts, training settings and the confusion matrix.
 *
 * @module
 */

import { loraScale } from "../src/lora/branch.ts";
import { isAllLinear } from "../adapters/targets.ts";
import { card, ema, smoothingWindow } from "./_charts.ts";
import { esc, formatDuration, formatInt, formatValue, median, percent } from "./_format.ts";
import { confusionTable } from "./confusion.ts";
import type { Run } from "./run.ts";

/** One headline number. */
function kpi(label: string, value: string, detail: string): string {
  return `<div class="kpi"><div class="label">${esc(label)}</div><div class="value">${
    esc(value)
  }</div>${detail ? `<div class="detail">${esc(detail)}</div>` : ""}</div>`;
}

/** The row of headline numbers: steps and time, losses, accuracy, throughput, share trained. */
export function kpis(run: Run): string {
  const { steps, evals } = run.metrics;
  const tiles: string[] = [];
  const epochs = evals.length ? evals.at(-1)!.epoch : NaN;
  const seconds = run.summary?.seconds;
  tiles.push(kpi(
    "Steps",
    formatInt(steps.at(-1)?.step ?? 0),
    [
      Number.isFinite(epochs) ? `${epochs} epoch${epochs === 1 ? "" : "s"}` : "",
      seconds === undefined ? "" : `in ${formatDuration(seconds)}`,
    ].filter(Boolean).join(" "),
  ));
  const losses = steps.filter((s) => Number.isFinite(s.loss)).map((s) => s.loss);
  if (losses.length) {
    const smooth = ema(losses, smoothingWindow(losses.length), losses.every((l) => l > 0));
    tiles.push(kpi(
      "Train loss",
      formatValue(losses.at(-1)!),
      `smoothed ${formatValue(smooth.at(-1)!)} \u00b7 first ${formatValue(losses[0]!)}`,
    ));
  }
  const evalLoss = evals.filter((e) => Number.isFinite(e.loss));
  if (evalLoss.length) {
    const best = evalLoss.reduce((a, e) => (e.loss < a.loss ? e : a));
    tiles.push(kpi(
      "Eval loss",
      formatValue(evalLoss.at(-1)!.loss),
      `best ${formatValue(best.loss)} at ${where(best)}`,
    ));
  }
  const acc = evals.filter((e) => Number.isFinite(e.accuracy));
  if (acc.length) {
    const best = acc.reduce((a, e) => (e.accuracy > a.accuracy ? e : a));
    tiles.push(
      kpi(
        "Accuracy",
        percent(acc.at(-1)!.accuracy),
        `best ${percent(best.accuracy)} at ${where(best)}`,
      ),
    );
  }
  const rates = steps.map((s) => s.samplesPerS).filter(Number.isFinite);
  if (rates.length) {
    tiles.push(kpi(
      "Throughput",
      `${formatValue(Number(median(rates).toPrecision(3)))}/s`,
      `median samples/s over ${formatInt(rates.length)} steps`,
    ));
  }
  const s = run.summary;
  if (s?.trainableParams !== undefined && s.baseParams) {
    tiles.push(kpi(
      "Trainable",
      percent(s.trainableParams / s.baseParams, 2),
      `${formatInt(s.trainableParams)} vs ${formatInt(s.baseParams)} base params`,
    ));
  }
  return `<section class="kpis">\n${tiles.join("\n")}\n</section>`;
}

function where(e: { epoch: number; step: number }): string {
  return Number.isFinite(e.epoch) ? `epoch ${e.epoch}` : `step ${e.step}`;
}

/** A definition list of label → HTML value. */
function props(rows: readonly [string, string][]): string {
  return `<dl class="props">${
    rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")
  }</dl>`;
}

function tag(label: string, on: boolean): string {
  return `<span class="tag${on ? " on" : ""}">${esc(label)}${on ? "" : " off"}</span>`;
}

function chips(items: readonly string[]): string {
  return items.map((i) => `<span class="chip">${esc(i)}</span>`).join("");
}

/** The adapter's configuration, from `adapter_config.json`. */
export function adapterCard(run: Run): string {
  const c = run.config;
  if (!c) return card("Adapter", "", [], `<p class="empty-card">No adapter_config.json.</p>`);
  const scale = loraScale(c.loraAlpha, c.r, c.useRslora);
  const formula = c.useRslora
    ? `\u03b1 / \u221ar = ${c.loraAlpha} / \u221a${c.r}`
    : `\u03b1 / r = ${c.loraAlpha} / ${c.r}`;
  const t = c.targetModules;
  const targets = t === null
    ? "the architecture\u2019s default"
    : isAllLinear(t)
    ? `<code>all-linear</code> <span class="meta">(every linear layer but a whole model\u2019s ` +
      `output layer)</span>`
    : typeof t === "string"
    ? `<code>${esc(t)}</code> <span class="meta">(regular expression)</span>`
    : chips(t);
  // The layers a pattern resolved to, when the run recorded them and the targets do not list them.
  const adapted = run.summary?.adaptedLayers;
  const listed = Array.isArray(t) && adapted?.length === t.length &&
    adapted.every((n, i) => n === t[i]);
  const pattern = (p: Readonly<Record<string, number>>) =>
    chips(Object.entries(p).map(([k, v]) => `${k}: ${v}`));
  const rows: [string, string][] = [
    ["method", `${tag("LoRA", true)}${tag("DoRA", c.useDora)}${tag("rsLoRA", c.useRslora)}`],
    ["rank r", esc(c.r)],
    ["alpha \u03b1", esc(formatValue(c.loraAlpha))],
    ["scale", `${esc(formatValue(scale))} <span class="meta">(${esc(formula)})</span>`],
    ["targets", targets],
    ...(adapted?.length && !listed ? [["adapted", chips(adapted)] as [string, string]] : []),
    ["dropout", esc(formatValue(c.loraDropout))],
    ["bias", esc(c.bias)],
    ["init", esc(String(c.initLoraWeights))],
  ];
  if (Object.keys(c.rankPattern).length) rows.push(["rank pattern", pattern(c.rankPattern)]);
  if (Object.keys(c.alphaPattern).length) rows.push(["alpha pattern", pattern(c.alphaPattern)]);
  if (c.fanInFanOut) rows.push(["fan_in_fan_out", "true"]);
  if (c.modulesToSave?.length) rows.push(["also trained", chips(c.modulesToSave)]);
  if (c.baseModelNameOrPath) {
    rows.push(["base model", `<code>${esc(c.baseModelNameOrPath)}</code>`]);
  }
  if (c.taskType) rows.push(["task", esc(c.taskType)]);
  return card("Adapter", "adapter_config.json", [], props(rows));
}

/** Trainable against base parameters, from `summary.json`. */
export function paramsCard(run: Run): string {
  const s = run.summary;
  if (s?.trainableParams === undefined || s.baseParams === undefined) {
    return card(
      "Parameters",
      "",
      [],
      `<p class="empty-card">No parameter counts: summary.json is missing (an unfinished run?) or has no trainable_params and base_params.</p>`,
    );
  }
  const { trainableParams: t, baseParams: b } = s;
  const share = b > 0 ? t / b : NaN;
  const bar = Number.isFinite(share)
    ? `<div class="bar" title="${esc(percent(share, 3))} of the base"><span style="width:${
      Math.min(100, share * 100).toFixed(3)
    }%"></span></div>`
    : "";
  return card(
    "Parameters",
    "summary.json",
    [],
    `${bar}${
      props([
        ["trainable", esc(formatInt(t))],
        ["base (frozen)", esc(formatInt(b))],
        ["trainable / base", Number.isFinite(share) ? esc(percent(share, 3)) : "\u2014"],
        ["total", esc(formatInt(t + b))],
        ...(s.steps === undefined ? [] : [["steps", esc(formatInt(s.steps))] as [string, string]]),
        ...(s.stoppedEarly
          ? [["stopped", "early (eval loss stopped improving)"] as [string, string]]
          : []),
      ])
    }`,
  );
}

/** The training settings of `ffwd_training.json`, as written. */
export function trainingCard(run: Run): string | null {
  const t = run.training;
  if (!t || Object.keys(t).length === 0) return null;
  const show = (v: unknown) =>
    typeof v === "number" ? formatValue(v) : typeof v === "string" ? v : JSON.stringify(v);
  return card(
    "Training",
    "ffwd_training.json",
    [],
    props(Object.entries(t).map(([k, v]) => [k.replaceAll("_", " "), esc(show(v) ?? "")])),
  );
}

/** The confusion matrix, from `confusion.json`, or nothing for runs without one. */
export function confusionCard(run: Run): string | null {
  const c = run.confusion;
  if (!c) return null;
  const at = [
    c.epoch === undefined ? "" : `epoch ${c.epoch}`,
    c.step === undefined ? "" : `step ${c.step}`,
  ].filter(Boolean).join(", ");
  return card(
    "Confusion matrix",
    `rows: true class \u00b7 columns: predicted \u00b7 blue: correct, orange: mistakes, shaded by share of the row${
      at ? ` \u00b7 ${at}` : ""
    }`,
    [],
    confusionTable(c),
  );
}
