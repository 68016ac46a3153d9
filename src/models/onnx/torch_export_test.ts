/**
 * Layer names and roles of a hand-written graph shaped like `torch.onnx.export` of a two-layer
 * `BertForSequenceClassification` (hidden 8, 2 heads, intermediate 16, 3 labels), and target
 * selection on it as PEFT does it. The graph follows what PyTorch 2.x writes: each `nn.Linear` on
 * a 3-D input is `MatMul` on an anonymous, constant-folded `[in, out]` copy of the weight
 * (`onnx::MatMul_NNN`), then `Add(bias, ·)` where the bias keeps its parameter name; nodes are
 * named by module scope (`/bert/encoder/layer.0/attention/self/query/MatMul`); the pooler and
 * classifier are `Gemm` on the weights as PyTorch stores them. The expected names are what
 * `model.named_modules()` gives, so a PEFT adapter of the PyTorch model applies by key. Last, the
 * roles of a LLaMA MLP that nothing names.
 *
 * @module
 */

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
} from "../../../tests/_onnx.ts";
import {
  assertClose,
  assertEquals,
  assertThrows,
  randomTensor,
  withTempDir,
} from "../../../tests/_assert.ts";
import type { NodeProto, TensorProto } from "../../onnx/gen/onnx_pb.ts";
import { Rng } from "../../rng.ts";
import { planAdapters } from "../../../adapters/targets.ts";
import { openOnnxModel } from "./import.ts";
import { inspectOnnx } from "./inspect.ts";

/**
 * - `scoped`: PyTorch ≥ 1.13, biases keep their names;
 * - `bias-free`: the same with `bias=False` everywhere in the encoder (LLaMA-style), so only the
 *   node scopes name the layers;
 * - `unscoped`: bias-free, with the node names of exports before 1.13 (`MatMul_12`): nothing
 *   names the encoder's layers, the roles come from the graph.
 */
type Style = "scoped" | "bias-free" | "unscoped";

/** The module paths PyTorch gives the model's linear layers, in forward order. */
const MODULES = [
  ...[0, 1].flatMap((i) =>
    [
      "attention.self.query",
      "attention.self.key",
      "attention.self.value",
      "attention.output.dense",
      "intermediate.dense",
      "output.dense",
    ].map((m) => `bert.encoder.layer.${i}.${m}`)
  ),
  "bert.pooler.dense",
  "classifier",
];
const ROLES = [
  ...[0, 1].flatMap(() => ["attention", "attention", "attention", "attention", "ffn", "ffn"]),
  "head",
  "head",
];

function bertExport(style: Style) {
  const rng = new Rng(7);
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [
    i64("shape_heads", [4], [0, 0, 2, 4]),
    i64("shape_hidden", [3], [0, 0, 8]),
    i64("zero", [1], [0]),
    i64("one_i", [1], [1]),
    f32("sqrt_head_dim", [], [2]),
    f32("sqrt_2", [], [Math.SQRT2]),
    f32("one", [], [1]),
    f32("half", [], [0.5]),
  ];
  const param = (name: string, shape: number[]) => {
    inits.push(f32(name, shape, Array.from(randomTensor(shape, rng, { lo: -0.3, hi: 0.3 }).data)));
    return name;
  };
  const used = new Map<string, number>();
  let serial = 0;
  /** A node named as PyTorch names it: scope, op, `_k` from the second in a scope on. */
  const add = (op: string, ins: string[], scope: string, attrs: Record<string, A> = {}) => {
    const k = used.get(`${scope}/${op}`) ?? 0;
    used.set(`${scope}/${op}`, k + 1);
    const scoped = `${scope}/${op}${k ? `_${k}` : ""}`;
    const n = node(op, ins, [`${scoped}_output_0`], attrs, {
      name: style === "unscoped" ? `${op}_${serial++}` : scoped,
    });
    nodes.push(n);
    return n.output[0]!;
  };
  const scopeOf = (module: string) => "/" + module.replace(/\.(?!\d)/g, "/");
  let folded = 100;
  /** `nn.Linear` on a 3-D input: MatMul on the folded `[in, out]` weight, then the bias. */
  const linear = (x: string, module: string, inF: number, outF: number) => {
    const y = add("MatMul", [x, param(`onnx::MatMul_${folded++}`, [inF, outF])], scopeOf(module));
    if (style !== "scoped") return y;
    return add("Add", [param(`${module}.bias`, [outF]), y], scopeOf(module));
  };
  /** `nn.Linear` on a 2-D input: Gemm on the weight as stored. */
  const gemm = (x: string, module: string, outF: number) => {
    const [w, b] = [param(`${module}.weight`, [outF, 8]), param(`${module}.bias`, [outF])];
    return add("Gemm", [x, w, b], scopeOf(module), { transB: { i: 1 } });
  };
  /** LayerNorm(x + residual), the BertSelfOutput / BertOutput tail. */
  const addNorm = (x: string, residual: string, module: string) =>
    add(
      "LayerNormalization",
      [
        add("Add", [x, residual], scopeOf(module)),
        param(`${module}.LayerNorm.weight`, [8]),
        param(`${module}.LayerNorm.bias`, [8]),
      ],
      scopeOf(`${module}.LayerNorm`),
      { epsilon: { f: 1e-12 } },
    );
  let h = "hidden_states";
  for (const i of [0, 1]) {
    const p = `bert.encoder.layer.${i}`;
    const self = scopeOf(`${p}.attention.self`);
    const heads = (x: string, perm: number[]) =>
      add("Transpose", [add("Reshape", [x, "shape_heads"], self)], self, { perm: { ints: perm } });
    const q = heads(linear(h, `${p}.attention.self.query`, 8, 8), [0, 2, 1, 3]);
    const k = heads(linear(h, `${p}.attention.self.key`, 8, 8), [0, 2, 3, 1]);
    const v = heads(linear(h, `${p}.attention.self.value`, 8, 8), [0, 2, 1, 3]);
    const scores = add("Div", [add("MatMul", [q, k], self), "sqrt_head_dim"], self);
    const probs = add("Softmax", [scores], self, { axis: { i: -1 } });
    const context = add("Transpose", [add("MatMul", [probs, v], self)], self, {
      perm: { ints: [0, 2, 1, 3] },
    });
    const merged = add("Reshape", [context, "shape_hidden"], self);
    const attended = addNorm(
      linear(merged, `${p}.attention.output.dense`, 8, 8),
      h,
      `${p}.attention.output`,
    );
    // exact GELU as opset 17 writes it: x · 0.5 · (1 + erf(x / √2))
    const up = linear(attended, `${p}.intermediate.dense`, 8, 16);
    const act = scopeOf(`${p}.intermediate.intermediate_act_fn`);
    const erf = add("Add", [add("Erf", [add("Div", [up, "sqrt_2"], act)], act), "one"], act);
    const gelu = add("Mul", [add("Mul", [up, erf], act), "half"], act);
    h = addNorm(linear(gelu, `${p}.output.dense`, 16, 8), attended, `${p}.output`);
  }
  // The [CLS] row, as hidden[:, 0:1] squeezed (PyTorch writes hidden[:, 0] as a Gather).
  const cls = add("Slice", [h, "zero", "one_i", "one_i"], "/bert/pooler");
  const first = add("Squeeze", [cls, "one_i"], "/bert/pooler");
  const pooled = add("Tanh", [gemm(first, "bert.pooler.dense", 8)], "/bert/pooler/activation");
  nodes.push(node("Identity", [gemm(pooled, "classifier", 3)], ["logits"]));
  return model({
    nodes,
    inputs: [io("hidden_states", ["batch", 4, 8])],
    outputs: [io("logits", ["batch", 3])],
    inits,
  });
}

/** Writes the export of `style` and runs `fn` on its path. */
const withExport = (style: Style, fn: (path: string) => Promise<void>) =>
  withTempDir(async (dir) => fn(await writeModel(dir, `bert_${style}.onnx`, bertExport(style))));

Deno.test("layers of a torch.onnx.export with anonymous onnx::MatMul weights get PyTorch's module names", async () => {
  for (const style of ["scoped", "bias-free"] as const) {
    await withExport(style, async (path) => {
      const imported = await openOnnxModel(path);
      const layers = imported.layers;
      assertEquals(layers.map((l) => l.name), MODULES, style);
      // the graph is a valid export: onnxruntime runs it, and the import computes the same
      const feeds = { hidden_states: randomTensor([2, 4, 8], 3) };
      const [want, got] = [await runOriginal(path, feeds), await runImported(imported, feeds)];
      assertClose(got["logits"]!, want["logits"]!, { atol: 1e-5, what: style });
      // the encoder's weights are anonymous: the node scopes named them
      const anonymous = layers.filter((l) => l.weightKey.startsWith("onnx::MatMul_"));
      assertEquals(anonymous.length, 12, style);
      assertEquals(
        layers.map((l) => `${l.inFeatures}→${l.outFeatures} ${l.orientation}`).slice(3, 6),
        ["8→8 in_out", "8→16 in_out", "16→8 in_out"],
      );
    });
  }
});

Deno.test("inspectOnnx() groups a BERT export's layers into attention, ffn and head, by name or by graph", async () => {
  for (const style of ["scoped", "bias-free", "unscoped"] as const) {
    await withExport(style, async (path) => {
      const layers = (await inspectOnnx(path)).linearLayers;
      assertEquals(layers.map((l) => l.role), ROLES, style);
      if (style === "unscoped") {
        // nothing names the encoder's layers: they keep their weights' names
        assertEquals(layers[4]!.name, "onnx::MatMul_104");
        assertEquals(layers.slice(-2).map((l) => l.name), ["bert.pooler.dense", "classifier"]);
      }
    });
  }
});

Deno.test("planAdapters() on the export picks the layers PEFT picks on the PyTorch model", async () => {
  await withExport("bias-free", async (path) => {
    const m = await openOnnxModel(path);
    const picked = (targetModules: string | string[], layersToTransform?: number[]) =>
      planAdapters(m, { targetModules, r: 2, loraAlpha: 4, layersToTransform }).map((a) =>
        a.layer.name
      );
    const layer = (i: number, ...modules: string[]) =>
      modules.map((s) => `bert.encoder.layer.${i}.${s}`);
    // a list entry matches the whole name or a suffix after a dot
    assertEquals(picked(["intermediate.dense"]), [
      ...layer(0, "intermediate.dense"),
      ...layer(1, "intermediate.dense"),
    ]);
    assertEquals(picked(["query", "value"]), [
      ...layer(0, "attention.self.query", "attention.self.value"),
      ...layer(1, "attention.self.query", "attention.self.value"),
    ]);
    // "dense" is every *.dense, the pooler's too, as in PEFT
    assertEquals(picked(["dense"]), [
      ...layer(0, "attention.output.dense", "intermediate.dense", "output.dense"),
      ...layer(1, "attention.output.dense", "intermediate.dense", "output.dense"),
      "bert.pooler.dense",
    ]);
    // a string is a regular expression over the whole name (re.fullmatch)
    assertEquals(picked(String.raw`.*\.layer\.1\.(attention\.self\.(query|value)|output\.dense)`), [
      ...layer(1, "attention.self.query", "attention.self.value", "output.dense"),
    ]);
    assertEquals(picked(String.raw`.*output\.dense`), [
      ...layer(0, "attention.output.dense", "output.dense"),
      ...layer(1, "attention.output.dense", "output.dense"),
    ]);
    assertThrows(() => picked("intermediate.dense"), RangeError, "match no linear layer");
    assertEquals(picked(["intermediate.dense"], [1]), layer(1, "intermediate.dense"));
    // all-linear leaves out the classifier, as PEFT does for a sequence classifier
    assertEquals(picked("all-linear"), MODULES.slice(0, -1));
  });
});

Deno.test("inspectOnnx() finds a SwiGLU MLP by its gating product when nothing names it", async () => {
  // x + down(silu(gate x) · up x), LLaMA's MLP and residual, as an old export without names
  const w = (i: number, shape: number[]) => f32(`onnx::MatMul_${i}`, shape, Array(12).fill(0.1));
  const m = model({
    nodes: [
      node("MatMul", ["x", "onnx::MatMul_1"], ["g"]),
      node("Sigmoid", ["g"], ["s"]),
      node("Mul", ["g", "s"], ["silu"]),
      node("MatMul", ["x", "onnx::MatMul_2"], ["u"]),
      node("Mul", ["silu", "u"], ["gated"]),
      node("MatMul", ["gated", "onnx::MatMul_3"], ["d"]),
      node("Add", ["x", "d"], ["y"]),
    ],
    inputs: [io("x", ["n", 4])],
    outputs: [io("y", ["n", 4])],
    inits: [w(1, [4, 3]), w(2, [4, 3]), w(3, [3, 4])],
  });
  await withTempDir(async (dir) => {
    const layers = (await inspectOnnx(await writeModel(dir, "swiglu.onnx", m))).linearLayers;
    // the down projection reaches the output only through the residual Add: not a head
    assertEquals(layers.map((l) => `${l.name} ${l.role}`), [
      "onnx::MatMul_1 ffn",
      "onnx::MatMul_2 ffn",
      "onnx::MatMul_3 ffn",
    ]);
  });
});
