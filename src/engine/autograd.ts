/**
 * Reverse-mode automatic differentiation over the graph IR.
 *
 * `grad(loss, wrt)` appends the backward pass for exactly the requested values: a node is
 * differentiated only when it lies on a path from some requested value to the loss, and each
 * VJP is told which of its inputs need a gradient. Frozen weights therefore never get a weight
 * gradient. Contributions to a value used several times are summed.
 *
 * @module
 */

import type { Node, Value } from "./graph.ts";
import { add } from "./ops/elementwise.ts";
import { onesLike, zerosLike } from "./ops/constant.ts";
import { VJP_TABLE } from "./ops/table.ts";
import { sameShape } from "./shapes.ts";

/** Options of {@link grad}. */
export interface GradOptions {
  /** Gradient flowing into `loss` (defaults to ones, i.e. d loss / d loss = 1). */
  seed?: Value;
  /** Prefix of the names of the returned gradients (default `"d"`: `d.fc1.lora_A`). */
  prefix?: string;
}

const FLOATS = new Set(["F32", "F64", "F16", "BF16"]);

/**
 * Appends the backward pass of `loss` with respect to each of `wrt`, returning one gradient per
 * requested value (zeros where the loss does not depend on it).
 *
 * @example
 * ```ts
 * import { Graph } from "./graph.ts";
 * import { grad } from "./autograd.ts";
 * import { matmul } from "./ops/matmul.ts";
 * import { reduceSum } from "./ops/reduce.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 3]);
 * const w = g.input("w", "F32", [3, 2]);
 * const [dw] = grad(reduceSum(matmul(x, w)), [w]);
 * ```
 */
export function grad(loss: Value, wrt: readonly Value[], opts: GradOptions = {}): Value[] {
  const g = loss.graph;
  checkArguments(loss, wrt, opts.seed);
  const targets = new Set(wrt);
  const onPath = dependsOn(g.nodes, targets);
  const toLoss = ancestorsOf(loss);
  const grads = new Map<Value, Value>();
  grads.set(loss, opts.seed ?? onesLike(loss));
  // Snapshot: the backward nodes appended below must not be visited.
  const forward = g.nodes.slice();
  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i]!;
    if (!toLoss.has(node)) continue;
    const dy = node.outputs.map((o) => grads.get(o) ?? null);
    if (dy.every((d) => d === null)) continue;
    const needs = node.inputs.map((v) => v !== null && onPath.has(v) && FLOATS.has(v.dtype));
    if (!needs.some(Boolean)) continue;
    const vjp = node.domain === "" ? VJP_TABLE[node.op] : undefined;
    if (!vjp) throw noGradientRule(forward, toLoss, wrt);
    const contributions = vjp({ node, dy, needs });
    node.inputs.forEach((v, j) => {
      const c = contributions[j];
      if (!v || !needs[j] || !c) return;
      const prev = grads.get(v);
      grads.set(v, prev ? add(prev, c) : c); // fan-out: contributions accumulate
    });
  }
  const prefix = opts.prefix ?? "d";
  return wrt.map((w) => {
    const d = grads.get(w) ?? zerosLike(w);
    return g.node("Identity", [d], {}, [{
      dtype: d.dtype,
      shape: w.shape,
      name: uniqueName(w, prefix),
    }])[0]!;
  });
}

function checkArguments(loss: Value, wrt: readonly Value[], seed: Value | undefined): void {
  for (const w of wrt) {
    if (w.graph !== loss.graph) {
      throw new TypeError(
        `Cannot differentiate with respect to "${w.name}": it is in another graph`,
      );
    }
  }
  if (!FLOATS.has(loss.dtype)) {
    throw new TypeError(
      `Cannot differentiate "${loss.name}" of dtype ${loss.dtype}: expected a float`,
    );
  }
  if (
    seed &&
    (seed.graph !== loss.graph || seed.dtype !== loss.dtype || !sameShape(seed.shape, loss.shape))
  ) {
    throw new TypeError(
      `Cannot seed the gradient of "${loss.name}": expected ${loss.dtype} ${loss}, got ${seed.dtype} ${seed}`,
    );
  }
}

const hasVjp = (n: Node) => n.domain === "" && VJP_TABLE[n.op] !== undefined;

/**
 * The error for a gradient that would cross ops without a gradient rule (a convolution or an LSTM
 * carried from an imported model, say): it names the first such node, the requested values whose
 * path to the loss crosses one, and those whose path does not.
 */
function noGradientRule(
  forward: readonly Node[],
  toLoss: ReadonlySet<Node>,
  wrt: readonly Value[],
): TypeError {
  const crossed = (w: Value): Node | undefined => {
    const reach = dependsOn(forward, new Set([w]));
    return forward.find((n) =>
      toLoss.has(n) && !hasVjp(n) &&
      n.inputs.some((v) => v !== null && reach.has(v) && FLOATS.has(v.dtype))
    );
  };
  const blocked = new Map<Node, string[]>();
  const clear: string[] = [];
  for (const w of wrt) {
    const n = crossed(w);
    if (n) blocked.set(n, [...blocked.get(n) ?? [], w.name]);
    else clear.push(w.name);
  }
  const [node, names] = [...blocked].sort(([a], [b]) =>
    forward.indexOf(a) - forward.indexOf(b)
  )[0]!;
  const op = node.domain ? `${node.domain}.${node.op}` : node.op;
  const list = (xs: readonly string[]) =>
    xs.slice(0, 6).map((x) => `"${x}"`).join(", ") + (xs.length > 6 ? `, … (${xs.length})` : "");
  return new TypeError(
    `Cannot differentiate ${op} (node ${node.name}): it has no gradient rule, and the gradient of ` +
      `${list(names)} would have to cross it on the way to the loss; ${
        clear.length
          ? `these can train: ${list(clear)}`
          : "nothing requested lies after it: put adapters on layers between it and the loss"
      }`,
  );
}

function uniqueName(w: Value, prefix: string): string {
  const base = `${prefix}.${w.name}`;
  return w.graph.has(base) ? w.graph.freshName(base) : base;
}

/** Values that depend on any of `sources` (including the sources themselves). */
function dependsOn(nodes: readonly Node[], sources: ReadonlySet<Value>): Set<Value> {
  const reached = new Set<Value>(sources);
  for (const n of nodes) {
    if (n.inputs.some((v) => v !== null && reached.has(v))) {
      // A detached value is a constant to the autograd: nothing flows back through it.
      for (const o of n.outputs) if (!o.detached) reached.add(o);
    }
  }
  return reached;
}

/** Nodes that the value `v` depends on. */
function ancestorsOf(v: Value): Set<Node> {
  const seen = new Set<Node>();
  const stack = [v];
  while (stack.length) {
    const p = stack.pop()!.producer;
    if (!p || seen.has(p)) continue;
    seen.add(p);
    for (const i of p.inputs) if (i) stack.push(i);
  }
  return seen;
}
