/**
 * The server's metrics in the Prometheus text exposition format (version 0.0.4): counters and
 * histograms with labels, rendered on demand, plus the engine's counters and the process's CPU
 * time (`process_cpu_seconds_total`, as Prometheus' client libraries name it) read at scrape time.
 *
 * Spec: https://prometheus.io/docs/instrumenting/exposition_formats/ — `# HELP` / `# TYPE` lines,
 * label values escaped (`\\`, `\"`, `\n`), histograms as cumulative `_bucket{le=...}` series with
 * `+Inf`, `_sum` and `_count`.
 *
 * @module
 */

import process from "node:process";
import type { EngineStats } from "./engine.ts";

/** Labels of one series. */
export type Labels = Readonly<Record<string, string>>;

/** Default latency buckets, seconds. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** Default batch-size buckets, rows or requests. */
export const SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/**
 * A counter with labels.
 *
 * @example
 * ```ts
 * import { Counter } from "./metrics.ts";
 * import { ok } from "node:assert/strict";
 * const c = new Counter("ffwd_http_requests_total", "HTTP requests");
 * c.inc({ route: "/healthz", status: "200" });
 * ok(c.render().includes('ffwd_http_requests_total{route="/healthz",status="200"} 1'));
 * ```
 */
export class Counter {
  #values = new Map<string, number>();

  /**
   * Makes a counter with no series yet.
   *
   * @param name Metric name (`ffwd_http_requests_total`).
   * @param help The `# HELP` text.
   */
  constructor(readonly name: string, readonly help: string) {}

  /** Adds `by` (default 1) to the series with `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    const key = formatLabels(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }

  /** The value of one series (0 when never incremented). */
  value(labels: Labels = {}): number {
    return this.#values.get(formatLabels(labels)) ?? 0;
  }

  /** The metric's exposition lines. */
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [key, v] of this.#values) lines.push(`${this.name}${key} ${v}`);
    return lines.join("\n") + "\n";
  }
}

/**
 * A histogram with labels and fixed bucket bounds.
 *
 * @example
 * ```ts
 * import { Histogram } from "./metrics.ts";
 * import { ok } from "node:assert/strict";
 * const h = new Histogram("ffwd_batch_rows", "Rows per batch", [1, 8, 64]);
 * h.observe(5);
 * ok(h.render().includes('ffwd_batch_rows_bucket{le="8"} 1'));
 * ```
 */
export class Histogram {
  #series = new Map<string, { counts: number[]; sum: number; count: number }>();

  /**
   * Makes a histogram with no series yet.
   *
   * @param name Metric name (`ffwd_batch_rows`).
   * @param help The `# HELP` text.
   * @param bounds Upper bounds of the buckets, ascending (`+Inf` is implied).
   */
  constructor(readonly name: string, readonly help: string, readonly bounds: readonly number[]) {}

  /** Counts `v` in the first bucket whose bound is at least `v`, and adds it to the sum. */
  observe(v: number, labels: Labels = {}): void {
    const key = formatLabels(labels);
    let s = this.#series.get(key);
    if (!s) this.#series.set(key, s = { counts: this.bounds.map(() => 0), sum: 0, count: 0 });
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && v > bounds[i]!) i++;
    if (i < bounds.length) s.counts[i]!++;
    s.sum += v;
    s.count++;
  }

  /** Number of observations of one series. */
  count(labels: Labels = {}): number {
    return this.#series.get(formatLabels(labels))?.count ?? 0;
  }

  /** The metric's exposition lines (cumulative buckets). */
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [key, s] of this.#series) {
      const inner = key.slice(1, -1);
      const le = (b: string) => `{${inner ? inner + "," : ""}le="${b}"}`;
      let acc = 0;
      this.bounds.forEach((b, i) => {
        acc += s.counts[i]!;
        lines.push(`${this.name}_bucket${le(String(b))} ${acc}`);
      });
      lines.push(`${this.name}_bucket${le("+Inf")} ${s.count}`);
      lines.push(`${this.name}_sum${key} ${s.sum}`, `${this.name}_count${key} ${s.count}`);
    }
    return lines.join("\n") + "\n";
  }
}

/** What the server measures. */
export interface ServerMetrics {
  /** HTTP requests by route, method and status. */
  readonly requests: Counter;
  /** HTTP responses with status >= 400, by route and status. */
  readonly errors: Counter;
  /** Seconds from receiving a request to its response, by route. */
  readonly latency: Histogram;
  /** Rows per engine run. */
  readonly batchRows: Histogram;
  /** Requests per engine run. */
  readonly batchRequests: Histogram;
}

/**
 * The server's metrics.
 *
 * @example
 * ```ts
 * import { renderMetrics, serverMetrics } from "./metrics.ts";
 * import { ok } from "node:assert/strict";
 * const m = serverMetrics();
 * m.requests.inc({ route: "/v1/predict", method: "POST", status: "200" });
 * ok(renderMetrics(m).includes("ffwd_http_requests_total"));
 * ```
 */
export function serverMetrics(): ServerMetrics {
  return {
    requests: new Counter("ffwd_http_requests_total", "HTTP requests by route, method and status."),
    errors: new Counter("ffwd_http_errors_total", "HTTP responses with status >= 400, by route."),
    latency: new Histogram(
      "ffwd_http_request_duration_seconds",
      "Time from receiving a request to its response, by route.",
      LATENCY_BUCKETS,
    ),
    batchRows: new Histogram("ffwd_batch_rows", "Rows per engine run.", SIZE_BUCKETS),
    batchRequests: new Histogram("ffwd_batch_requests", "Requests per engine run.", SIZE_BUCKETS),
  };
}

/** Engine figures read at scrape time. */
export interface EngineGauges {
  readonly stats: EngineStats;
  readonly adapters: number;
  readonly bytes: number;
}

/**
 * Renders the server's metrics, the process's CPU seconds (user and system, every thread: the
 * onnxruntime pool's too) and, when given, the engine's counters and gauges.
 *
 * @example
 * ```ts
 * import { renderMetrics, serverMetrics } from "./metrics.ts";
 * import { ok } from "node:assert/strict";
 * const stats = { loads: 3, evictions: 1, runs: 10, rows: 40 };
 * const text = renderMetrics(serverMetrics(), { stats, adapters: 2, bytes: 1024 });
 * ok(text.includes("ffwd_adapter_loads_total 3"));
 * ok(text.includes("# TYPE process_cpu_seconds_total counter"));
 * ```
 */
export function renderMetrics(m: ServerMetrics, engine?: EngineGauges): string {
  let text = [m.requests, m.errors, m.latency, m.batchRows, m.batchRequests]
    .map((x) => x.render()).join("");
  const cpu = process.cpuUsage(); // µs
  text += scalar(
    "process_cpu_seconds_total",
    "counter",
    "Total user and system CPU time spent in seconds.",
    (cpu.user + cpu.system) / 1e6,
  );
  if (engine) {
    const { stats } = engine;
    text += scalar("ffwd_adapter_loads_total", "counter", "Adapter registrations.", stats.loads);
    text += scalar("ffwd_adapter_evictions_total", "counter", "LRU evictions.", stats.evictions);
    text += scalar("ffwd_engine_runs_total", "counter", "Session runs.", stats.runs);
    text += scalar("ffwd_engine_rows_total", "counter", "Rows run.", stats.rows);
    text += scalar("ffwd_adapters_loaded", "gauge", "Adapters in memory.", engine.adapters);
    text += scalar("ffwd_adapter_bytes", "gauge", "Bytes of adapters in memory.", engine.bytes);
  }
  return text;
}

function scalar(name: string, type: string, help: string, v: number): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${v}\n`;
}

function formatLabels(labels: Labels): string {
  let out = "";
  for (const k in labels) {
    const v = labels[k]!;
    const escaped = /[\\"\n]/.test(v) // most values need no escaping: skip the replaces
      ? v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")
      : v;
    out += `${out ? "," : "{"}${k}="${escaped}"`;
  }
  return out ? out + "}" : "";
}
