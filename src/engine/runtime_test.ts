import { deepStrictEqual, equal, ok, rejects } from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { maxDiff, randomTensor, withTempDir } from "../../tests/_assert.ts";
import { runGraph } from "../../tests/_ops.ts";
import type { Tensor } from "../tensor.ts";
import { saveOnnx, toModelProto } from "./emit.ts";
import { type ExternalTensor, Graph } from "./graph.ts";
import { add } from "./ops/elementwise.ts";
import { matmul } from "./ops/matmul.ts";
import { reshape, transpose } from "./ops/shape.ts";
import { fromOrt, ortSessionOptions, Session, toOrt, writeModelFolder } from "./runtime.ts";
import { stage } from "./_stage.ts";

/**
 * Writes a safetensors file (8-byte little-endian header length, JSON header, raw bytes) whose
 * header is not padded, so tensor data starts at unaligned offsets; returns each tensor as an
 * ExternalTensor.
 */
async function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor<"F32">>,
): Promise<Record<string, ExternalTensor>> {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let end = 0;
  for (const [k, t] of Object.entries(tensors)) {
    header[k] = { dtype: "F32", shape: t.shape, data_offsets: [end, end + t.data.byteLength] };
    end += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 4 !== 1) json += " "; // data at offset ≡ 1 (mod 4)
  const head = new TextEncoder().encode(json);
  const bytes = new Uint8Array(8 + head.byteLength + end);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(head.byteLength), true);
  bytes.set(head, 8);
  const refs: Record<string, ExternalTensor> = {};
  let at = 8 + head.byteLength;
  for (const [k, t] of Object.entries(tensors)) {
    bytes.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    refs[k] = {
      kind: "external",
      dtype: "F32",
      shape: t.shape,
      path,
      offset: at,
      length: t.data.byteLength,
    };
    at += t.data.byteLength;
  }
  await Deno.writeFile(path, bytes);
  return refs;
}

const WEIGHT = randomTensor([3, 4], 1);
const BIAS = randomTensor([3], 2);
const X = randomTensor([2, 4], 3);

/** `x Wᵀ + b` with W and b from `init`. */
function linear(init: (g: Graph, name: string, t: Tensor<"F32">) => void): Graph {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 4]);
  init(g, "fc.weight", WEIGHT);
  init(g, "fc.bias", BIAS);
  g.output(add(matmul(x, transpose(g.find("fc.weight")!)), g.find("fc.bias")!));
  return g;
}

const inlineLinear = () => linear((g, name, t) => g.initializer(name, t));
const externalLinear = (refs: Record<string, ExternalTensor>) =>
  linear((g, name) => g.initializer(name, refs[name]!));

Deno.test("an F32 weight inside a safetensors file is read in place and equals the inline weight", async () => {
  await withTempDir(async (dir) => {
    const refs = await writeSafetensors(`${dir}/model.safetensors`, {
      "fc.bias": BIAS,
      "fc.weight": WEIGHT,
    });
    ok(refs["fc.weight"]!.offset % 4 !== 0);
    const g = externalLinear(refs);
    const staged = await stage(g, {});
    equal(staged.tempDir, null); // nothing written, nothing copied
    equal(staged.folder, await Deno.realPath(dir));
    const want = await runGraph(inlineLinear(), { x: X });
    deepStrictEqual(await runGraph(g, { x: X }), want);
    const f64 = await runGraph(g, { x: X }, { float64: true }); // X widened to F64
    ok(maxDiff(Object.values(f64)[0]!, Object.values(want)[0]!) < 1e-6);
  });
});

Deno.test("external data behind symbolic links and in several folders, with spilling, is read", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/a`);
    await Deno.mkdir(`${dir}/b`);
    await Deno.symlink(`${dir}/a`, `${dir}/b/link`);
    const w = await writeSafetensors(`${dir}/a/w.safetensors`, { "fc.weight": WEIGHT });
    const b = await writeSafetensors(`${dir}/b/b.safetensors`, { "fc.bias": BIAS });
    const refs = {
      "fc.weight": { ...w["fc.weight"]!, path: `${dir}/b/link/w.safetensors` },
      "fc.bias": b["fc.bias"]!,
    };
    const want = await runGraph(inlineLinear(), { x: X });
    deepStrictEqual(await runGraph(externalLinear(refs), { x: X }), want);
    // A spilled initializer too: its temporary side file joins the referenced folders.
    const square = randomTensor([3, 3], 4);
    const withSquare = (g: Graph) => {
      const y = g.outputs.pop()!;
      g.output(matmul(y, g.initializer("square", square)));
      return g;
    };
    const opts = { spillThreshold: 32 };
    equal(
      toModelProto(withSquare(externalLinear(refs)), { ...opts, modelDir: dir }).spill.length,
      1,
    );
    deepStrictEqual(
      await runGraph(withSquare(externalLinear(refs)), { x: X }, opts),
      await runGraph(withSquare(inlineLinear()), { x: X }),
    );
  });
});

Deno.test("external data that is missing or too short fails naming the initializer", async () => {
  await withTempDir(async (dir) => {
    const refs = await writeSafetensors(`${dir}/m.safetensors`, {
      "fc.bias": BIAS,
      "fc.weight": WEIGHT,
    });
    const short = {
      ...refs,
      "fc.weight": { ...refs["fc.weight"]!, offset: refs["fc.weight"]!.offset + 4 },
    };
    await rejects(Session.compile(externalLinear(short)), {
      name: "RangeError",
      message: /"fc.weight": bytes \d+\.\.\d+ are past the end of ".*m.safetensors" \(\d+ bytes\)/,
    });
    const gone = { ...refs, "fc.bias": { ...refs["fc.bias"]!, path: `${dir}/gone.safetensors` } };
    await rejects(Session.compile(externalLinear(gone)), /external data of "fc.bias" from ".*gone/);
  });
});

Deno.test("toModelProto() writes locations inside modelDir and refuses others", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/weights`);
    const refs = await writeSafetensors(`${dir}/weights/m.safetensors`, {
      "fc.bias": BIAS,
      "fc.weight": WEIGHT,
    });
    const g = externalLinear(refs);
    const locations = toModelProto(g, { modelDir: dir }).proto.graph!.initializer.map((t) =>
      t.externalData.find((e) => e.key === "location")?.value
    );
    deepStrictEqual(locations, ["weights/m.safetensors", "weights/m.safetensors"]);
    let err: unknown;
    try {
      toModelProto(g, { modelDir: `${dir}/elsewhere` });
    } catch (e) {
      err = e;
    }
    ok(err instanceof TypeError && /outside the model folder/.test(err.message), String(err));
  });
});

Deno.test("saveOnnx() copies external tensors so the saved model stands alone", async () => {
  await withTempDir(async (dir) => {
    const refs = await writeSafetensors(`${dir}/m.safetensors`, {
      "fc.bias": BIAS,
      "fc.weight": WEIGHT,
    });
    await Deno.mkdir(`${dir}/out`);
    const saved = await saveOnnx(`${dir}/out/linear.onnx`, externalLinear(refs));
    equal(saved.data, `${dir}/out/linear.onnx.data`);
    await Deno.remove(`${dir}/m.safetensors`); // the copy no longer needs it
    const s = await ort.InferenceSession.create(saved.model);
    const out = fromOrt((await s.run({ x: toOrt(X) }))[s.outputNames[0]!]!);
    await s.release();
    deepStrictEqual(out, Object.values(await runGraph(inlineLinear(), { x: X }))[0]);
    const path = await writeModelFolder(inlineLinear(), `${dir}/out`, { spillThreshold: 16 });
    equal(path, `${dir}/out/model.onnx`);
    ok(Deno.statSync(`${dir}/out/model.onnx.data`).size >= 48);
  });
});

function twoInputs(): Graph {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 3]);
  const y = g.input("y", "F32", ["batch", 3]);
  g.output(add(x, y));
  return g;
}

Deno.test("feeds are checked before running: names, dtypes and shapes appear in the errors", async () => {
  const s = await Session.compile(twoInputs(), { threads: 1 });
  const t = (shape: number[], seed = 1) => randomTensor(shape, seed);
  try {
    await rejects(s.run({ x: t([2, 3]) }), {
      name: "TypeError",
      message: 'Missing feed for input "y": expected F32 [batch, 3]',
    });
    await rejects(s.run({ x: t([2, 3]), y: t([2, 3]), z: t([1, 2]) }), {
      message:
        'Unknown feed "z" F32 [1, 2]: the graph\'s inputs are "x" [batch, 3], "y" [batch, 3]',
    });
    const f64: Tensor = { dtype: "F64", shape: [2, 3], data: new Float64Array(6) };
    await rejects(s.run({ x: f64, y: t([2, 3]) }), {
      message: 'Cannot feed input "x": dtype differs, expected F32 [batch, 3], got F64 [2, 3]',
    });
    await rejects(s.run({ x: t([2, 4]), y: t([2, 3]) }), {
      message:
        'Cannot feed input "x": dimension 1 differs, expected F32 [batch, 3], got F32 [2, 4]',
    });
    await rejects(s.run({ x: t([2, 3]), y: t([5, 3]) }), {
      message: 'Cannot feed input "y": dimension 0 ("batch") is 5 but input "x" has batch = 2, ' +
        "expected F32 [batch, 3], got F32 [5, 3]",
    });
    await rejects(s.run({ x: t([3]), y: t([2, 3]) }), /"x": rank differs/);
    await rejects(s.run({ x: t([2, 3]), y: t([2, 3]) }, ["nope"]), /Cannot fetch "nope"/);
    equal((await s.run({ x: t([2, 3]), y: t([2, 3]) })).constructor, Object);
  } finally {
    await s.release();
  }
});

Deno.test("an onnxruntime failure is wrapped with the feeds' shapes", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["n", 3]);
  g.output(reshape(x, [2, -1])); // fails at run time unless 2 divides 3n
  const s = await Session.compile(g, { threads: 1 });
  try {
    await rejects(s.run({ x: randomTensor([1, 3], 1) }), (e: Error) => {
      ok(/^Cannot run graph: .+ \(feeds: x F32 \[1, 3\]\)$/s.test(e.message), e.message);
      ok(e.cause instanceof Error);
      return true;
    });
    equal((await s.run({ x: randomTensor([2, 3], 1) }))[g.outputs[0]!.name]!.shape.join(), "2,3");
  } finally {
    await s.release();
  }
  const bad = new Graph();
  bad.output(
    bad.node("NoSuchOp", [bad.input("x", "F32", [1])], {}, [{ dtype: "F32", shape: [1] }])[0]!,
  );
  await rejects(Session.compile(bad), /^Error: Cannot compile graph \(1 nodes\): /);
});

Deno.test("threads: 1 and 2 give the same results, and invalid counts are refused", async () => {
  const g = inlineLinear();
  deepStrictEqual(
    await runGraph(g, { x: X }, { threads: 2 }),
    await runGraph(g, { x: X }, { threads: 1 }),
  );
  for (const threads of [0, -1, 1.5]) {
    await rejects(Session.compile(g, { threads }), {
      name: "RangeError",
      message: `Invalid threads ${threads}: expected an integer >= 1`,
    });
  }
});

Deno.test("release() frees the session: 200 compile and release cycles do not grow memory", async () => {
  const g = new Graph();
  const x = g.input("x", "F32", ["batch", 256]);
  g.output(matmul(x, g.initializer("w", randomTensor([256, 1024], 5)))); // 1 MiB of weights
  const feeds = { x: randomTensor([2, 256], 6) };
  const cycle = async () => {
    const s = await Session.compile(g, { threads: 1 });
    await s.run(feeds);
    await s.release();
    await s.release(); // a second release does nothing
    await rejects(s.run(feeds), /released/);
  };
  for (let i = 0; i < 20; i++) await cycle();
  const before = Deno.memoryUsage().rss;
  for (let i = 0; i < 200; i++) await cycle();
  const grown = (Deno.memoryUsage().rss - before) / 2 ** 20;
  console.log(`RSS grew by ${grown.toFixed(1)} MiB over 200 cycles`);
  // A session that is not freed keeps about 2.5 MiB here (its weights, pre-packed): 200 of them
  // grow RSS by about 500 MiB. Allocator and GC noise on a loaded machine reaches ~110 MiB, so
  // the bound sits between the two.
  ok(grown < 200, `RSS grew by ${grown.toFixed(1)} MiB over 200 cycles`);
});

/** The config entries onnxruntime-node makes of `extra`: nested keys joined with dots. */
function configEntries(extra: Record<string, unknown> | undefined, prefix = ""): string[] {
  return Object.entries(extra ?? {}).flatMap(([k, v]) =>
    typeof v === "object" && v !== null
      ? configEntries(v as Record<string, unknown>, `${prefix}${k}.`)
      : [`${prefix}${k}=${v}`]
  );
}

Deno.test("ortSessionOptions() names onnxruntime's config entries as onnxruntime-node flattens them", () => {
  deepStrictEqual(configEntries(ortSessionOptions(2, {}, null).extra), []);
  deepStrictEqual(configEntries(ortSessionOptions(2, { prepack: false }, "/tmp/w").extra), [
    "session.model_external_initializers_file_folder_path=/tmp/w",
    "session.disable_prepacking=1",
  ]);
  deepStrictEqual(configEntries(ortSessionOptions(2, { spin: false }, null).extra), [
    "session.intra_op.allow_spinning=0",
  ]);
  const o = ortSessionOptions(3, { optimization: "basic" }, null);
  deepStrictEqual([o.intraOpNumThreads, o.graphOptimizationLevel], [3, "basic"]);
});
