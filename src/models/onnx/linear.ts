/**
 * Linear-layer discovery in ONNX graphs, and stable layer names.
 *
 * Patterns (weights are constants: initializers or `Constant` outputs, possibly behind a
 * `Cast`/`Identity`, as half-precision exports write them):
 * - `Gemm(x, W, b?)` with transA = 0, any transB, alpha, beta: transB = 1 stores W `[out, in]`
 *   (`"out_in"`, PyTorch `nn.Linear`), transB = 0 stores `[in, out]` (`"in_out"`);
 * - `MatMul(x, W)` with W `[in, out]` (`"in_out"`: tf2onnx, keras2onnx, PyTorch's pre-transposed
 *   constants), with or without a following `Add` of a constant bias `[out]`;
 * - `Transpose(W) → MatMul` with W `[out, in]` transposed at run time (`"out_in"`, PyTorch 0.3).
 *
 * Names are the module paths PyTorch gives the layers (`named_modules()`), so that a PEFT adapter
 * trained on the PyTorch model applies to its ONNX export by key:
 * 1. the module path in the initializer names (`fc1` from `fc1.weight` or `fc1.bias`; exporters'
 *    anonymous `onnx::MatMul_123` and constant-folded copies carry none);
 * 2. the module path of the node's scope: the innermost module of the `pkg.torch.onnx.name_scopes`
 *    metadata (`torch.onnx.export(dynamo=True)`, exact), or a TorchScript export's scoped node name
 *    (PyTorch ≥ 1.13, also HF optimum's): `/bert/encoder/layer.0/intermediate/dense/MatMul` →
 *    `bert.encoder.layer.0.intermediate.dense`, `/mlp/mlp.0/Gemm` → `mlp.0`. Torch writes each
 *    module it called by its last non-numeric atom and the numeric ones after it
 *    (`_unqualified_variable_name`, torch/onnx/utils.py), so a Sequential's child `mlp.0` replaces
 *    its parent `mlp`, and containers never called (ModuleList, ModuleDict) add nothing of their
 *    own. When both 1 and 2 exist and the scope's atoms do not all appear, in order, in the path of
 *    1, the weight belongs to another module (tied, as `lm_head` to `wte`, or deduplicated by the
 *    exporter) and the scope wins: PEFT wraps the module that runs the product;
 * 3. the Keras layer from TensorFlow names (tf2onnx, keras2onnx): the path component before
 *    `kernel`, `bias`, `MatMul`, `BiasAdd`, `Tensordot` or `ReadVariableOp` (`sequential/dense/
 *    MatMul/ReadVariableOp:0` → `dense`, `dense_2/kernel:0` → `dense_2`);
 * 4. otherwise the weight initializer's name.
 *
 * A name several layers share (one weight used twice, one module called twice) stays on the first
 * and becomes `name_1`, `name_2`, … on the others, skipping names other layers have on their own,
 * so no layer's name depends on another layer's duplicate.
 *
 * @module
 */

import type { NodeProto } from "../../onnx/gen/onnx_pb.ts";
import type { LinearLayer } from "../model.ts";
import { type DType, isFloat } from "../../tensor.ts";
import { attrFloat, attrInt, attrInts, findAttr } from "./_attrs.ts";
import { domainOf } from "./_graph.ts";

/** A linear layer found in an ONNX graph. */
export interface OnnxLinearLayer extends LinearLayer {
  /** Gemm `alpha` (1 for MatMul): the layer computes `alpha · x·W' + beta · b`. */
  readonly alpha: number;
  /** Gemm `beta` (1 for MatMul). */
  readonly beta: number;
  /** Name of the MatMul or Gemm node (may be empty in old exports). */
  readonly node: string;
}

/** A discovered layer and the nodes it stands for. */
export interface LinearMatch {
  readonly layer: OnnxLinearLayer;
  readonly kind: "gemm" | "matmul";
  /** The MatMul or Gemm node. */
  readonly anchor: NodeProto;
  /** The bias `Add` absorbed after a MatMul. */
  readonly biasAdd?: NodeProto;
  /** Name of the layer's input value. */
  readonly x: string;
  /** Name of the layer's final output (the bias Add's output, or the anchor's). */
  readonly output: string;
}

/** Dtype and shape of a constant value. */
export interface ConstInfo {
  readonly dtype: DType;
  readonly shape: readonly number[];
}

interface Resolved {
  readonly key: string;
  readonly info: ConstInfo;
  readonly transposed: boolean;
}

/**
 * Finds the linear layers of a sorted node list.
 *
 * @example
 * ```ts ignore
 * import { findLinearLayers } from "./linear.ts";
 * const matches = findLinearLayers(nodes, (name) => constants.get(name), new Set(["y"]));
 * matches.map((m) => `${m.layer.name} ${m.layer.orientation}`);
 * ```
 */
export function findLinearLayers(
  nodes: readonly NodeProto[],
  constOf: (name: string) => ConstInfo | undefined,
  graphOutputs: ReadonlySet<string>,
): LinearMatch[] {
  const producer = new Map<string, NodeProto>();
  const uses = new Map<string, NodeProto[]>();
  for (const n of nodes) {
    n.output.forEach((o) => producer.set(o, n));
    for (const i of n.input) uses.set(i, [...(uses.get(i) ?? []), n]);
  }
  const resolve = (name: string, allowTranspose: boolean): Resolved | undefined => {
    let transposed = false;
    for (let hops = 0; hops < 8; hops++) {
      const info = constOf(name);
      if (info) return { key: name, info, transposed };
      const p = producer.get(name);
      if (!p || domainOf(p) !== "") return undefined;
      if (p.opType === "Identity") name = p.input[0]!;
      else if (p.opType === "Cast") name = p.input[0]!;
      else if (p.opType === "Transpose" && allowTranspose && swaps(p)) {
        transposed = !transposed;
        name = p.input[0]!;
      } else return undefined;
    }
    return undefined;
  };
  const matches: Omit<LinearMatch, "layer">[] = [];
  const layers: Omit<OnnxLinearLayer, "name">[] = [];
  for (const n of nodes) {
    if (domainOf(n) !== "" || (n.opType !== "Gemm" && n.opType !== "MatMul")) continue;
    const [x, b, c] = n.input;
    if (!x || !b || constOf(x)) continue;
    const w = resolve(b, true);
    if (!w || w.info.shape.length !== 2 || !isFloat(w.info.dtype)) continue;
    if (w.info.shape.some((d) => d === 0)) continue; // zero-size placeholders are not layers
    const gemm = n.opType === "Gemm";
    if (gemm && attrInt(n, "transA", 0) !== 0) continue;
    const outIn = gemm ? (attrInt(n, "transB", 0) === 1) !== w.transposed : w.transposed;
    const [d0, d1] = w.info.shape as [number, number];
    const [inF, outF] = outIn ? [d1, d0] : [d0, d1];
    let bias: Resolved | undefined;
    let biasAdd: NodeProto | undefined;
    if (gemm && c) {
      bias = resolve(c, false);
      if (!bias || !isBias(bias.info, outF, 2)) continue; // C is data, not a bias
    } else if (!gemm) {
      const out = n.output[0]!;
      const consumers = uses.get(out) ?? [];
      const add = consumers[0];
      if (
        consumers.length === 1 && !graphOutputs.has(out) && add && add.opType === "Add" &&
        domainOf(add) === "" && !findAttr(add, "axis")
      ) {
        const other = add.input[0] === out ? add.input[1] : add.input[0];
        const r = other && other !== out ? resolve(other, false) : undefined;
        if (r && isBias(r.info, outF, Infinity)) {
          bias = r;
          biasAdd = add;
        }
      }
    }
    matches.push({
      kind: gemm ? "gemm" : "matmul",
      anchor: n,
      biasAdd,
      x,
      output: (biasAdd ?? n).output[0]!,
    });
    layers.push({
      inFeatures: inF,
      outFeatures: outF,
      orientation: outIn ? "out_in" : "in_out",
      weightKey: w.key,
      ...(bias ? { biasKey: bias.key } : {}),
      dtype: w.info.dtype,
      alpha: gemm ? attrFloat(n, "alpha", 1) : 1,
      beta: gemm && bias ? attrFloat(n, "beta", 1) : 1,
      node: n.name,
    });
  }
  const names = uniqueNames(matches.map((m, i) => {
    const l = layers[i]!;
    return layerName(l.weightKey, l.biasKey, m.biasAdd ? [m.anchor, m.biasAdd] : [m.anchor]);
  }));
  return matches.map((m, i) => ({ ...m, layer: { name: names[i]!, ...layers[i]! } }));
}

/** Each name as it is on its first use, `name_k` (k = 1, 2, …) on the next, never another's. */
function uniqueNames(bases: readonly string[]): string[] {
  const taken = new Set(bases);
  const seen = new Set<string>();
  return bases.map((base) => {
    if (!seen.has(base)) {
      seen.add(base);
      return base;
    }
    let k = 1;
    while (taken.has(`${base}_${k}`)) k++;
    taken.add(`${base}_${k}`);
    return `${base}_${k}`;
  });
}

/** Whether a Transpose swaps the two axes of a matrix. */
function swaps(t: NodeProto): boolean {
  const perm = attrInts(t, "perm");
  return !perm || (perm.length === 2 && perm[0] === 1 && perm[1] === 0);
}

/** A bias is `[out]`, or `[1, …, 1, out]` no longer than the output's rank. */
function isBias(info: ConstInfo, out: number, maxRank: number): boolean {
  const s = info.shape;
  return isFloat(info.dtype) && s.length >= 1 && s.length <= maxRank && s[s.length - 1] === out &&
    s.slice(0, -1).every((d) => d === 1);
}

const TF_MARKERS = new Set(["kernel", "bias", "MatMul", "BiasAdd", "Tensordot", "ReadVariableOp"]);

/** A node, or only its name. */
type NodeLike = string | Pick<NodeProto, "name" | "metadataProps">;

/**
 * The name of a layer from its weight and bias keys and its nodes (the MatMul or Gemm, then the
 * bias Add), see the module documentation for the rules. Names the layer, not unique yet.
 *
 * @example
 * ```ts
 * import { layerName } from "./linear.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(layerName("fc1.weight"), "fc1");
 * strictEqual(layerName("onnx::MatMul_14", undefined, ["/mlp/mlp.0/MatMul"]), "mlp.0");
 * // a weight tied to another module's: the scope names the module that runs it
 * strictEqual(layerName("transformer.wte.weight", undefined, ["/lm_head/MatMul"]), "lm_head");
 * strictEqual(layerName("sequential/dense/MatMul/ReadVariableOp:0"), "dense");
 * ```
 */
export function layerName(
  weightKey: string,
  biasKey?: string,
  nodes: readonly NodeLike[] = [],
): string {
  const owner = [weightKey, biasKey].map((key) =>
    key && !key.startsWith("onnx::") ? /^(.+)\.(weight|bias)$/.exec(key)?.[1] : undefined
  ).find((path) => path !== undefined);
  const scope = nodes.map((n) =>
    typeof n === "string" ? torchScope(n) : dynamoScope(n) ?? torchScope(n.name)
  ).find((path) => path !== undefined);
  if (owner !== undefined && (scope === undefined || within(owner, scope))) return owner;
  if (scope !== undefined) return scope;
  const names = nodes.map((n) => typeof n === "string" ? n : n.name);
  for (const key of [weightKey, biasKey, ...names]) {
    const layer = key ? kerasLayer(key) : undefined;
    if (layer) return layer;
  }
  return weightKey;
}

/** Whether the atoms of `scope` appear in `path` in order: the scope's module, or one inside it. */
function within(path: string, scope: string): boolean {
  const atoms = path.split(".");
  let at = 0;
  for (const atom of scope.split(".")) {
    at = atoms.indexOf(atom, at) + 1;
    if (at === 0) return false;
  }
  return true;
}

/**
 * The innermost module of a dynamo export's `pkg.torch.onnx.name_scopes`, the Python repr of the
 * cumulative module paths, root first, node last: `['', 'network', 'network.0', 'linear']`.
 */
function dynamoScope(node: Pick<NodeProto, "metadataProps">): string | undefined {
  const value = node.metadataProps.find((p) => p.key === "pkg.torch.onnx.name_scopes")?.value;
  const scopes = [...(value ?? "").matchAll(/'([^']*)'|"([^"]*)"/g)].map((m) => m[1] ?? m[2]!);
  return scopes.length >= 3 && scopes.at(-2) ? scopes.at(-2) : undefined;
}

/** Module path of a PyTorch scoped node name: `/model/layers.0/mlp/MatMul` → `model.layers.0.mlp`. */
function torchScope(node: string): string | undefined {
  if (!node.startsWith("/")) return undefined;
  const parts = node.split("/").filter((p) => p !== "").slice(0, -1);
  const path: string[] = [];
  for (const p of parts) {
    // A Sequential's child is scoped `mlp/mlp.0`: the child's name extends its parent's.
    const last = path[path.length - 1];
    if (last !== undefined && p.startsWith(last + ".") && /^(\.\d+)+$/.test(p.slice(last.length))) {
      path[path.length - 1] = p;
    } else path.push(p);
  }
  return path.length ? path.join(".") : undefined;
}

/** Keras layer name in a TensorFlow tensor or node name. */
function kerasLayer(name: string): string | undefined {
  const parts = name.replace(/:\d+$/, "").split("/");
  const i = parts.findIndex((p) => TF_MARKERS.has(p));
  return i >= 1 ? parts[i - 1] : undefined;
}
