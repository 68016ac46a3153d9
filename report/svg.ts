/**
 * Inline SVG line charts for the run report: nice ticks, gridlines, a log or linear y axis,
 * series as polylines, markers with tooltips, and hover bands whose `<title>` tells the values
 * under the pointer (no script: the browser shows `<title>` as a tooltip).
 *
 * Every element is closed and every attribute quoted, so a chart is well-formed XML as well as
 * HTML. Coordinates are rounded to 0.1 px; non-finite points (and non-positive ones on a log
 * axis) are dropped, so no `NaN` reaches an attribute.
 *
 * @module
 */

import { esc, formatPercent, formatValue, tickFormat } from "./_format.ts";
import { extent, logTicks, niceTicks, scale, type ScaleKind, type Ticks } from "./_scale.ts";

/** An `[x, y]` data point. */
export type Point = readonly [x: number, y: number];

/** One line (and/or set of markers) of a chart. */
export interface ChartSeries {
  /** Written as `data-series` on the polyline and the markers' group. */
  readonly id: string;
  readonly points: readonly Point[];
  /** A CSS colour. */
  readonly color: string;
  /** Stroke width in px. Default 2. */
  readonly width?: number;
  readonly opacity?: number;
  /** `stroke-dasharray`, e.g. `"5 4"`. */
  readonly dash?: string;
  /** Draw the line. Default `true`. */
  readonly line?: boolean;
  /** Draw a circle at each point, with `pointTitle(i)` as its tooltip. Default `false`. */
  readonly markers?: boolean;
  readonly pointTitle?: (i: number) => string;
}

/** Tooltips over the plot: `xs` (finite, increasing) are grouped into bands a few px wide or more. */
export interface HoverBands {
  readonly xs: readonly number[];
  /** The tooltip of the band holding `xs[from]` to `xs[to]` (inclusive). */
  title(from: number, to: number): string;
}

/** Options of {@linkcode lineChart}. */
export interface LineChartOptions {
  /** The chart's accessible name (`aria-label`). */
  readonly label: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** viewBox size; the chart scales to its container's width. Default 640 × 280. */
  readonly width?: number;
  readonly height?: number;
  /** Default `linear`. */
  readonly yScale?: ScaleKind;
  /** Integer x ticks (steps, epochs). */
  readonly xInteger?: boolean;
  /** Data units added to both ends of the x domain (room for markers at the ends). */
  readonly xPad?: number;
  /** y tick labels as percentages of fractions. */
  readonly yPercent?: boolean;
  /** A value the y domain must include (0 for a learning rate). */
  readonly yInclude?: number;
  readonly hover?: HoverBands;
  /** Above this many points a line keeps each bucket's min and max. Default 4000. */
  readonly maxPoints?: number;
}

const MARGIN = { top: 30, right: 18, bottom: 38 };
const CHAR_PX = 7; // tick labels are 12px system-ui: about 7px per character

/**
 * An SVG line chart of `series`.
 *
 * @example
 * ```ts
 * import { lineChart } from "./svg.ts";
 * import { ok } from "node:assert/strict";
 * const svg = lineChart(
 *   [{ id: "loss", points: [[1, 2.3], [2, 1.1], [3, 0.7]], color: "#0072B2" }],
 *   { label: "Loss per step", xLabel: "step", yLabel: "loss", xInteger: true },
 * );
 * ok(svg.startsWith("<svg"));
 * ```
 */
export function lineChart(
  series: readonly ChartSeries[],
  options: LineChartOptions,
): string {
  const kind = options.yScale ?? "linear";
  const drawable = ([x, y]: Point) =>
    Number.isFinite(x) && Number.isFinite(y) && (kind === "linear" || y > 0);
  // `index` is the point's place in the caller's series, for its tooltip
  const shown = series.map((s) => {
    const index: number[] = [];
    for (let i = 0; i < s.points.length; i++) if (drawable(s.points[i]!)) index.push(i);
    const points = index.length === s.points.length ? s.points : index.map((i) => s.points[i]!);
    return { ...s, index, points };
  });
  const W = options.width ?? 640, H = options.height ?? 280;
  const all = shown.flatMap((s) => s.points.length ? [extent2(s.points)] : []);
  const xs = all.flatMap((e) => e[0]), ys = all.flatMap((e) => e[1]);
  if (options.yInclude !== undefined) ys.push(options.yInclude);
  const yt = yTicks(ys, kind, Math.max(3, Math.round(H / 60)));
  const yFmt = options.yPercent
    ? (v: number) => formatPercent(v, yt.step)
    : kind === "log"
    ? formatValue
    : tickFormat(yt.step, Math.max(...yt.major.map(Math.abs)));
  const left = 14 + CHAR_PX * Math.max(...yt.major.map((v) => yFmt(v).length));
  const plot = { x0: left, x1: W - MARGIN.right, y0: H - MARGIN.bottom, y1: MARGIN.top };
  const pad = options.xPad ?? 0;
  let [xMin, xMax] = xs.length ? extent(xs) : [0, 1];
  [xMin, xMax] = [xMin - pad, xMax + pad];
  if (xMin === xMax) [xMin, xMax] = [xMin - 1, xMax + 1];
  // integer axes short enough get every integer (epochs); others a tick per ~110 px
  const every = options.xInteger && xMax - xMin <= (plot.x1 - plot.x0) / 30;
  const xt = niceTicks(xMin, xMax, {
    count: every ? Math.ceil(xMax - xMin) : Math.max(3, Math.round((plot.x1 - plot.x0) / 110)),
    integer: options.xInteger,
  });
  const px = scale("linear", [xMin, xMax], [plot.x0, plot.x1]);
  const py = scale(kind, yt.domain, [plot.y0, plot.y1]);
  const xFmt = tickFormat(xt.step, Math.max(Math.abs(xMin), Math.abs(xMax)));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${
      esc(options.label)
    }">`,
    ...yt.minor.map((v) => hLine("grid minor", py(v), plot)),
    ...yt.major.map((v) =>
      `<g class="tick y" data-value="${v}">${hLine("grid", py(v), plot)}<text x="${
        r(plot.x0 - 8)
      }" y="${r(py(v))}" dy="0.32em" text-anchor="end">${esc(yFmt(v))}</text></g>`
    ),
    ...xt.major.filter((v) => v >= xMin - 1e-9 && v <= xMax + 1e-9).map((v) =>
      `<g class="tick x" data-value="${v}"><line class="grid x" x1="${r(px(v))}" x2="${
        r(px(v))
      }" y1="${plot.y1}" y2="${plot.y0}"></line><text x="${r(px(v))}" y="${
        plot.y0 + 18
      }" text-anchor="middle">${esc(xFmt(v))}</text></g>`
    ),
    hLine("axis", plot.y0, plot),
    `<text class="axis-label" x="${r(plot.x0)}" y="16" text-anchor="middle">\u2191 ${
      esc(options.yLabel)
    }</text>`,
    `<text class="axis-label" x="${plot.x1}" y="${H - 4}" text-anchor="end">${
      esc(options.xLabel)
    } \u2192</text>`,
  ];
  if (all.length === 0) {
    parts.push(
      `<text class="empty" x="${r((plot.x0 + plot.x1) / 2)}" y="${
        r((plot.y0 + plot.y1) / 2)
      }" text-anchor="middle">no finite values</text>`,
    );
  }
  for (const s of shown) {
    if (s.line === false || s.points.length === 0) continue;
    const pts = decimate(s.points, options.maxPoints ?? 4000);
    parts.push(
      `<polyline data-series="${esc(s.id)}" points="${
        pts.map(([x, y]) => `${r(px(x))},${r(py(y))}`).join(" ")
      }" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 2}"${
        s.opacity === undefined ? "" : ` stroke-opacity="${s.opacity}"`
      }${
        s.dash ? ` stroke-dasharray="${s.dash}"` : ""
      } stroke-linejoin="round" stroke-linecap="round"></polyline>`,
    );
  }
  if (options.hover) {
    const xs = options.hover.xs;
    const bad = xs.findIndex((x, i) => !Number.isFinite(x) || (i > 0 && x < xs[i - 1]!));
    if (bad >= 0) {
      throw new RangeError(
        `Cannot draw the hover bands of "${options.label}": xs[${bad}] is ${
          xs[bad]
        }, expected finite values in increasing order`,
      );
    }
    parts.push(hoverBands(options.hover, px, plot));
  }
  for (const s of shown) {
    if (!s.markers || s.points.length === 0) continue;
    parts.push(`<g class="markers" data-series="${esc(s.id)}">`);
    s.points.forEach(([x, y], i) => {
      const title = s.pointTitle ? `<title>${esc(s.pointTitle(s.index[i]!))}</title>` : "";
      parts.push(
        `<circle cx="${r(px(x))}" cy="${r(py(y))}" r="4.5" fill="${s.color}">${title}</circle>`,
      );
    });
    parts.push(`</g>`);
  }
  parts.push(`</svg>`);
  return parts.join("\n");
}

function yTicks(ys: readonly number[], kind: ScaleKind, count: number): Ticks {
  if (ys.length === 0) return niceTicks(0, 1, { count });
  const [min, max] = extent(ys);
  return kind === "log" ? logTicks(min, max) : niceTicks(min, max, { count });
}

/** The x and y extents of points. */
function extent2(points: readonly Point[]): [[number, number], [number, number]] {
  return [extent(points.map((p) => p[0])), extent(points.map((p) => p[1]))];
}

type Plot = { x0: number; x1: number; y0: number; y1: number };

function hLine(cls: string, y: number, plot: Plot): string {
  return `<line class="${cls}" x1="${r(plot.x0)}" x2="${r(plot.x1)}" y1="${r(y)}" y2="${
    r(y)
  }"></line>`;
}

/** Transparent full-height rects, one per group of nearby xs, each with its tooltip. */
function hoverBands(hover: HoverBands, px: (v: number) => number, plot: Plot): string {
  const xs = hover.xs;
  if (xs.length === 0) return "";
  const minWidth = Math.max(2, (plot.x1 - plot.x0) / 160);
  const groups: [number, number][] = [];
  for (let i = 0; i < xs.length;) {
    let j = i;
    while (j + 1 < xs.length && px(xs[j + 1]!) - px(xs[i]!) < minWidth) j++;
    groups.push([i, j]);
    i = j + 1;
  }
  const edge = (g: number) =>
    g === 0
      ? plot.x0
      : g === groups.length
      ? plot.x1
      : (px(xs[groups[g - 1]![1]]!) + px(xs[groups[g]![0]]!)) / 2;
  const rects = groups.map(([from, to], g) => {
    const x = Math.max(plot.x0, edge(g)), w = Math.max(0, Math.min(plot.x1, edge(g + 1)) - x);
    return `<rect x="${r(x)}" y="${plot.y1}" width="${r(w)}" height="${plot.y0 - plot.y1}"><title>${
      esc(hover.title(from, to))
    }</title></rect>`;
  });
  return `<g class="hover" fill="transparent">\n${rects.join("\n")}\n</g>`;
}

/** At most `max` points: above that, each bucket keeps its lowest and highest point, in order. */
function decimate(points: readonly Point[], max: number): readonly Point[] {
  if (points.length <= max) return points;
  const buckets = Math.max(1, Math.floor(max / 2));
  const out: Point[] = [];
  for (let b = 0; b < buckets; b++) {
    const from = Math.floor((b * points.length) / buckets);
    const to = Math.floor(((b + 1) * points.length) / buckets);
    let lo = from, hi = from;
    for (let i = from; i < to; i++) {
      if (points[i]![1] < points[lo]![1]) lo = i;
      if (points[i]![1] > points[hi]![1]) hi = i;
    }
    for (const i of lo === hi ? [lo] : [Math.min(lo, hi), Math.max(lo, hi)]) out.push(points[i]!);
  }
  return out;
}

/** A coordinate rounded to 0.1 px. */
function r(v: number): number {
  return Math.round(v * 10) / 10;
}
