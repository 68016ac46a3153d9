/**
 * The report's chart cards (imported only by siblings): training loss per step, eval loss and
 * accuracy per epoch, and learning rate, gradient norm and throughput per step.
 *
 * @module
 */

import { esc, formatValue, percent } from "./_format.ts";
import { chooseScale, extent, type ScaleKind, type ScaleMode } from "./_scale.ts";
import { COLORS } from "./_style.ts";
import type { EvalMetrics, Run, StepMetrics } from "./run.ts";
import { type ChartSeries, lineChart, type Point } from "./svg.ts";

/** Chart sizes matching the rendered width of a full-width, half and third card (px). */
export const SIZES = {
  full: { width: 1150, height: 340 },
  /** The copy of a full or half chart shown on narrow screens, so its text stays legible. */
  compact: { width: 440, height: 280 },
  half: { width: 546, height: 270 },
  third: { width: 344, height: 230 },
} as const;

type Size = Exclude<keyof typeof SIZES, "compact">;
type Dims = { readonly width: number; readonly height: number };

/**
 * A chart drawn at a card's size. Full and half charts also get a compact copy that CSS shows
 * instead on phones: a viewBox scales its text with it, and 1150 px shrunk to 350 is unreadable.
 */
function sized(size: Size, draw: (dims: Dims) => string): string {
  if (size === "third") return draw(SIZES[size]);
  return `<div class="chart-full">${draw(SIZES[size])}</div>\n<div class="chart-compact">${
    draw(SIZES.compact)
  }</div>`;
}

/** Options shared by the chart cards. */
export interface ChartCardOptions {
  readonly scale: ScaleMode;
  readonly maxPoints?: number;
}

/** A legend entry: a line, a faint line, a dashed line or a dot. */
type Key = { label: string; color: string; style?: "faint" | "dash" | "dot" };

/** A card with a heading, a note under it, a legend and a body. */
export function card(title: string, meta: string, keys: readonly Key[], body: string): string {
  const legend = keys.length
    ? `<ul class="legend">${
      keys.map((k) =>
        `<li><span class="swatch${k.style ? ` ${k.style}` : ""}" style="${
          k.style === "dot" ? "background" : "border-color"
        }:${k.color}"></span>${esc(k.label)}</li>`
      ).join("")
    }</ul>`
    : "";
  return `<section class="card"><div class="card-head"><div><h2>${esc(title)}</h2>${
    meta ? `<p class="meta">${esc(meta)}</p>` : ""
  }</div>${legend}</div>\n${body}\n</section>`;
}

/** The exponential moving average's span: about a thirtieth of the run, 1 to 200 steps. */
export function smoothingWindow(n: number): number {
  return Math.min(200, Math.max(1, Math.round(n / 30)));
}

/**
 * A debiased exponential moving average (TensorBoard's smoothing) with weight 1 − 2/(w + 1);
 * on a log axis it averages log values, so a loss falling by decades is not dragged upwards.
 */
export function ema(values: readonly number[], window: number, log: boolean): number[] {
  const beta = 1 - 2 / (window + 1);
  let acc = 0, weight = 0;
  return values.map((v) => {
    acc = beta * acc + (1 - beta) * (log ? Math.log(v) : v);
    weight = beta * weight + (1 - beta);
    const mean = acc / weight;
    return log ? Math.exp(mean) : mean;
  });
}

/** The training loss per step: raw, smoothed, and the eval losses as markers at their steps. */
export function lossCard(run: Run, options: ChartCardOptions): string {
  const steps = run.metrics.steps.filter((s) => Number.isFinite(s.loss));
  const evals = run.metrics.evals.filter((e) => Number.isFinite(e.loss));
  if (steps.length === 0) {
    return card("Training loss", "", [], `<p class="empty-card">No finite training loss yet.</p>`);
  }
  const kind = chooseScale([...steps, ...evals].map((s) => s.loss), options.scale);
  const w = smoothingWindow(steps.length);
  const smooth = ema(steps.map((s) => s.loss), w, kind === "log");
  const series: ChartSeries[] = [{
    id: "loss-raw",
    points: steps.map((s) => [s.step, s.loss]),
    color: COLORS.loss,
    width: 1.25,
    opacity: w > 1 ? 0.35 : 1,
  }];
  const keys: Key[] = [{
    label: w > 1 ? "loss (raw)" : "loss",
    color: COLORS.loss,
    style: "faint",
  }];
  if (w > 1) {
    series.push({
      id: "loss-smooth",
      points: steps.map((s, i) => [s.step, smooth[i]!]),
      color: COLORS.loss,
      width: 2.25,
    });
    keys.push({ label: `smoothed (EMA over \u2248${w} steps)`, color: COLORS.loss });
  }
  if (evals.length) {
    series.push({
      id: "eval-loss-markers",
      points: evals.map((e) => [e.step, e.loss]),
      color: COLORS.eval,
      line: false,
      markers: true,
      pointTitle: (i) => evalTitle(evals[i]!),
    });
    keys.push({ label: "eval loss", color: COLORS.eval, style: "dot" });
  }
  const title = (from: number, to: number) => {
    const [a, b] = [steps[from]!, steps[to]!];
    if (from === to) {
      return `step ${a.step} \u00b7 loss ${formatValue(a.loss)}${
        w > 1 ? ` \u00b7 smoothed ${formatValue(smooth[from]!)}` : ""
      }${Number.isFinite(a.lr) ? ` \u00b7 lr ${formatValue(a.lr)}` : ""}`;
    }
    const [lo, hi] = extent(steps.slice(from, to + 1).map((s) => s.loss));
    return `steps ${a.step}\u2013${b.step} \u00b7 loss ${formatValue(lo)}\u2013${formatValue(hi)}${
      w > 1 ? ` \u00b7 smoothed ${formatValue(smooth[to]!)}` : ""
    }`;
  };
  const svg = sized("full", (dims) =>
    lineChart(series, {
      label: "Training loss per step",
      xLabel: "step",
      yLabel: "loss",
      ...dims,
      yScale: kind,
      xInteger: true,
      hover: { xs: steps.map((s) => s.step), title },
      maxPoints: options.maxPoints,
    }));
  return card("Training loss", scaleNote(kind, steps.map((s) => s.loss)), keys, svg);
}

function scaleNote(kind: ScaleKind, values: readonly number[]): string {
  if (kind === "linear") return "per step, linear scale";
  const [min, max] = extent(values);
  const decades = Math.log10(max / min);
  return `per step, log scale (the loss spans ${decades.toFixed(1)} decades)`;
}

function evalTitle(e: EvalMetrics): string {
  return [
    Number.isFinite(e.epoch) ? `epoch ${e.epoch}` : "",
    `step ${e.step}`,
    Number.isFinite(e.loss) ? `eval loss ${formatValue(e.loss)}` : "",
    Number.isFinite(e.accuracy) ? `accuracy ${percent(e.accuracy)}` : "",
  ].filter(Boolean).join(" \u00b7 ");
}

/** Eval loss (with the mean training loss of each epoch) and accuracy, per epoch. */
export function evalCards(run: Run, options: ChartCardOptions): string[] {
  const evals = run.metrics.evals;
  if (evals.length === 0) {
    const text = "No eval lines in metrics.jsonl: the run had no eval data.";
    return [card("Evaluation", "", [], `<p class="empty-card">${text}</p>`)];
  }
  const epochs = evals.map((e, i) => (Number.isFinite(e.epoch) ? e.epoch : i + 1));
  const trainMean = evals.map((e, i) =>
    meanLoss(run.metrics.steps, evals[i - 1]?.step ?? -Infinity, e.step)
  );
  const title = (i: number) =>
    evalTitle(evals[i]!) +
    (Number.isFinite(trainMean[i]!)
      ? ` \u00b7 train loss (epoch mean) ${formatValue(trainMean[i]!)}`
      : "");
  const hasAcc = evals.some((e) => Number.isFinite(e.accuracy));
  const size: Size = hasAcc ? "half" : "full";
  const ordered = epochs.every((x, i) => i === 0 || x >= epochs[i - 1]!);
  const hover = ordered ? { xs: epochs, title: (from: number) => title(from) } : undefined;
  const common = { xLabel: "epoch", xInteger: true, xPad: 0.35, hover };
  const lossPoints: Point[] = evals.map((e, i) => [epochs[i]!, e.loss]);
  const meanPoints: Point[] = evals.map((_, i) => [epochs[i]!, trainMean[i]!]);
  const kind = chooseScale(
    [...lossPoints, ...meanPoints].map((p) => p[1]).filter(Number.isFinite),
    options.scale,
  );
  const lossSeries: ChartSeries[] = [
    { id: "train-epoch-mean", points: meanPoints, color: COLORS.loss, width: 1.75, dash: "6 4" },
    {
      id: "eval-loss",
      points: lossPoints,
      color: COLORS.eval,
      width: 2.25,
      markers: true,
      pointTitle: title,
    },
  ];
  const cards = [card(
    "Eval loss",
    `per epoch, ${kind} scale`,
    [
      { label: "eval loss", color: COLORS.eval },
      { label: "train loss (epoch mean)", color: COLORS.loss, style: "dash" },
    ],
    sized(size, (dims) =>
      lineChart(lossSeries, {
        ...common,
        ...dims,
        label: "Eval loss per epoch",
        yLabel: "loss",
        yScale: kind,
      })),
  )];
  if (hasAcc) {
    const points: Point[] = evals.map((e, i) => [epochs[i]!, e.accuracy]);
    const series: ChartSeries = {
      id: "eval-accuracy",
      points,
      color: COLORS.accuracy,
      width: 2.25,
      markers: true,
      pointTitle: title,
    };
    const label = "Eval accuracy per epoch";
    cards.push(card(
      "Eval accuracy",
      "per epoch",
      [{ label: "accuracy", color: COLORS.accuracy }],
      sized(
        size,
        (dims) =>
          lineChart([series], { ...common, ...dims, label, yLabel: "accuracy", yPercent: true }),
      ),
    ));
  }
  return cards;
}

/** The mean finite training loss over steps in (after, upTo]. */
function meanLoss(steps: readonly StepMetrics[], after: number, upTo: number): number {
  const v = steps.filter((s) => s.step > after && s.step <= upTo && Number.isFinite(s.loss));
  return v.length ? v.reduce((a, s) => a + s.loss, 0) / v.length : NaN;
}

/** Learning rate, and gradient norm and throughput when the run logged them, per step. */
export function stepCards(run: Run, options: ChartCardOptions): string[] {
  const steps = run.metrics.steps;
  const specs = [
    { key: "lr", id: "lr", title: "Learning rate", y: "lr", color: COLORS.lr, zero: true },
    {
      key: "gradNorm",
      id: "grad-norm",
      title: "Gradient norm",
      y: "norm",
      color: COLORS.gradNorm,
      zero: false,
    },
    {
      key: "samplesPerS",
      id: "samples-per-s",
      title: "Throughput",
      y: "samples/s",
      color: COLORS.throughput,
      zero: true,
    },
  ] as const;
  const present = specs.map((s) => ({
    ...s,
    points: steps.filter((m) => Number.isFinite(m[s.key])).map((m): Point => [m.step, m[s.key]]),
  }))
    .filter((s) => s.key === "lr" || s.points.length > 0);
  const size: Size = present.length === 3 ? "third" : present.length === 2 ? "half" : "full";
  return present.map((s) => {
    if (s.points.length === 0) {
      return card(s.title, "", [], `<p class="empty-card">No finite values.</p>`);
    }
    const title = (from: number, to: number) => {
      const [a, b] = [s.points[from]!, s.points[to]!];
      return from === to
        ? `step ${a[0]} \u00b7 ${s.y} ${formatValue(a[1])}`
        : `steps ${a[0]}\u2013${b[0]} \u00b7 ${s.y} ${formatValue(a[1])} \u2192 ${
          formatValue(b[1])
        }`;
    };
    const series: ChartSeries = { id: s.id, points: s.points, color: s.color, width: 1.75 };
    const svg = sized(size, (dims) =>
      lineChart([series], {
        label: `${s.title} per step`,
        xLabel: "step",
        yLabel: s.y,
        xInteger: true,
        yInclude: s.zero ? 0 : undefined,
        ...dims,
        maxPoints: options.maxPoints,
        hover: { xs: s.points.map((p) => p[0]), title },
      }));
    return card(s.title, "per step", [], svg);
  });
}
