/**
 * The HTTP load client of the serving benchmarks: `clients` concurrent loops, each sending one
 * request after another over keep-alive connections, until `requests` were sent or `timeLimitMs`
 * passed. It only talks to loopback (127.0.0.1) and is bounded in count and time.
 *
 * Imported only by `bench/serve_http_bench.ts` and `bench/serve_start_bench.ts`.
 *
 * @module
 */

/** What one load run measured. */
export interface LoadResult {
  /** Requests answered. */
  readonly requests: number;
  /** Wall time of the run, seconds. */
  readonly seconds: number;
  /** Requests per second. */
  readonly rps: number;
  /** Median latency, ms. */
  readonly p50: number;
  /** 99th-percentile latency, ms. */
  readonly p99: number;
  /** Answers whose status was not 200. */
  readonly failed: number;
}

/** Options of {@linkcode load}. */
export interface LoadOptions {
  /** Concurrent clients (each one request at a time). */
  readonly clients: number;
  /** Requests in total. */
  readonly requests: number;
  /** The run stops after this long even when requests are left (default 60 s). */
  readonly timeLimitMs?: number;
}

/** Most requests and clients one run may use. */
const MAX_REQUESTS = 100_000;
const MAX_CLIENTS = 256;

/**
 * Sends `POST url` with the bodies `body(i)` (pre-encoded, cycled by the caller) and measures.
 * `url` must be on 127.0.0.1.
 */
export async function load(
  url: string,
  body: (i: number) => Uint8Array<ArrayBuffer>,
  opts: LoadOptions,
): Promise<LoadResult> {
  const target = new URL(url);
  if (target.hostname !== "127.0.0.1") {
    throw new RangeError(`The load client only targets 127.0.0.1, got ${target.hostname}`);
  }
  if (opts.requests > MAX_REQUESTS || opts.clients > MAX_CLIENTS || opts.clients < 1) {
    throw new RangeError(
      `Invalid load: ${opts.requests} requests from ${opts.clients} clients (most ${MAX_REQUESTS} from ${MAX_CLIENTS})`,
    );
  }
  const limit = opts.timeLimitMs ?? 60_000;
  const latencies: number[] = [];
  let sent = 0, failed = 0;
  const headers = { "content-type": "application/json" };
  const t0 = performance.now();
  const client = async () => {
    while (sent < opts.requests && performance.now() - t0 < limit) {
      const i = sent++;
      const start = performance.now();
      const res = await fetch(url, { method: "POST", body: body(i), headers });
      await res.arrayBuffer();
      latencies.push(performance.now() - start);
      if (res.status !== 200) failed++;
    }
  };
  await Promise.all(Array.from({ length: opts.clients }, client));
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return {
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50: pct(0.5),
    p99: pct(0.99),
    failed,
  };
}
