/**
 * ONNX import conformance over the third-party files in `../shared/realdata` (see its README):
 * - ONNX backend cases (`node/*`, `pytorch-converted/*`) reproduce their reference outputs;
 * - every other ONNX file, imported by ffwd and run through ffwd's session, gives the outputs of
 *   the original file run directly in onnxruntime-node (max relative error 1e-5, seeded inputs);
 * - the files the README marks as hostile or as not ONNX fail with the expected error.
 *
 * Every test is registered by `realdataTest` (see tests/_realdata.ts): ignored, with a loud
 * warning, when the folder is absent, unless FFWD_REQUIRE_REALDATA=1 makes them fail.
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import { fromBinary } from "@bufbuild/protobuf";
import { Graph } from "../../src/engine/graph.ts";
import { fromOrt, Session, toOrt } from "../../src/engine/runtime.ts";
import { openOnnxModel } from "../../src/models/onnx/import.ts";
import { readOnnxFile } from "../../src/io/onnx/read.ts";
import { tensorFromProto } from "../../src/io/onnx/tensor_proto.ts";
import { TensorProtoSchema } from "../../src/onnx/gen/onnx_pb.ts";
import { Rng } from "../../src/rng.ts";
import { allocData, numel, type Tensor, toFloat32 } from "../../src/tensor.ts";
import { REALDATA, realdataPresent, realdataTest } from "../_realdata.ts";

const ROOT = REALDATA;
const TOL = 1e-5;

/** Files that must fail to load, with the error they must fail with. */
const EXPECTED_FAILURES: Record<string, { error: ErrorConstructor; message: RegExp }> = {
  "onnxruntime__onnxruntime-qnn/onnxruntime/test/testdata/test_arbitrary_external_file.onnx": {
    error: RangeError,
    message:
      /Refusing to read .*test_arbitrary_external_file\.onnx.*"evil_weights".*"\.\.\/(\.\.\/)+etc\/passwd" is outside the model's folder/,
  },
  "tensorflow__tfjs/e2e/custom_module/dense_model/model/model.json": {
    error: SyntaxError,
    message: /model\.json": the file is JSON .*not an ONNX ModelProto/,
  },
  "tensorflow__tfjs/e2e/integration_tests/load_predict_data/layers_model/model.json": {
    error: SyntaxError,
    message: /model\.json": the file is JSON .*not an ONNX ModelProto/,
  },
};

async function walk(dir: string, out: string[] = []): Promise<string[]> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) await walk(p, out);
    else if (e.name.endsWith(".onnx")) out.push(p);
  }
  return out.sort();
}

const present = realdataPresent;
const files = present ? await walk(ROOT.replace(/\/$/, "")) : [];
const rel = (p: string) => p.slice(ROOT.length);

realdataTest("the realdata folder is present", () => {
  if (!present) throw new Error(`The realdata folder is missing: expected it at ${ROOT}`);
});

/** Max relative error `|a − b| / max(|b|, 1e-6)` after an absolute floor of 1e-6. */
function compare(name: string, got: Tensor, want: Tensor): void {
  if (got.shape.join() !== want.shape.join()) {
    throw new Error(`Output "${name}": shape [${got.shape}] differs from [${want.shape}]`);
  }
  const a = toFloat32(got).data;
  const b = toFloat32(want).data;
  let worst = 0;
  let at = -1;
  for (let i = 0; i < b.length; i++) {
    if (a[i] === b[i] || (Number.isNaN(a[i]) && Number.isNaN(b[i]))) continue;
    if (!Number.isFinite(a[i]!) || !Number.isFinite(b[i]!)) {
      [worst, at] = [Infinity, i];
      break;
    }
    const diff = Math.abs(a[i]! - b[i]!);
    if (diff <= 1e-6) continue;
    const r = diff / Math.max(Math.abs(b[i]!), 1e-6);
    if (r > worst) [worst, at] = [r, i];
  }
  if (worst > TOL) {
    throw new Error(
      `Output "${name}": max relative error ${worst.toExponential(2)} > ${TOL} at element ${at} ` +
        `(got ${a[at]}, expected ${b[at]})`,
    );
  }
}

/** Runs an opened model through ffwd's session. */
async function runFfwd(path: string, feeds: Record<string, Tensor>) {
  const model = await openOnnxModel(path);
  const g = new Graph();
  const built = model.build(g);
  const session = await Session.compile(g);
  try {
    const named: Record<string, Tensor> = {};
    built.inputs.forEach((v, i) => (named[v.name] = feeds[model.inputs[i]!.name]!));
    const result = await session.run(named);
    // Keyed by the model's output names (the graph may have renamed them to stay unique).
    const out: Record<string, Tensor> = {};
    built.outputs.forEach((v, i) => (out[model.outputs[i]!.name] = result[v.name]!));
    return { model, out };
  } finally {
    await session.release();
  }
}

const isBackendCase = (p: string) => /\/backend\/test\/data\/(node|pytorch-converted)\//.test(p);

for (const path of files.filter(isBackendCase)) {
  realdataTest(`${rel(path)} reproduces its reference outputs`, async () => {
    const dir = path.slice(0, path.lastIndexOf("/")) + "/test_data_set_0";
    const read = async (f: string) =>
      tensorFromProto(fromBinary(TensorProtoSchema, await Deno.readFile(`${dir}/${f}`)), f);
    const model = await openOnnxModel(path);
    const feeds: Record<string, Tensor> = {};
    for (const [i, io] of model.inputs.entries()) feeds[io.name] = await read(`input_${i}.pb`);
    const { out } = await runFfwd(path, feeds);
    for (const [i, io] of model.outputs.entries()) {
      compare(io.name, out[io.name]!, await read(`output_${i}.pb`));
    }
  });
}

/** Seeded inputs for a model: symbolic dimensions become 3, floats uniform in [-1, 1). */
/**
 * Sizes of symbolic input dimensions where 3 does not fit the model: openWakeWord's melspectrogram
 * slides a 512-sample window (its runtime feeds 1,280 samples, 80 ms at 16 kHz).
 */
const SYMBOLIC_SIZES: Record<string, number> = { samples: 1280 };

function randomFeeds(
  inputs: readonly { name: string; dtype: string; shape: readonly (number | string)[] }[],
  seed = 1234,
) {
  const rng = new Rng(seed);
  const feeds: Record<string, Tensor> = {};
  for (const io of inputs) {
    const shape = io.shape.map((d) => (typeof d === "number" ? d : SYMBOLIC_SIZES[d] ?? 3));
    const n = numel(shape);
    if (io.dtype === "F32") {
      feeds[io.name] = {
        dtype: "F32",
        shape,
        data: Float32Array.from({ length: n }, () => rng.uniform() * 2 - 1),
      };
    } else {
      feeds[io.name] = {
        dtype: io.dtype,
        shape,
        data: allocData(io.dtype as Tensor["dtype"], n),
      } as Tensor;
    }
  }
  return feeds;
}

/** The file's own input declarations (before the import frees a fixed batch). */
async function declaredInputs(path: string, names: readonly string[]) {
  const graph = (await readOnnxFile(path)).proto.graph!;
  return names.map((name) => {
    const v = graph.input.find((i) => i.name === name)!;
    const t = v.type!.value.value as {
      shape?: { dim: { value: { case?: string; value?: unknown } }[] };
    };
    return t.shape!.dim.map((d) => (d.value.case === "dimValue" ? Number(d.value.value) : "?"));
  });
}

/** The tensors stacked along axis 0 (same dtype and trailing shape). */
function concatRows(ts: readonly Tensor[]): Tensor {
  const first = ts[0]!;
  const total = ts.reduce((n, t) => n + t.data.length, 0);
  const data = new (first.data.constructor as new (n: number) => Tensor["data"])(total);
  let at = 0;
  for (const t of ts) {
    (data as Float32Array).set(t.data as Float32Array, at);
    at += t.data.length;
  }
  const rows = ts.reduce((n, t) => n + t.shape[0]!, 0);
  return { ...first, shape: [rows, ...first.shape.slice(1)], data } as Tensor;
}

for (const path of files.filter((p) => !isBackendCase(p) && !EXPECTED_FAILURES[rel(p)])) {
  realdataTest(`${rel(path)} gives onnxruntime's outputs when imported`, async () => {
    const model = await openOnnxModel(path);
    // Fixed dimensions as the file declares them, so the file itself can run the same feeds.
    const declared = await declaredInputs(path, model.inputs.map((io) => io.name));
    const shapes = model.inputs.map((io, i) => ({
      ...io,
      shape: io.shape.map((d, k) => (typeof declared[i]![k] === "number" ? declared[i]![k]! : d)),
    }));
    const feeds = randomFeeds(shapes);

    const { out } = await runFfwd(path, feeds);
    const reference = await ort.InferenceSession.create(path, { logSeverityLevel: 3 });
    try {
      const ortFeeds = Object.fromEntries(
        model.inputs.map((io) => [io.name, toOrt(feeds[io.name]!)]),
      );
      const want = await reference.run(ortFeeds);
      for (const io of model.outputs) compare(io.name, out[io.name]!, fromOrt(want[io.name]!));
      // A fixed batch the import freed: three batches of distinct rows in one run give what the
      // file gives for each batch on its own (rows that influenced each other would differ).
      if (model.inputs.some((io, i) => io.shape[0] === "batch" && declared[i]![0] !== "?")) {
        const chunks = [feeds, randomFeeds(shapes, 1), randomFeeds(shapes, 2)];
        const wants = [want];
        for (const c of chunks.slice(1)) {
          wants.push(
            await reference.run(
              Object.fromEntries(model.inputs.map((io) => [io.name, toOrt(c[io.name]!)])),
            ),
          );
        }
        const joined = Object.fromEntries(
          Object.keys(feeds).map((k) => [
            k,
            feeds[k]!.shape.length >= 2 ? concatRows(chunks.map((c) => c[k]!)) : feeds[k]!,
          ]),
        );
        const { out: big } = await runFfwd(path, joined);
        for (const io of model.outputs) {
          compare(io.name, big[io.name]!, concatRows(wants.map((w) => fromOrt(w[io.name]!))));
        }
      }
    } finally {
      await reference.release();
    }
  });
}

for (const [file, expected] of Object.entries(EXPECTED_FAILURES)) {
  realdataTest(`${file} is refused with a clear error`, async () => {
    let caught: unknown;
    await openOnnxModel(ROOT + file).catch((e) => (caught = e));
    if (!(caught instanceof expected.error) || !expected.message.test(caught.message)) {
      throw new Error(
        `Expected ${expected.error.name} matching ${expected.message}, got ${caught}`,
      );
    }
  });
}
