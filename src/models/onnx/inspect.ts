/**
 * A JSON-able summary of an ONNX file for `ffwd inspect`: producer, opsets, op histogram,
 * inputs and outputs, initializers, linear layers with their orientation and role, the frozen
 * context (nodes without a builder, run as they are) and import notes. Reads no tensor data.
 *
 * Each linear layer gets a role, `attention`, `ffn`, `head` or `other`, from its name first
 * (module paths as PyTorch names them, see `linear.ts`), then from its place in the graph:
 * 1. name: the outermost atom of the path (split at `.`, a `_N` suffix dropped) that names a part
 *    decides: head `classifier`, `pre_classifier`, `lm_head`, `pooler`, `score`, `qa_outputs`,
 *    `cls`, `head`; attention `attention`, `attn`, `self_attn`, `self_attention`, `cross_attn`,
 *    `crossattention`, `encoder_attn`, T5's `SelfAttention`, `EncDecAttention`; ffn `mlp`, `ffn`,
 *    `feed_forward`, `intermediate`, T5's `DenseReluDense`, `block_sparse_moe`, `experts`. So
 *    `classifier.out_proj` is head, `attention.output.dense` attention, `mlp.c_proj` ffn. Else the
 *    last atom: attention `query`, `key`, `value`, `q_proj`, `k_proj`, `v_proj`, `o_proj`,
 *    `out_proj`, `qkv_proj`, `c_attn`, `query_key_value`, DistilBERT's `q_lin`, `k_lin`, `v_lin`,
 *    `out_lin`; ffn `gate_proj`, `up_proj`, `down_proj`, `gate_up_proj`, `fc1`, `fc2`, `c_fc`,
 *    `lin1`, `lin2`, `dense_h_to_4h`, `dense_4h_to_h`. And BERT's `P.output.dense` is ffn when
 *    `P.intermediate.dense` is a layer too. A name that says any of this decides, even where the
 *    graph would say otherwise (the output layer of a whole model named `mlp` is ffn);
 * 2. graph position, for names that say none of it (`fc3`, `dense_2`, `W1`, `onnx::MatMul_7`):
 *    - attention: the output reaches a product of two activations (Q·Kᵀ, P·V) or an attention op
 *      through shape ops only (q, k, v), or the input comes from one that way (the output);
 *    - head: the output reaches a graph output without crossing another linear layer or an `Add`
 *      (`Sub`, `Sum`) that mixes in other activations (a transformer's residual stream);
 *    - ffn: an activation (or a gating product with another activation, as in SwiGLU) lies
 *      between its output and another linear layer, or between another linear layer's output and
 *      its input, with only element-wise ops and normalizations on the way;
 *    - other: the rest.
 *
 * @module
 */

import type { Dim } from "../../engine/graph.ts";
import type { NodeProto } from "../../onnx/gen/onnx_pb.ts";
import { type Analysis, analyze } from "./_analyze.ts";
import { describeNode, readsOf } from "./_graph.ts";
import type { LinearMatch } from "./linear.ts";
import { readOnnxFile } from "../../io/onnx/read.ts";

/** What a linear layer does in its model (see the module documentation for the rules). */
export type LayerRole = OnnxSummary["linearLayers"][number]["role"];

/**
 * The roles in the order `ffwd inspect` groups layers by.
 *
 * @example
 * ```ts
 * import { LAYER_ROLES } from "./inspect.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(LAYER_ROLES.join(), "attention,ffn,head,other");
 * ```
 */
export const LAYER_ROLES: readonly LayerRole[] = ["attention", "ffn", "head", "other"];

/** The summary {@link inspectOnnx} returns; every field is plain JSON. */
export interface OnnxSummary {
  /** Absolute path of the model file. */
  readonly path: string;
  /** Always `"onnx"`, to tell summaries of different formats apart. */
  readonly format: "onnx";
  /** The ONNX IR version of the file. */
  readonly irVersion: number;
  /** The exporter named in the file (`producer_name`, `producer_version`). */
  readonly producer: { readonly name: string; readonly version: string };
  /** Opset version per domain (`""` is the default ONNX domain). */
  readonly opsets: readonly { readonly domain: string; readonly version: number }[];
  /** Node count per op type over the whole file (`Op`, or `domain.Op` outside the default). */
  readonly ops: Readonly<Record<string, number>>;
  /** The graph inputs that are not initializers; string dimensions are symbolic. */
  readonly inputs: readonly {
    readonly name: string;
    readonly dtype: string;
    readonly shape: Dim[];
  }[];
  /** Names of the network's outputs, after post-processing (`ai.onnx.ml`) is cut off. */
  readonly outputs: readonly string[];
  /** Every initializer's name, storage dtype, shape, byte size and external location. */
  readonly initializers: readonly {
    readonly name: string;
    readonly dtype: string;
    readonly shape: number[];
    readonly bytes: number;
    readonly external?: {
      readonly location: string;
      readonly offset: number;
      readonly length?: number;
    };
  }[];
  /** The linear layers an import would find, with the MatMul or Gemm node of each. */
  readonly linearLayers: readonly {
    readonly name: string;
    readonly inFeatures: number;
    readonly outFeatures: number;
    readonly orientation: "out_in" | "in_out";
    readonly weightKey: string;
    readonly biasKey?: string;
    readonly dtype: string;
    readonly node: string;
    /** What the layer does, by its name or else its place in the graph (see the module docs). */
    readonly role: "attention" | "ffn" | "head" | "other";
  }[];
  /**
   * Needed nodes ffwd has no builder for, as `node "name" (Op)`: they run as frozen context, as the
   * file wrote them, and no gradient crosses them.
   */
  readonly frozen: readonly string[];
  /** What an import would change or cut off, one sentence each. */
  readonly notes: readonly string[];
}

/**
 * Summarizes an ONNX file without building it. Unsafe external data locations still throw.
 *
 * @example
 * ```ts
 * import { inspectOnnx } from "./inspect.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const s = await inspectOnnx("fixtures/mnist/base.onnx");
 * deepStrictEqual(s.linearLayers.map((l) => `${l.name} ${l.role}`), [
 *   "fc1 ffn",
 *   "fc2 ffn",
 *   "fc3 head", // no name says so: the layer that makes the output
 * ]);
 * ```
 */
export async function inspectOnnx(path: string): Promise<OnnxSummary> {
  const a = analyze(await readOnnxFile(path));
  const p = a.file.proto;
  const roles = layerRoles(a);
  return {
    path: a.file.path,
    format: "onnx",
    irVersion: Number(p.irVersion),
    producer: { name: p.producerName, version: p.producerVersion },
    opsets: [...a.opsets].map(([domain, version]) => ({ domain, version })),
    ops: { ...a.histogram },
    inputs: a.inputs.map((i) => ({ name: i.name, dtype: i.dtype, shape: [...i.shape] })),
    outputs: [...a.outputs],
    initializers: a.initializerInfo.map((i) => ({
      name: i.name,
      dtype: i.dtype,
      shape: [...i.shape],
      bytes: i.bytes,
      ...(i.external
        ? {
          external: {
            location: i.external.location,
            offset: i.external.offset,
            ...(i.external.length !== undefined ? { length: i.external.length } : {}),
          },
        }
        : {}),
    })),
    linearLayers: [...a.linear.values()].map(({ layer: l }, i) => ({
      name: l.name,
      inFeatures: l.inFeatures,
      outFeatures: l.outFeatures,
      orientation: l.orientation,
      weightKey: l.weightKey,
      ...(l.biasKey ? { biasKey: l.biasKey } : {}),
      dtype: l.dtype,
      node: l.node,
      role: roles[i]!,
    })),
    frozen: a.carried.map((n) => describeNode(n, a.index.get(n) ?? -1)),
    notes: [...a.notes],
  };
}

const words = (s: string): ReadonlySet<string> => new Set(s.split(" "));
const HEAD_SCOPES = words("classifier pre_classifier lm_head pooler score qa_outputs cls head");
const ATTENTION_SCOPES = words(
  "attention attn self_attn self_attention cross_attn crossattention encoder_attn SelfAttention " +
    "EncDecAttention",
);
const FFN_SCOPES = words(
  "mlp ffn feed_forward intermediate DenseReluDense block_sparse_moe experts",
);
const ATTENTION_LEAVES = words(
  "query key value q_proj k_proj v_proj o_proj out_proj qkv_proj c_attn query_key_value q_lin " +
    "k_lin v_lin out_lin",
);
const FFN_LEAVES = words(
  "gate_proj up_proj down_proj gate_up_proj fc1 fc2 c_fc lin1 lin2 dense_h_to_4h dense_4h_to_h",
);

/** The role a module path names, or undefined when it names none. */
function roleByName(name: string, names: ReadonlySet<string>): LayerRole | undefined {
  const atoms = name.split(".").map((a) => a.replace(/_\d+$/, ""));
  for (const atom of atoms) {
    if (HEAD_SCOPES.has(atom)) return "head";
    if (ATTENTION_SCOPES.has(atom)) return "attention";
    if (FFN_SCOPES.has(atom)) return "ffn";
  }
  const leaf = atoms.findLast((a) => !/^\d+$/.test(a)) ?? "";
  if (ATTENTION_LEAVES.has(leaf)) return "attention";
  if (FFN_LEAVES.has(leaf)) return "ffn";
  const bert = /^(|.*\.)output\.dense$/.exec(name);
  return bert && names.has(`${bert[1]}intermediate.dense`) ? "ffn" : undefined;
}

/** Ops an attention's q, k, v and output pass through: reshapes, head splits, scaling, RoPE. */
const SHAPE_OPS = words(
  "Reshape Transpose Split Slice Squeeze Unsqueeze Identity Cast Concat Gather Expand Mul Div " +
    "Add Sub Neg",
);
/** Activations, and the element-wise ops and normalizations an FFN may put around them. */
const ACTIVATIONS = words(
  "Relu Gelu FastGelu BiasGelu QuickGelu Sigmoid Tanh Erf Softplus LeakyRelu Elu Selu Celu " +
    "PRelu HardSigmoid HardSwish Mish Clip",
);
const ELEMENTWISE: ReadonlySet<string> = new Set([
  ...ACTIVATIONS,
  ...words(
    "Identity Cast Dropout Mul Div Add Sub Neg Pow Sqrt Exp Log Abs Reciprocal ReduceMean " +
      "LayerNormalization SimplifiedLayerNormalization RMSNormalization BatchNormalization",
  ),
]);
const ATTENTION_OPS = words(
  "Attention MultiHeadAttention GroupQueryAttention DecoderMaskedMultiHeadAttention",
);
/** Ops that join values: where one joins an activation from elsewhere, a walk stops. */
const JOINS = words("Add Sub Sum");

/** What the position rules read of an analysis. */
interface Flow {
  /** The needed nodes, sorted; a linear layer stands as its final node (see `Analysis.linear`). */
  readonly nodes: readonly NodeProto[];
  readonly linear: ReadonlyMap<NodeProto, LinearMatch>;
  /** Values computed from a graph input (activations, not constants). */
  readonly dynamic: ReadonlySet<string>;
  readonly producer: ReadonlyMap<string, NodeProto>;
  readonly outputs: ReadonlySet<string>;
}

/** What a node reads; a linear layer's final node reads the layer's input. */
const readsIn = (flow: Flow, n: NodeProto): readonly string[] => {
  const m = flow.linear.get(n);
  return m ? [m.x] : n.input;
};

/** The role of each linear layer of `a.linear`, in its order. */
function layerRoles(a: Analysis): LayerRole[] {
  const dynamic = new Set(a.inputs.map((i) => i.name));
  const producer = new Map<string, NodeProto>();
  const flow: Flow = {
    nodes: a.nodes,
    linear: a.linear,
    dynamic,
    producer,
    outputs: new Set(a.outputs),
  };
  for (const n of a.nodes) {
    const live = [...readsIn(flow, n), ...readsOf(n)].some((i) => dynamic.has(i));
    for (const o of n.output) {
      producer.set(o, n);
      if (live) dynamic.add(o);
    }
  }
  const ffn = new Set<NodeProto>(); // final nodes at either end of Linear → activation → Linear
  for (const [final, m] of a.linear) {
    for (const stop of walk(flow, m.output, ELEMENTWISE).stops) {
      if (stop.activated && a.linear.has(stop.node)) ffn.add(final).add(stop.node);
    }
  }
  const names = new Set([...a.linear.values()].map((m) => m.layer.name));
  return [...a.linear].map(([final, m]) =>
    roleByName(m.layer.name, names) ?? roleByPosition(flow, m, ffn.has(final))
  );
}

function roleByPosition(flow: Flow, m: LinearMatch, ffn: boolean): LayerRole {
  const core = (n: NodeProto) =>
    ATTENTION_OPS.has(n.opType) ||
    (n.opType === "MatMul" && !flow.linear.has(n) && n.input.every((i) => flow.dynamic.has(i)));
  if (walk(flow, m.output, SHAPE_OPS).stops.some((s) => core(s.node))) return "attention";
  let x = m.x;
  for (let hops = 0, p = flow.producer.get(x); p && hops < 8; hops++, p = flow.producer.get(x)) {
    if (core(p)) return "attention";
    if (!/^(Reshape|Transpose|Squeeze|Unsqueeze|Identity|Cast)$/.test(p.opType)) break;
    x = p.input[0]!;
  }
  const { reached } = walk(flow, m.output);
  if ([...reached.keys()].some((v) => flow.outputs.has(v))) return "head";
  return ffn ? "ffn" : "other";
}

/**
 * Follows `start` forward in one pass over the sorted nodes, through the ops `through` names (all
 * when absent) but never across a linear layer, nor a join with an activation from elsewhere.
 * `reached` maps each value reached to whether an activation lies on the way; `stops` are the
 * nodes met and not crossed, with the same flag.
 */
function walk(flow: Flow, start: string, through?: ReadonlySet<string>) {
  const reached = new Map<string, boolean>([[start, false]]);
  const stops: { node: NodeProto; activated: boolean }[] = [];
  for (const n of flow.nodes) {
    const ins = readsIn(flow, n);
    const from = ins.filter((i) => reached.has(i));
    if (from.length === 0) continue;
    const activated = from.some((i) => reached.get(i));
    const elsewhere = ins.some((i) => !reached.has(i) && flow.dynamic.has(i));
    if (
      flow.linear.has(n) || (through && !through.has(n.opType)) ||
      (elsewhere && JOINS.has(n.opType))
    ) {
      stops.push({ node: n, activated });
      continue;
    }
    // A product with another activation gates (GLU): it counts as the activation.
    const now = activated || ACTIVATIONS.has(n.opType) || (elsewhere && n.opType === "Mul");
    for (const o of n.output) if (o) reached.set(o, now);
  }
  return { reached, stops };
}
