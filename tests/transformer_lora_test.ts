/**
 * LoRA through a whole transformer: a two-layer BERT-style sequence classifier written as
 * `torch.onnx.export` writes one (PyTorch 2.x node scopes, anonymous `onnx::MatMul_N` weights,
 * embeddings with `position_ids[:, :seq]` and an expanded token-type buffer, shape chains read
 * from the input, BERT's additive mask in layer 0 and DistilBERT's `masked_fill` in layer 1,
 * post-LN, exact GELU, the [CLS] row as a Gather, pooler and classifier), imported with symbolic
 * batch and sequence, adapted with `buildAdapted` on both layers' FFN and layer 0's query, and
 * differentiated: layer 0's adapter gradients cross layer 1's attention on their way to the loss.
 *
 * onnxruntime has no float64 Erf kernel, so the float64 finite differences run on a twin of the
 * file whose GELU computes erf as its Taylor series (double-precision coefficients, 48 terms,
 * exact to ~1e-13 for |x| ≤ 3); the file with Erf nodes, and Erf's own VJP, must then give the
 * same gradients in float32. Erf's VJP itself is checked in float64 in `activation_test.ts`.
 *
 * @module
 */

import { create } from "@bufbuild/protobuf";
import { planAdapters } from "../adapters/targets.ts";
import { grad } from "../src/engine/autograd.ts";
import type { Value } from "../src/engine/graph.ts";
import { Session } from "../src/engine/runtime.ts";
import { buildAdapted } from "../src/lora/adapted.ts";
import { openOnnxModel } from "../src/models/onnx/import.ts";
import { type NodeProto, type TensorProto, TensorProtoSchema } from "../src/onnx/gen/onnx_pb.ts";
import { Rng } from "../src/rng.ts";
import type { Tensor } from "../src/tensor.ts";
import { assert, assertEquals, maxDiff, randomTensor, relError, withTempDir } from "./_assert.ts";
import {
  type A,
  f32,
  i64,
  io,
  model,
  node,
  runImported,
  runOriginal,
  writeModel,
} from "./_onnx.ts";

const [V, H, HEADS, D, FFN, P, LABELS] = [11, 8, 2, 4, 16, 16, 3];
/** float32's lowest value, what `torch.finfo(torch.float32).min` masks with. */
const LOWEST = -3.4028234663852886e38;
const ERF_TERMS = 48;

/** A float64 initializer (the Taylor coefficients must not be rounded to float32). */
function f64(name: string, dims: number[], values: number[]): TensorProto {
  const raw = new Uint8Array(Float64Array.from(values).buffer);
  return create(TensorProtoSchema, { name, dims: dims.map(BigInt), dataType: 11, rawData: raw });
}

/** The nodes and initializers of an export being written, named as PyTorch 2.x names them. */
class Export {
  readonly nodes: NodeProto[] = [];
  readonly inits: TensorProto[] = [
    i64("zero", [1], [0]),
    i64("one", [1], [1]),
    i64("minus1", [1], [-1]),
    i64("minus2", [1], [-2]),
    i64("zero_s", [], [0]),
    i64("one_s", [], [1]),
    i64("heads", [2], [HEADS, D]),
    i64("hidden", [1], [H]),
    i64("position_ids", [1, P], Array.from({ length: P }, (_, i) => i)),
    i64("token_type_ids", [1, P], new Array(P).fill(0)),
    f32("sqrt_d", [], [Math.sqrt(D)]),
    f32("sqrt_2", [], [Math.SQRT2]),
    f32("one_f", [], [1]),
    f32("half", [], [0.5]),
    f32("lowest", [], [LOWEST]),
    f32("erf_powers", [ERF_TERMS], Array.from({ length: ERF_TERMS }, (_, n) => 2 * n + 1)),
    f64("erf_coefficients", [ERF_TERMS], taylorErf()),
  ];
  readonly #rng = new Rng(11);
  readonly #named = new Map<string, number>();
  #folded = 100;

  /** A node in `scope` (`/bert/encoder/layer.0/attention/self`); returns its output. */
  op(type: string, ins: string[], scope: string, attrs: Record<string, A> = {}): string {
    const k = this.#named.get(`${scope}/${type}`) ?? 0;
    this.#named.set(`${scope}/${type}`, k + 1);
    const name = `${scope}/${type}${k ? `_${k}` : ""}`;
    this.nodes.push(node(type, ins, [`${name}_output_0`], attrs, { name }));
    return `${name}_output_0`;
  }

  /** A random weight in [-scale, scale). */
  param(name: string, shape: number[], scale = 0.4): string {
    const t = randomTensor(shape, this.#rng, { lo: -scale, hi: scale });
    this.inits.push(f32(name, shape, Array.from(t.data)));
    return name;
  }

  concat(parts: string[], scope: string): string {
    return this.op("Concat", parts, scope, { axis: { i: 0 } });
  }

  /** `nn.Linear` on a 3-D input: MatMul on the constant-folded `[in, out]` weight, then the bias. */
  linear(x: string, module: string, inF: number, outF: number): string {
    const at = scope(module);
    const y = this.op("MatMul", [x, this.param(`onnx::MatMul_${this.#folded++}`, [inF, outF])], at);
    return this.op("Add", [this.param(`${module}.bias`, [outF], 0.1), y], at);
  }

  layerNorm(x: string, module: string): string {
    const [w, b] = [
      this.param(`${module}.weight`, [H], 1.5),
      this.param(`${module}.bias`, [H], 0.1),
    ];
    return this.op("LayerNormalization", [x, w, b], scope(module), { epsilon: { f: 1e-12 } });
  }
}

const scope = (module: string) => "/" + module.replace(/\.(?!\d)/g, "/");

/** The encoder, with exact GELU through Erf or through erf's Taylor series. */
function encoder(erf: "op" | "series") {
  const e = new Export();
  const emb = embeddings(e);
  let h = emb.h;
  for (const i of [0, 1]) {
    const attended = attention(e, i, h, emb);
    h = feedForward(e, `bert.encoder.layer.${i}`, attended, erf);
  }
  // the [CLS] row, hidden[:, 0], then the pooler and the classifier as Gemm on stored weights
  const first = e.op("Gather", [h, "zero_s"], "/bert/pooler", { axis: { i: 1 } });
  const gemm = (x: string, module: string, outF: number) => {
    const [w, b] = [e.param(`${module}.weight`, [outF, H]), e.param(`${module}.bias`, [outF], 0.1)];
    return e.op("Gemm", [x, w, b], scope(module), { transB: { i: 1 } });
  };
  const pooled = e.op("Tanh", [gemm(first, "bert.pooler.dense", H)], "/bert/pooler/activation");
  e.nodes.push(node("Identity", [gemm(pooled, "classifier", LABELS)], ["logits"]));
  return model({
    nodes: e.nodes,
    inputs: [io("input_ids", ["batch", "seq"], 7), io("attention_mask", ["batch", "seq"], 7)],
    outputs: [io("logits", ["batch", LABELS])],
    inits: e.inits,
  });
}

/**
 * Words + token types + positions, the last two sliced from buffers to the input's length
 * (`position_ids[:, :seq]`, `token_type_ids[:, :seq].expand(batch, seq)`), then LayerNorm; with
 * the input's batch and seq (one-element vectors) and BERT's additive mask
 * `(1 − mask[:, None, None, :]) · lowest`.
 */
function embeddings(e: Export) {
  const at = "/bert/embeddings";
  const size = e.op("Shape", ["input_ids"], at);
  const item = (i: string) =>
    e.op("Unsqueeze", [e.op("Gather", [size, i], at, { axis: { i: 0 } }), "zero"], at);
  const [batch, seq] = [item("zero_s"), item("one_s")];
  const upTo = (buffer: string) => e.op("Slice", [buffer, "zero", seq, "one", "one"], at);
  const types = e.op("Expand", [upTo("token_type_ids"), size], at);
  const lookup = (table: string, rows: number, ids: string) =>
    e.op("Gather", [e.param(`bert.embeddings.${table}.weight`, [rows, H], 1), ids], at);
  const words = lookup("word_embeddings", V, "input_ids");
  const sum = e.op("Add", [words, lookup("token_type_embeddings", 2, types)], at);
  const placed = e.op("Add", [sum, lookup("position_embeddings", P, upTo("position_ids"))], at);
  const h = e.layerNorm(placed, "bert.embeddings.LayerNorm");
  const unsqueezed = e.op("Unsqueeze", ["attention_mask", "one"], "/bert");
  const keep = e.op("Cast", [e.op("Unsqueeze", [unsqueezed, "minus2"], "/bert")], "/bert", {
    to: { i: 1 },
  });
  const additive = e.op("Mul", [e.op("Sub", ["one_f", keep], "/bert"), "lowest"], "/bert");
  return { h, batch, seq, additive };
}

/**
 * Self-attention and its output LayerNorm. Layer 0 writes BERT's shapes
 * (`x.view(x.size()[:-1] + (heads, d))`) and adds the additive mask; layer 1 writes DistilBERT's
 * (`x.view(batch, -1, heads, d)`, `scores.masked_fill((mask == 0).view(b, 1, 1, seq)
 * .expand_as(scores), lowest)`).
 */
function attention(
  e: Export,
  i: number,
  h: string,
  { batch, seq, additive }: ReturnType<typeof embeddings>,
): string {
  const p = `bert.encoder.layer.${i}`;
  const at = scope(`${p}.attention.self`);
  const lead = (x: string, end: string) => e.op("Slice", [e.op("Shape", [x], at), "zero", end], at);
  const target = e.concat(i === 0 ? [lead(h, "minus1"), "heads"] : [batch, "minus1", "heads"], at);
  const split = (m: string, perm = [0, 2, 1, 3]) => {
    const y = e.op("Reshape", [e.linear(h, `${p}.attention.self.${m}`, H, H), target], at);
    return e.op("Transpose", [y], at, { perm: { ints: perm } });
  };
  const [q, v] = [split("query"), split("value")];
  const k = e.op("Transpose", [split("key")], at, { perm: { ints: [0, 1, 3, 2] } });
  let scores = e.op("Div", [e.op("MatMul", [q, k], at), "sqrt_d"], at);
  if (i === 0) scores = e.op("Add", [scores, additive], at);
  else {
    const view = e.concat([batch, "one", "one", seq], at);
    const hidden = e.op("Reshape", [e.op("Equal", ["attention_mask", "zero_s"], at), view], at);
    const wide = e.op("Expand", [hidden, e.op("Shape", [scores], at)], at);
    scores = e.op("Where", [wide, "lowest", scores], at);
  }
  const probs = e.op("Softmax", [scores], at, { axis: { i: -1 } });
  const context = e.op("Transpose", [e.op("MatMul", [probs, v], at)], at, {
    perm: { ints: [0, 2, 1, 3] },
  });
  const merged = e.concat(
    i === 0 ? [lead(context, "minus2"), "hidden"] : [batch, "minus1", "hidden"],
    at,
  );
  const out = e.linear(e.op("Reshape", [context, merged], at), `${p}.attention.output.dense`, H, H);
  const residual = e.op("Add", [out, h], scope(`${p}.attention.output`));
  return e.layerNorm(residual, `${p}.attention.output.LayerNorm`);
}

/** The FFN with exact GELU `x · 0.5 · (1 + erf(x / √2))` as opset 17 writes it, and its LayerNorm. */
function feedForward(e: Export, p: string, h: string, erf: "op" | "series"): string {
  const up = e.linear(h, `${p}.intermediate.dense`, H, FFN);
  const at = scope(`${p}.intermediate.intermediate_act_fn`);
  const u = e.op("Div", [up, "sqrt_2"], at);
  const erfU = erf === "op" ? e.op("Erf", [u], at) : seriesErf(e, u, at);
  const gelu = e.op("Mul", [e.op("Mul", [up, e.op("Add", [erfU, "one_f"], at)], at), "half"], at);
  const down = e.linear(gelu, `${p}.output.dense`, FFN, H);
  return e.layerNorm(e.op("Add", [down, h], scope(`${p}.output`)), `${p}.output.LayerNorm`);
}

/** erf(u) = Σ c_n·u^(2n+1): Unsqueeze, Pow, Mul by the coefficients (cast from float64), ReduceSum. */
function seriesErf(e: Export, u: string, at: string): string {
  const coefficients = e.op("Cast", ["erf_coefficients"], at, { to: { i: 1 } });
  const powers = e.op("Pow", [e.op("Unsqueeze", [u, "minus1"], at), "erf_powers"], at);
  const terms = e.op("Mul", [powers, coefficients], at);
  return e.op("ReduceSum", [terms, "minus1"], at, { keepdims: { i: 0 } });
}

/** erf's Taylor coefficients `2/√π · (−1)^n / (n!·(2n + 1))`. */
function taylorErf(): number[] {
  let factorial = 1;
  return Array.from({ length: ERF_TERMS }, (_, n) => {
    if (n > 0) factorial *= n;
    return (2 / Math.sqrt(Math.PI)) * (n % 2 ? -1 : 1) / (factorial * (2 * n + 1));
  });
}

const int64 = (shape: number[], values: number[]): Tensor => ({
  dtype: "I64",
  shape,
  data: BigInt64Array.from(values, BigInt),
});
/** Two sequences of five tokens, the first padded by one, the second by two. */
const BATCH = {
  input_ids: int64([2, 5], [1, 7, 3, 9, 0, 4, 4, 10, 0, 0]),
  attention_mask: int64([2, 5], [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]),
};

const withEncoder = <T>(erf: "op" | "series", fn: (path: string) => Promise<T>) =>
  withTempDir(async (dir) => fn(await writeModel(dir, `bert_${erf}.onnx`, encoder(erf))));

Deno.test("the BERT-style export imports with symbolic batch and seq and computes onnxruntime's logits", async () => {
  await withEncoder("op", async (path) => {
    const m = await openOnnxModel(path);
    assertEquals(m.outputs[0]!.shape, ["batch", LABELS]);
    assertEquals(m.notes.filter((n) => /frozen context/.test(n)), []);
    assertEquals(m.layers.length, 14);
    const three = {
      input_ids: int64([3, 3], [5, 2, 8, 1, 1, 0, 9, 3, 6]),
      attention_mask: int64([3, 3], [1, 1, 1, 1, 0, 0, 1, 1, 0]),
    };
    for (const feeds of [BATCH, three]) {
      const [got, want] = [await runImported(m, feeds), await runOriginal(path, feeds)];
      const d = maxDiff(got["logits"]!, want["logits"]!);
      assert(d <= 1e-5, `logits differ by ${d}`);
    }
  });
});

const TARGETS = String.raw`bert\.encoder\.layer\.\d\.(intermediate|output)\.dense|` +
  String.raw`bert\.encoder\.layer\.0\.attention\.self\.query`;

/**
 * The adapted graph of `path` with a cross-entropy loss, its adapter inputs, the gradient of each,
 * and feeds: BATCH, labels, and random A and B (B = 0 would leave A without a gradient).
 */
async function adapted(path: string, float64: boolean) {
  const m = await openOnnxModel(path);
  const adapters = planAdapters(m, { targetModules: TARGETS, r: 2, loraAlpha: 4 });
  const built = buildAdapted(m, adapters, { loss: "cross_entropy" });
  const params: Value[] = [...built.adapterInputs.values()].flatMap((a) => [a.A, a.B]);
  const grads = grad(built.loss!, params);
  const g = built.graph;
  g.output(built.loss!);
  for (const d of grads) g.output(d);
  const rng = new Rng(5);
  const feeds: Record<string, Tensor> = { ...BATCH, labels: int64([2], [2, 0]) };
  for (const p of params) {
    const t = randomTensor(p.shape as number[], rng, { lo: -0.5, hi: 0.5 });
    feeds[p.name] = float64 ? { ...t, dtype: "F64", data: Float64Array.from(t.data) } : t;
  }
  const session = await Session.compile(g, { float64, threads: 1 });
  const names = [...built.adapterInputs.keys()];
  return { names, params, grads, loss: built.loss!, feeds, session };
}

Deno.test("LoRA gradients of both layers' FFN and layer 0's query match float64 finite differences", async () => {
  await withEncoder("series", async (path) => {
    const a = await adapted(path, true);
    assertEquals(a.names, [
      "bert.encoder.layer.0.attention.self.query",
      "bert.encoder.layer.0.intermediate.dense",
      "bert.encoder.layer.0.output.dense",
      "bert.encoder.layer.1.intermediate.dense",
      "bert.encoder.layer.1.output.dense",
    ]);
    try {
      await finiteDifferences(a);
    } finally {
      await a.session.release();
    }
  });
});

/**
 * Compares each element of each adapter gradient with a central difference of the float64 loss
 * (step 1e-5), as `gradcheck` does, to a relative error of 1e-6; and checks that no adapter's
 * gradient vanishes: layer 0's reaches the loss only through layer 1 (its attention and the
 * residual around it).
 */
async function finiteDifferences(a: Awaited<ReturnType<typeof adapted>>): Promise<void> {
  const { params, grads, loss, feeds, session } = a;
  const analytic = await session.run(feeds);
  const eps = 1e-5;
  const lossAt = async () => (await session.run(feeds, [loss.name]))[loss.name]!.data[0] as number;
  for (const [k, p] of params.entries()) {
    const x = feeds[p.name]!.data as Float64Array;
    const dx = analytic[grads[k]!.name]!.data as Float64Array;
    let norm = 0;
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i]!;
      x[i] = x0 + eps;
      const up = await lossAt();
      x[i] = x0 - eps;
      const down = await lossAt();
      x[i] = x0;
      const numeric = (up - down) / (2 * eps);
      const err = Math.abs(numeric - dx[i]!) / Math.max(Math.abs(numeric), Math.abs(dx[i]!), 1e-3);
      const what = `d${p.name}[${i}]: autograd ${dx[i]}, finite difference ${numeric}`;
      assert(err <= 1e-6, `${what} (relative error ${err})`);
      norm += numeric * numeric;
    }
    assert(norm > 1e-8, `The gradient of ${p.name} vanishes`);
  }
}

Deno.test("with Erf's own VJP the float32 adapter gradients equal the float64 ones of the series twin", async () => {
  const run = (erf: "op" | "series") =>
    withEncoder(erf, async (path) => {
      const a = await adapted(path, erf === "series");
      try {
        const out = await a.session.run(a.feeds);
        return a.grads.map((d) => Float64Array.from(out[d.name]!.data as ArrayLike<number>));
      } finally {
        await a.session.release();
      }
    });
  const [float32, float64] = [await run("op"), await run("series")];
  float32.forEach((d, k) => {
    const e = relError(d, float64[k]!);
    assert(e <= 5e-6, `adapter gradient ${k}: float32 Erf and float64 series differ by ${e}`);
  });
});
