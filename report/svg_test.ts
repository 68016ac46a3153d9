import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { Rng } from "../src/rng.ts";
import { tickFormat } from "./_format.ts";
import { chooseScale, logTicks, niceTicks } from "./_scale.ts";
import { findAll, parseXml, textOf, type XmlElement } from "../tests/_xml.ts";
import { type ChartSeries, lineChart, type Point } from "./svg.ts";

/** The polyline of series `id`, as [x, y] pixel pairs. */
function polyline(svg: XmlElement, id: string): number[][] {
  const [line] = findAll(svg, (e) => e.name === "polyline" && e.attrs["data-series"] === id);
  ok(line, `no polyline "${id}"`);
  return line.attrs.points!.split(" ").map((p) => p.split(",").map(Number));
}

/** Tick values and their pixel positions on one axis. */
function ticks(svg: XmlElement, axis: "x" | "y"): { value: number; px: number }[] {
  return findAll(svg, (e) => e.name === "g" && e.attrs.class === `tick ${axis}`).map((g) => {
    const line = g.children.find((c): c is XmlElement =>
      typeof c !== "string" && c.name === "line"
    )!;
    return {
      value: Number(g.attrs["data-value"]),
      px: Number(line.attrs[axis === "x" ? "x1" : "y1"]),
    };
  });
}

/** Every number in every attribute of every element (coordinates, sizes). */
function numbersIn(svg: XmlElement): string[] {
  return findAll(svg, () => true).flatMap((e) =>
    Object.entries(e.attrs).filter(([k]) => !k.startsWith("data-") && k !== "class").map(([, v]) =>
      v
    )
  );
}

function assertIncreasing(values: readonly number[], what: string): void {
  for (let i = 1; i < values.length; i++) {
    ok(values[i]! > values[i - 1]!, `${what} not increasing at ${i}: ${values.join(", ")}`);
  }
}

Deno.test("niceTicks() covers the range with 1, 2, 2.5 or 5 × 10^k steps, for random ranges", () => {
  const rng = new Rng(3);
  for (let n = 0; n < 500; n++) {
    const a = (rng.uniform() - 0.5) * 10 ** (rng.int(12) - 6);
    const b = a + rng.uniform() * 10 ** (rng.int(12) - 6);
    const t = niceTicks(a, b, { count: 2 + rng.int(8) });
    assertIncreasing(t.major, "ticks");
    const tol = 1e-9 * t.step; // ends within a billionth of a step of a tick count as on it
    ok(
      t.major[0]! <= a + tol && t.major.at(-1)! >= b - tol,
      `[${t.major}] does not cover [${a}, ${b}]`,
    );
    const mantissa = t.step / 10 ** Math.floor(Math.log10(t.step) + 1e-9);
    ok([1, 2, 2.5, 5].some((m) => Math.abs(mantissa - m) < 1e-9), `step ${t.step}`);
    deepStrictEqual(t.domain, [t.major[0], t.major.at(-1)]);
  }
});

Deno.test("niceTicks() gives integers on integer axes and widens an empty range", () => {
  const t = niceTicks(1, 7, { count: 10, integer: true });
  ok(t.major.every(Number.isInteger));
  deepStrictEqual(niceTicks(1, 10, { count: 9, integer: true }).major, [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
  ]);
  const flat = niceTicks(0.5, 0.5);
  ok(flat.domain[0] < 0.5 && flat.domain[1] > 0.5);
  throws(() => niceTicks(NaN, 1), RangeError);
});

Deno.test("logTicks() covers the range with increasing labels inside the domain", () => {
  const rng = new Rng(5);
  for (let n = 0; n < 300; n++) {
    const a = 10 ** (rng.uniform() * 12 - 8), b = a * 10 ** (rng.uniform() * 6);
    const t = logTicks(a, b);
    assertIncreasing(t.major, "log ticks");
    ok(t.major.length >= 2, `only ${t.major.length} labels for [${a}, ${b}]`);
    ok(t.domain[0] <= a * (1 + 1e-9) && t.domain[1] >= b * (1 - 1e-9), `domain for [${a}, ${b}]`);
    ok([...t.major, ...t.minor].every((v) => v >= t.domain[0] && v <= t.domain[1]));
  }
  deepStrictEqual(logTicks(0.035, 2.7).major, [0.05, 0.1, 0.2, 0.5, 1, 2]);
});

Deno.test("chooseScale() is log when positive values span a decade, or when asked", () => {
  strictEqual(chooseScale([2.3, 0.1], "auto"), "log");
  strictEqual(chooseScale([2.3, 0.5], "auto"), "linear");
  strictEqual(chooseScale([2.3, 0.5], "log"), "log");
  strictEqual(chooseScale([2.3, 0], "log"), "linear"); // log of 0 cannot be drawn
  strictEqual(chooseScale([2.3, 0.01], "linear"), "linear");
});

Deno.test("tickFormat() writes learning rates in exponent form and large steps with k", () => {
  const lr = tickFormat(2.5e-4, 1e-3);
  deepStrictEqual([0, 2.5e-4, 5e-4, 1e-3].map(lr), ["0", "2.5e-4", "5e-4", "1e-3"]);
  deepStrictEqual([0, 5000, 10000, 15000].map(tickFormat(5000, 15000)), ["0", "5k", "10k", "15k"]);
  deepStrictEqual([0.1, 0.25, -0.5].map(tickFormat(0.05, 0.5)), ["0.10", "0.25", "\u22120.50"]);
});

Deno.test("lineChart() is well-formed XML with one polyline point per finite data point", () => {
  const points: Point[] = Array.from({ length: 50 }, (_, i) => [i + 1, 2 / (i + 1)]);
  points[10] = [11, NaN];
  points[20] = [21, Infinity];
  const series: ChartSeries[] = [{ id: "loss", points, color: "#0072B2" }];
  const svg = parseXml(
    lineChart(series, { label: 'a <b> & "c"', xLabel: "step", yLabel: "loss", xInteger: true }),
  );
  strictEqual(svg.name, "svg");
  strictEqual(svg.attrs.xmlns, "http://www.w3.org/2000/svg");
  strictEqual(svg.attrs["aria-label"], 'a <b> & "c"');
  strictEqual(polyline(svg, "loss").length, 48);
  for (const v of numbersIn(svg)) ok(!/NaN|Infinity/.test(v), `non-finite attribute ${v}`);
});

Deno.test("lineChart() ticks are monotone in value and position, on linear and log axes", () => {
  const points: Point[] = Array.from({ length: 300 }, (_, i) => [i + 1, 2.3 * Math.exp(-i / 50)]);
  for (const yScale of ["linear", "log"] as const) {
    const svg = parseXml(
      lineChart([{ id: "l", points, color: "#000" }], {
        label: "l",
        xLabel: "step",
        yLabel: "loss",
        yScale,
        xInteger: true,
      }),
    );
    const y = ticks(svg, "y"), x = ticks(svg, "x");
    ok(y.length >= 3 && x.length >= 3, `${y.length} y ticks, ${x.length} x ticks`);
    assertIncreasing(y.map((t) => t.value), `${yScale} y values`);
    assertIncreasing(y.map((t) => -t.px), `${yScale} y pixels (upwards)`);
    assertIncreasing(x.map((t) => t.value), "x values");
    assertIncreasing(x.map((t) => t.px), "x pixels");
    // the line stays inside the plot: above the x axis, below the top margin
    const ys = polyline(svg, "l").map((p) => p[1]!);
    const [axis] = findAll(svg, (e) => e.name === "line" && e.attrs.class === "axis");
    ok(Math.max(...ys) <= Number(axis!.attrs.y1) && Math.min(...ys) >= 20, `${yScale} line`);
  }
});

Deno.test("lineChart() on a log axis drops non-positive values instead of drawing NaN", () => {
  const svg = lineChart([{ id: "l", points: [[1, 1], [2, 0], [3, -1], [4, 0.1]], color: "#000" }], {
    label: "l",
    xLabel: "x",
    yLabel: "y",
    yScale: "log",
  });
  strictEqual(polyline(parseXml(svg), "l").length, 2);
  ok(!svg.includes("NaN"));
});

Deno.test("lineChart() keeps long lines to maxPoints with their extremes", () => {
  const rng = new Rng(1);
  const points: Point[] = Array.from({ length: 10_000 }, (_, i) => [i, rng.normal()]);
  points[7777] = [7777, 25];
  const svg = parseXml(
    lineChart([{ id: "l", points, color: "#000" }], {
      label: "l",
      xLabel: "x",
      yLabel: "y",
      maxPoints: 1000,
    }),
  );
  const drawn = polyline(svg, "l");
  ok(drawn.length <= 1000 && drawn.length > 500, `${drawn.length} points`);
  // the spike is the highest point drawn, at the x pixel of step 7777
  const top = drawn.reduce((a, p) => (p[1]! < a[1]! ? p : a));
  const [t0, t1] = ticks(svg, "x");
  const px = t0!.px + ((7777 - t0!.value) * (t1!.px - t0!.px)) / (t1!.value - t0!.value);
  ok(Math.abs(top[0]! - px) < 0.2, `highest point at ${top[0]}, step 7777 is at ${px}`);
  const xs = drawn.map((p) => p[0]!);
  ok(xs.every((x, i) => i === 0 || x >= xs[i - 1]!), "decimated points are out of order");
});

Deno.test("lineChart() markers and hover bands carry their tooltips", () => {
  const svg = parseXml(lineChart([{
    id: "eval",
    points: [[1, 0.5], [2, NaN], [3, 0.3]],
    color: "#D55E00",
    markers: true,
    pointTitle: (i) => `epoch ${i + 1}`,
  }], {
    label: "eval",
    xLabel: "epoch",
    yLabel: "loss",
    hover: { xs: [1, 2, 3], title: (a, b) => `from ${a} to ${b}` },
  }));
  const circles = findAll(svg, (e) => e.name === "circle");
  deepStrictEqual(circles.map(textOf), ["epoch 1", "epoch 3"]); // the NaN point has no marker
  const bands = findAll(svg, (e) => e.name === "rect");
  deepStrictEqual(bands.map(textOf), ["from 0 to 0", "from 1 to 1", "from 2 to 2"]);
  assertIncreasing(bands.map((b) => Number(b.attrs.x)), "band x");
});

Deno.test("lineChart() refuses hover positions that are not finite and increasing", () => {
  const options = { label: "l", xLabel: "x", yLabel: "y" };
  const series = [{ id: "l", points: [[1, 1], [2, 2]] as Point[], color: "#000" }];
  for (const xs of [[1, NaN], [2, 1]]) {
    throws(
      () => lineChart(series, { ...options, hover: { xs, title: () => "" } }),
      (e: Error) => e instanceof RangeError && e.message.includes("xs[1]"),
    );
  }
});

Deno.test("parseXml() rejects what is not well-formed", () => {
  for (
    const bad of [
      "<a><b></a></b>",
      "<a x=1></a>",
      "<a>&nbsp;</a>",
      "<a>1 < 2</a>",
      "<a></a><b></b>",
      '<a x="1" x="2"></a>',
      "<a>",
    ]
  ) {
    throws(() => parseXml(bad), SyntaxError, bad);
  }
  strictEqual(textOf(parseXml("<!DOCTYPE html><a>x &amp; <b>y</b>&#33;</a>")), "x & y!");
});
