/**
 * The reference of the serving benchmark: the least a server can do to answer `POST /v1/predict`
 * with one ONNX model. `Deno.serve` and onnxruntime-node on a merged model (the adapter folded
 * into the weights): parse the JSON body, one `session.run`, reply with the rows of the output.
 * No validation, no batching, no metrics.
 *
 * The session takes onnxruntime-node's defaults, as a server written without tuning would:
 * `intraOpNumThreads` 0, which onnxruntime reads as one intra-op thread per physical core (2 on
 * the 2-core development machine), whose pool threads spin after each run waiting for more work
 * (`session.intra_op.allow_spinning` 1); sequential execution; every graph optimisation.
 * `FFWD_PLAIN_THREADS=n` sets the intra-op threads instead: 1 has no pool, hence no spinning, and
 * is this server's fastest setting on that machine.
 *
 * ```sh
 * deno run --allow-read --allow-env --allow-ffi --allow-sys --allow-net=127.0.0.1 \
 *   bench/_plain_server.ts merged.onnx
 * ```
 *
 * Prints `Listening on http://127.0.0.1:<port> (<its session options>)` and serves until SIGTERM
 * or SIGINT. `GET` (any path) answers `process_cpu_seconds_total <s>`, the line of `ffwd serve`'s
 * `/metrics` the benchmark reads.
 *
 * @module
 */

import process from "node:process";
import * as ort from "onnxruntime-node";

if (import.meta.main) {
  const path = Deno.args[0];
  if (!path) throw new TypeError("Usage: _plain_server.ts <model.onnx> [port]");
  // onnxruntime-node's defaults (threads: the physical cores), unless FFWD_PLAIN_THREADS says.
  const threads = Number(Deno.env.get("FFWD_PLAIN_THREADS") || 0);
  const options = threads
    ? `${threads} intra-op thread${threads === 1 ? "" : "s"}`
    : "onnxruntime defaults: a spinning intra-op thread per physical core";
  const session = await ort.InferenceSession.create(
    path,
    threads ? { intraOpNumThreads: threads } : {},
  );
  const [input] = session.inputNames;
  const [output] = session.outputNames;
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: Number(Deno.args[1] ?? 0),
    onListen: ({ port }) => console.log(`Listening on http://127.0.0.1:${port} (${options})`),
  }, async (req) => {
    if (req.method === "GET") { // what the benchmark reads of `ffwd serve`'s /metrics
      const { user, system } = process.cpuUsage();
      return new Response(`process_cpu_seconds_total ${(user + system) / 1e6}\n`);
    }
    const body = await req.json() as { inputs: number[][] };
    const rows = body.inputs.length, width = body.inputs[0]!.length;
    const x = new Float32Array(rows * width);
    body.inputs.forEach((r, i) => x.set(r, i * width));
    const out = await session.run({ [input!]: new ort.Tensor("float32", x, [rows, width]) });
    const y = out[output!]!;
    const per = y.data.length / rows;
    const data = y.data as Float32Array;
    const outputs = Array.from(
      { length: rows },
      (_, i) => Array.from(data.subarray(i * per, (i + 1) * per)),
    );
    return Response.json({ outputs });
  });
  const stop = () => void server.shutdown();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await server.finished;
  await session.release();
}
