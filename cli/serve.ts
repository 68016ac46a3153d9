/**
 * `ffwd serve --model <file> --adapters-dir <dir> [...]`: the HTTP inference server
 * (`src/infer/server.ts`) over one base, with adapters loaded lazily from a folder.
 *
 * ```sh
 * deno task ffwd serve --model base.safetensors --adapters-dir runs --port 8080 --max-adapters 32
 * curl -s localhost:8080/v1/predict -d '{"inputs": [[0, 1, 2, 3, 4, 5, 6, 7]], "adapter": "rot45"}'
 * ```
 *
 * It binds to 127.0.0.1 unless `--host` says otherwise, prints one `Listening on http://...` line
 * on stdout, and shuts down cleanly on SIGINT / SIGTERM: no new connections, requests in flight
 * are answered, then the engine is released. The token may come from `FFWD_TOKEN` instead of
 * `--token` (command lines are visible to other users in `ps`).
 *
 * @module
 */

import type { InferenceEngine } from "../src/infer/engine.ts";
import type { Server } from "../src/infer/server.ts";
import type { BaseModel } from "../src/models/model.ts";
import { writeErr, writeOut } from "./_errors.ts";
import { nonNegativeInteger, nonNegativeNumber, positiveInteger } from "./_numbers.ts";
import type { Program } from "./_program.ts";

/** What `ffwd serve` takes. */
export interface ServeCliOptions {
  readonly model: string;
  readonly block?: string;
  /** ONNX: the value the model ends at instead of its first output. */
  readonly output?: string;
  readonly adaptersDir: string;
  readonly host?: string;
  readonly port?: number;
  readonly maxBatch?: number;
  readonly maxWaitMs?: number;
  readonly token?: string;
  readonly maxAdapters?: number;
  readonly maxAdapterBytes?: number;
  readonly maxBodyBytes?: number;
  /** Default: `servingThreads(model)` (one for a small model, else every core). */
  readonly threads?: number;
  /**
   * Let onnxruntime pre-pack the base's weights (default true): slower start-up, faster runs. A
   * 2 GiB F32 base starts in 10.5 s with it and 1.8 s without.
   */
  readonly prepack?: boolean;
  /**
   * A folder that keeps onnxruntime's pre-packed weights between starts
   * (`SessionOptions.prepackCache`): less private memory from the second start on, not a faster
   * one. Off by default.
   */
  readonly prepackCache?: string;
}

/** A started `ffwd serve`. */
export interface RunningServe {
  readonly server: Server;
  readonly engine: InferenceEngine;
  /** Waits for the server to stop, then releases the engine and the model. */
  close(): Promise<void>;
}

/**
 * Opens the model, compiles the engine and starts the server (what the command does before it
 * waits for a signal).
 *
 * @example
 * ```ts ignore
 * const { server, close } = await startServe({ model: "base.safetensors", adaptersDir: "runs", port: 0 });
 * await server.shutdown();
 * await close();
 * ```
 */
export async function startServe(o: ServeCliOptions): Promise<RunningServe> {
  // Imported here, so that `ffwd --help` and `inspect` never load onnxruntime or TF.js.
  const [{ InferenceEngine }, { serve }, { servingThreads }, { openModel }, { servableWeights }] =
    await Promise.all([
      import("../src/infer/engine.ts"),
      import("../src/infer/server.ts"),
      import("../src/infer/threads.ts"),
      import("../src/models/open.ts"),
      import("./_adapter_weights.ts"),
    ]);
  const model: BaseModel = await openModel(o.model, { block: o.block, output: o.output });
  let engine: InferenceEngine | undefined;
  try {
    engine = await InferenceEngine.create(model, {
      maxAdapters: o.maxAdapters,
      maxBytes: o.maxAdapterBytes,
      threads: o.threads ?? servingThreads(model),
      prepack: o.prepack,
      prepackCache: o.prepackCache,
      spin: false, // pool threads spinning between runs take the HTTP loop's cores
    });
    const server = await serve(engine, {
      hostname: o.host ?? "127.0.0.1",
      port: o.port ?? 8080,
      token: o.token,
      maxBatch: o.maxBatch,
      maxWaitMs: o.maxWaitMs,
      maxBodyBytes: o.maxBodyBytes,
      adaptersDir: o.adaptersDir,
      loadWeights: (dir) => servableWeights(dir, model),
      onError: (e, req) => writeErr(`error: ${req.method} ${new URL(req.url).pathname}: ${e}`),
    });
    const eng = engine;
    return {
      server,
      engine,
      close: async () => {
        await server.finished;
        await eng.close();
        model.close();
      },
    };
  } catch (e) {
    await engine?.close();
    model.close();
    throw e;
  }
}

/**
 * Adds `serve` to the program.
 *
 * @example
 * ```ts
 * import { Command } from "@commander-js/extra-typings";
 * import { registerServe } from "./serve.ts";
 * const program = new Command().option("--debug");
 * registerServe(program);
 * ```
 */
export function registerServe(program: Program): void {
  program
    .command("serve")
    .description("serve a base model with hot-swapped adapters over HTTP")
    .requiredOption("--model <file>", "base model (.safetensors, .onnx or TF.js model.json)")
    .option("--block <name>", "block of a multi-block file (model.layers.3.mlp)")
    .option(
      "--output <name>",
      "end the model at this value (another output, or the logits a final Softmax reads)",
    )
    .requiredOption("--adapters-dir <dir>", "folder of adapter folders (loaded by name)")
    .option("--host <host>", "address to bind", "127.0.0.1")
    .option("--port <n>", "port (0 picks a free port)", nonNegativeInteger, 8080)
    .option("--max-batch <rows>", "most rows per engine run", positiveInteger, 64)
    .option(
      "--max-wait-ms <ms>",
      "longest wait of an idle engine for more requests (0: run at once, batch what queues " +
        "up while a batch runs)",
      nonNegativeNumber,
      0,
    )
    .option("--token <token>", "require Authorization: Bearer <token> (or set FFWD_TOKEN)")
    .option("--max-adapters <n>", "most adapters in memory (LRU eviction)", positiveInteger)
    .option("--max-adapter-bytes <bytes>", "most adapter bytes in memory", positiveInteger)
    .option("--max-body-bytes <bytes>", "largest request body", positiveInteger, 16 * 1024 * 1024)
    .option(
      "--threads <n>",
      "onnxruntime threads (default: 1 for a small model, else every core)",
      positiveInteger,
    )
    .option(
      "--no-prepack",
      "skip onnxruntime's weight pre-packing: much faster start-up for large bases, slower runs",
    )
    .option(
      "--prepack-cache <dir>",
      "keep onnxruntime's pre-packed weights in <dir> (off by default): later starts map them " +
        "from there, about the weights' size less private memory, shared by servers of one " +
        "base; start-up is not faster (onnxruntime packs again to find them) and the first " +
        "start writes about twice the weights' size",
    )
    .action(async (o, cmd) => {
      if (o.prepackCache !== undefined && !o.prepack) {
        cmd.error("error: --prepack-cache needs pre-packing: drop --no-prepack", {
          exitCode: 2,
          code: "ffwd.usage",
        });
      }
      const token = o.token ?? (Deno.env.get("FFWD_TOKEN") || undefined);
      const running = await startServe({ ...o, token });
      const { server } = running;
      const cache = running.engine.prepackCache;
      if (cache?.outcome === "unsaved") {
        writeErr(`warning: pre-packed cache not saved in ${cache.entry}: ${cache.error}`);
      } else if (cache) {
        const replaced = cache.replaced ? ` (replaced an entry: ${cache.replaced})` : "";
        const did = cache.outcome === "hit" ? "opened" : "saved";
        writeErr(`Pre-packed cache: ${did} ${cache.entry}${replaced}`);
      }
      writeOut(`Listening on ${server.url} (model ${o.model}, adapters ${o.adaptersDir})\n`);
      let stops = 0;
      const stop = () => {
        if (++stops > 1) Deno.exit(130); // a second signal does not wait
        writeErr("Shutting down: answering requests in flight (signal again to force)");
        void server.shutdown();
      };
      const signals: Deno.Signal[] = Deno.build.os === "windows"
        ? ["SIGINT", "SIGBREAK"]
        : ["SIGINT", "SIGTERM"];
      for (const s of signals) Deno.addSignalListener(s, stop);
      try {
        await running.close();
      } finally {
        for (const s of signals) Deno.removeSignalListener(s, stop);
      }
      writeOut("Stopped\n");
    });
}
