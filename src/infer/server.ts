/**
 * The HTTP inference server, on `Deno.serve`: one {@linkcode InferenceEngine}, adapters loaded
 * lazily from a folder, and concurrent requests micro-batched across adapters (`batcher.ts`).
 *
 * | route | does |
 * | --- | --- |
 * | `POST /v1/predict` | `{"inputs": [row, ...], "adapter": "name" \| null}` → `{"outputs", "adapter", "adapter_version", "adapter_source"}` |
 * | `GET /v1/adapters` | adapters in memory, least recently used first |
 * | `POST /v1/adapters` | `{"name", "path"}`: load (or replace) from a folder inside the adapters folder |
 * | `GET`/`DELETE /v1/adapters/{name}` | show / unload one (it loads lazily from `<dir>/<name>` again) |
 * | `GET /healthz` | liveness, no token needed |
 * | `GET /metrics` | Prometheus text |
 *
 * A row is an array of numbers, flat or nested to the input's row shape (a one-input model), or
 * an object of inputs by graph input name, any dtype and rank: `{"input_ids": [101, 2023, 102],
 * "attention_mask": [1, 1, 1]}`. Rows of one request share their shapes. Each row's output is
 * nested to the output's row shape (`[k]` numbers for a `[rows, k]` output, `[[...32]]` for
 * `[rows, 1, 32]`). A model whose file fixes the batch runs one batch-sized chunk at a time.
 *
 * Errors are `{"error": "..."}`: 400 malformed JSON or a bad field, named with the input, the
 * row and both shapes or dtypes (`inputs[3] has 5 values, expected 8 (input "x": F32 [batch,
 * 8])`, `inputs[1].input_ids has 6 values, expected 7 as in inputs[0].input_ids (input
 * "input_ids": I64 [batch, seq])`), 401 missing or wrong bearer token, 403 an adapter path outside
 * the folder, 404 unknown adapter or route, 405 wrong method, 413 body over the limit, 422 an
 * adapter that does not fit the model, 503 queue full, 500 anything else.
 *
 * Every request resolves its adapter to a snapshot when it starts, so replacing or unloading an
 * adapter never changes a request already in flight. `shutdown()` stops accepting connections,
 * lets requests in flight finish, then resolves.
 *
 * @module
 */

import { Batcher, type BatcherOptions, BusyError } from "./batcher.ts";
import { type AdapterSnapshot, type InferenceEngine, UnknownAdapterError } from "./engine.ts";
import { renderMetrics, type ServerMetrics, serverMetrics } from "./metrics.ts";
import { AdapterDir, type WeightsLoader } from "./_adapter_dir.ts";
import {
  AdapterBody,
  HttpError,
  json,
  PredictBody,
  readJson,
  tokenChecker,
  validate,
} from "./_http.ts";
import { requestFeeds } from "./_request.ts";
import { rowValues } from "./rows.ts";

export type { WeightsLoader };

/** Options of {@linkcode serve}. */
export interface ServeOptions extends BatcherOptions {
  /** Default `127.0.0.1` (loopback only). */
  readonly hostname?: string;
  /** Default 8080; 0 picks a free port (read it from the result). */
  readonly port?: number;
  /** Requires `Authorization: Bearer <token>` on every route but `/healthz`. */
  readonly token?: string;
  /** Largest request body, bytes. Default 16 MiB. */
  readonly maxBodyBytes?: number;
  /**
   * Folder adapters load from: lazily by name (`<dir>/<name>`), or by `POST /v1/adapters` with a
   * path that is absolute or relative to it and resolves inside it. The server installs its loader
   * as `engine.loader`.
   */
  readonly adaptersDir?: string;
  /** Reads an adapter folder into engine weights; required with `adaptersDir`. */
  readonly loadWeights?: WeightsLoader;
  /** Called with every 5xx error (to log it). */
  readonly onError?: (error: unknown, req: Request) => void;
}

/** What {@linkcode serve} resolves to once listening: its address, metrics and shutdown. */
export interface Server {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on (the one picked when `port: 0` was asked). */
  readonly port: number;
  /** `http://host:port`. */
  readonly url: string;
  /** The metrics `/metrics` renders. */
  readonly metrics: ServerMetrics;
  /** Rows of requests waiting for their batch (their adapters are resolved already). */
  readonly queuedRows: number;
  /** Stops accepting connections and resolves once requests in flight have been answered. */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped (after `shutdown()` or an abort). */
  readonly finished: Promise<void>;
}

type Handler = (req: Request, param: string) => Promise<Response> | Response;

/**
 * Starts the server; resolves once it listens. Create the engine with `spin: false` (as
 * `ffwd serve` does) when it runs on more than one thread: onnxruntime's pool threads spinning
 * between runs take the cores the HTTP loop needs.
 *
 * @example
 * ```ts ignore
 * const engine = await InferenceEngine.create(model, { maxAdapters: 16, spin: false });
 * const server = await serve(engine, {
 *   port: 0,
 *   adaptersDir: "runs",
 *   loadWeights: async (dir) => engineWeights(await loadAdapter(dir), model),
 * });
 * const res = await fetch(`${server.url}/v1/predict`, {
 *   method: "POST",
 *   body: JSON.stringify({ inputs: [[0, 1, 2, 3, 4, 5, 6, 7]], adapter: "rot45" }),
 * });
 * await server.shutdown();
 * ```
 */
export async function serve(engine: InferenceEngine, opts: ServeOptions = {}): Promise<Server> {
  const maxBody = opts.maxBodyBytes ?? 16 * 1024 * 1024;
  const metrics = serverMetrics();
  const batcher = new Batcher(engine, {
    ...opts,
    onBatch: (rows, requests) => {
      metrics.batchRows.observe(rows);
      metrics.batchRequests.observe(requests);
      opts.onBatch?.(rows, requests);
    },
  });
  if (opts.adaptersDir && !opts.loadWeights) {
    throw new TypeError("Cannot serve an adapters folder without loadWeights");
  }
  const dir = opts.adaptersDir ? await AdapterDir.open(opts.adaptersDir, opts.loadWeights!) : null;
  if (dir) engine.loader = dir.loader;
  const authorized = opts.token === undefined ? null : await tokenChecker(opts.token);

  /** Where a snapshot came from: relative to the adapters folder when inside it. */
  const sourceOf = (s: AdapterSnapshot): string | null =>
    dir && s.source?.startsWith(dir.root + "/")
      ? s.source.slice(dir.root.length + 1)
      : s.source ?? null;
  const info = (s: AdapterSnapshot) => ({
    name: s.name,
    version: s.version,
    rank: s.rank,
    bytes: s.bytes,
    source: sourceOf(s),
  });

  const routes: Record<string, Partial<Record<string, Handler>>> = {
    "/healthz": {
      GET: () => json({ status: "ok", adapters: engine.adapters.length }),
    },
    "/metrics": {
      GET: () =>
        new Response(
          renderMetrics(metrics, {
            stats: engine.stats,
            adapters: engine.adapters.length,
            bytes: engine.bytes,
          }),
          { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } },
        ),
    },
    "/v1/predict": {
      POST: async (req) => {
        const body = validate(PredictBody, await readJson(req, maxBody));
        // The model's feeds, checked as `engine.feeds` checks them (400s name the row and input)
        const feeds = requestFeeds(body.inputs, engine.inputs);
        const name = body.adapter ?? null;
        const snap = name === null ? null : engine.use(name) ?? (await engine.resolve([name]))[0]!;
        const outputs = rowValues(await batcher.submit(feeds, snap));
        return json({
          outputs,
          adapter: name,
          adapter_version: snap?.version ?? null,
          adapter_source: snap ? sourceOf(snap) : null,
        });
      },
    },
    "/v1/adapters": {
      GET: () => json({ adapters: engine.adapters.map(info) }),
      POST: async (req) => {
        const { name, path } = validate(AdapterBody, await readJson(req, maxBody));
        if (!dir) throw new HttpError(403, "No adapters folder is configured (--adapters-dir)");
        const weights = await dir.load(name, path);
        const snap = await engine.register(name, weights).catch((e) => {
          throw new HttpError(422, (e as Error).message, { cause: e });
        });
        dir.remember(name, path);
        return json(info(snap), 201);
      },
    },
    "/v1/adapters/{name}": {
      GET: (_req, name) => {
        const snap = engine.get(name);
        if (!snap) throw new UnknownAdapterError(name);
        return json(info(snap));
      },
      DELETE: (_req, name) => {
        const loaded = engine.unregister(name);
        const registered = dir?.forget(name) ?? false;
        if (!loaded && !registered) throw new UnknownAdapterError(name);
        return json({ name, unloaded: true });
      },
    },
  };

  const handle = async (req: Request, route: string, param: string): Promise<Response> => {
    if (authorized && route !== "/healthz" && !(await authorized(req))) {
      const challenge = { "www-authenticate": 'Bearer realm="ffwd"' };
      return json({ error: "Missing or wrong bearer token" }, 401, challenge);
    }
    const methods = routes[route];
    if (!methods) throw new HttpError(404, `No route ${req.method} ${new URL(req.url).pathname}`);
    const handler = methods[req.method];
    if (!handler) {
      const allow = Object.keys(methods).join(", ");
      return json({ error: `Method ${req.method} is not allowed on ${route}` }, 405, { allow });
    }
    return await handler(req, param);
  };

  const server = Deno.serve({
    hostname: opts.hostname ?? "127.0.0.1",
    port: opts.port ?? 8080,
    onListen: () => {},
  }, async (req) => {
    const t0 = performance.now();
    const { route, param } = routeOf(req.url);
    let res: Response;
    try {
      res = await handle(req, route, param);
    } catch (e) {
      res = errorResponse(e);
      if (res.status >= 500 && !(e instanceof BusyError)) opts.onError?.(e, req);
    }
    const labels = { route, method: req.method, status: String(res.status) };
    metrics.requests.inc(labels);
    if (res.status >= 400) metrics.errors.inc({ route, status: labels.status });
    metrics.latency.observe((performance.now() - t0) / 1000, { route });
    return res;
  });

  const addr = server.addr;
  let closing: Promise<void> | null = null;
  const finished = server.finished.then(() => batcher.drain());
  return {
    hostname: addr.hostname,
    port: addr.port,
    url: `http://${
      addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname
    }:${addr.port}`,
    metrics,
    get queuedRows() {
      return batcher.queuedRows;
    },
    shutdown: () => closing ??= server.shutdown().then(() => finished),
    finished,
  };
}

const ROUTES = ["/healthz", "/metrics", "/v1/predict", "/v1/adapters"];

/** The route label of a request URL (bounded set, so metrics stay small). */
function routeOf(url: string): { route: string; param: string } {
  // A path that is a route as it stands needs no parsing; any other is normalized first
  // (`/v1/x/../predict`, `%2F`).
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const raw = start < 0 ? "/" : url.slice(start);
  if (ROUTES.includes(raw)) return { route: raw, param: "" };
  const path = new URL(url).pathname;
  const prefix = "/v1/adapters/";
  if (
    path.startsWith(prefix) && path.length > prefix.length && !path.includes("/", prefix.length)
  ) {
    let param: string;
    try {
      param = decodeURIComponent(path.slice(prefix.length));
    } catch {
      param = path.slice(prefix.length);
    }
    return { route: "/v1/adapters/{name}", param };
  }
  return { route: ROUTES.includes(path) ? path : "other", param: "" };
}

function errorResponse(e: unknown): Response {
  if (e instanceof HttpError) return json({ error: e.message }, e.status);
  if (e instanceof UnknownAdapterError) return json({ error: e.message }, 404);
  if (e instanceof BusyError) return json({ error: e.message }, 503, { "retry-after": "1" });
  const message = e instanceof Error ? e.message : String(e);
  return json({ error: `Internal error: ${message}` }, 500);
}
