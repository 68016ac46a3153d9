/**
 * Text helpers of the report (imported only by siblings): HTML escaping and number formatting
 * for tick labels, tooltips and tables.
 *
 * @module
 */

/** Escapes text for HTML and XML content and attribute values. */
export function esc(text: string | number): string {
  return String(text).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

const ENTITIES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** The fewest decimals (at most 12) that write `x` exactly enough: 0.25 → 2, 200 → 0. */
export function decimalsOf(x: number): number {
  const a = Math.abs(x);
  for (let d = 0; d < 12; d++) {
    const scaled = a * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled)) return d;
  }
  return 12;
}

/** Drops float noise: 0.30000000000000004 → 0.3, and -0 → 0. */
export function clean(x: number): number {
  const v = Number(x.toPrecision(12));
  return v === 0 ? 0 : v;
}

/**
 * The label format of a linear axis whose ticks are `step` apart and reach `maxAbs`: as many
 * decimals as the step needs, exponent form when the step is below 0.001 (`5e-4`, `1e-3`:
 * learning rates), `k`/`M` from ten thousand on (`5k`, `10k`: steps).
 */
export function tickFormat(step: number, maxAbs: number): (v: number) => string {
  if (maxAbs >= 1e4) {
    const [div, unit] = maxAbs >= 1e6 ? [1e6, "M"] : [1e3, "k"];
    const d = decimalsOf(clean(step / div));
    return (v) => v === 0 ? "0" : `${minus(clean(v / div).toFixed(d))}${unit}`;
  }
  if (step < 1e-3) {
    // each tick in its own shortest exponent form, as learning rates are written: 5e-4, 1e-3
    return (v) => {
      if (v === 0) return "0";
      const e = Math.floor(Math.log10(Math.abs(v)) + 1e-9);
      const mantissa = clean(v / 10 ** e);
      return `${minus(mantissa.toFixed(Math.min(3, decimalsOf(mantissa))))}e${e}`;
    };
  }
  const d = decimalsOf(step);
  return (v) => minus(clean(v).toFixed(d));
}

/** A percentage label for a fraction `v` on an axis whose ticks are `step` apart. */
export function formatPercent(v: number, step: number): string {
  return `${minus((v * 100).toFixed(decimalsOf(clean(step * 100))))}%`;
}

/** A value for a tooltip or a table: integers exact, others to 4 significant digits, exponent form for tiny values. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) {
    return minus(v.toExponential(2).replace(/\.?0+e/, "e").replace("e+", "e"));
  }
  const shown = Number.isInteger(v) ? v : Number(v.toPrecision(4));
  return minus(shown.toLocaleString("en-US", { maximumFractionDigits: 20 }));
}

/** An integer with thousands separators: 1234567 → "1,234,567". */
export function formatInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** A fraction as a percentage with `digits` decimals: 0.9731 → "97.3%". */
export function percent(fraction: number, digits = 1): string {
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** A duration: 42.3 → "42.3 s", 133 → "2 min 13 s", 7260 → "2 h 1 min". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Number(seconds.toPrecision(3))} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** The typographic minus sign for negative numbers. */
function minus(text: string): string {
  return text.startsWith("-") ? `\u2212${text.slice(1)}` : text;
}

/** The median of finite values, or NaN when there are none. */
export function median(values: readonly number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}
