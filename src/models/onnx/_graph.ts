/**
 * Graph-level preparation of an ONNX graph before import: stable topological sorting (exporters
 * do not always write nodes in order), cutting `ai.onnx.ml` post-processing off the network, and
 * keeping only the nodes the outputs need.
 *
 * @module
 */

import type { GraphProto, NodeProto } from "../../onnx/gen/onnx_pb.ts";

/** The default domain is written `""` or `"ai.onnx"`. */
export function domainOf(node: NodeProto): string {
  return node.domain === "ai.onnx" ? "" : node.domain;
}

/** `domain.Op` for messages and histograms (`Op` alone in the default domain). */
export function qualifiedOp(node: NodeProto): string {
  const d = domainOf(node);
  return d ? `${d}.${node.opType}` : node.opType;
}

/** `node "name" (Op)` or `node #3 (Op)` for messages. */
export function describeNode(node: NodeProto, index: number): string {
  return `${node.name ? `node "${node.name}"` : `node #${index}`} (${qualifiedOp(node)})`;
}

/**
 * The values a node reads: its inputs, and the outer-scope names its subgraphs (If's branches,
 * Loop's and Scan's bodies) read without defining them, which ONNX leaves implicit.
 */
export function readsOf(node: NodeProto): string[] {
  const outer = node.attribute.flatMap((a) => [...(a.g ? [a.g] : []), ...a.graphs])
    .flatMap((g) => outerNames(g));
  return outer.length ? [...node.input, ...new Set(outer)] : [...node.input];
}

/** Names a subgraph reads from the scope around it. */
function outerNames(g: GraphProto): string[] {
  const defined = new Set([...g.input.map((v) => v.name), ...g.initializer.map((t) => t.name)]);
  const out: string[] = [];
  for (const n of g.node) {
    for (const name of readsOf(n)) if (name && !defined.has(name)) out.push(name);
    for (const o of n.output) defined.add(o);
  }
  return out;
}

/**
 * Sorts nodes so each comes after the producers of its inputs, keeping the file order where it
 * is already valid (Kahn's algorithm, always taking the earliest ready node). `available` holds
 * the graph inputs and initializers. Throws a `SyntaxError` naming the model (`label`) and the
 * node for an input nobody produces, and for cycles.
 */
export function sortNodes(
  nodes: readonly NodeProto[],
  available: ReadonlySet<string>,
  label: string,
): NodeProto[] {
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((o) => o && producer.set(o, i)));
  const waiting = nodes.map(() => 0);
  const consumers = nodes.map((): number[] => []);
  nodes.forEach((n, i) => {
    for (const name of new Set(readsOf(n))) {
      if (name === "" || available.has(name)) continue;
      const p = producer.get(name);
      if (p === undefined) {
        throw new SyntaxError(
          `Cannot import ${label}: ${
            describeNode(n, i)
          } reads "${name}", which no node, input or initializer provides`,
        );
      }
      waiting[i]!++;
      consumers[p]!.push(i);
    }
  });
  const ready: number[] = [];
  waiting.forEach((w, i) => w === 0 && ready.push(i));
  const order: NodeProto[] = [];
  while (ready.length) {
    // The smallest index first: a sorted file keeps its order.
    let k = 0;
    for (let j = 1; j < ready.length; j++) if (ready[j]! < ready[k]!) k = j;
    const i = ready.splice(k, 1)[0]!;
    order.push(nodes[i]!);
    for (const c of consumers[i]!) if (--waiting[c]! === 0) ready.push(c);
  }
  if (order.length !== nodes.length) {
    const stuck = nodes.findIndex((_, i) => waiting[i]! > 0);
    throw new SyntaxError(
      `Cannot import ${label}: the graph has a cycle through ${describeNode(nodes[stuck]!, stuck)}`,
    );
  }
  return order;
}

/** The result of {@link cutPostProcessing}. */
export interface Cut {
  /** Outputs of the network once the post-processing is gone. */
  readonly outputs: string[];
  /** What was cut, for `model.notes`; empty when nothing was. */
  readonly note?: string;
}

/**
 * Cuts `ai.onnx.ml` post-processing (ZipMap, ArrayFeatureExtractor, LabelEncoder, …) and
 * everything downstream of it off the graph. The float tensors that flowed into the cut part
 * become the network's outputs, in place of the outputs it produced: an skl2onnx MLP classifier
 * ends at its probabilities. `ai.onnx.ml` preprocessing (a Scaler reading the graph's inputs)
 * is not cut: it stays, and fails the import as an unsupported op.
 */
export function cutPostProcessing(
  nodes: readonly NodeProto[],
  outputs: readonly string[],
  inputs: ReadonlySet<string>,
  isFloat: (name: string) => boolean,
): Cut {
  const cutValues = new Set<string>();
  const cutNodes: NodeProto[] = [];
  const pre = new Set(inputs); // values computed from the inputs by ai.onnx.ml nodes only
  for (const n of nodes) {
    const ml = domainOf(n) === "ai.onnx.ml";
    if (ml && n.input.some((i) => pre.has(i)) && !n.input.some((i) => cutValues.has(i))) {
      n.output.forEach((o) => pre.add(o));
      continue;
    }
    if (ml || n.input.some((i) => cutValues.has(i))) {
      cutNodes.push(n);
      n.output.forEach((o) => cutValues.add(o));
    }
  }
  if (cutNodes.length === 0) return { outputs: [...outputs] };
  const kept = outputs.filter((o) => !cutValues.has(o));
  const added: string[] = [];
  const produced = new Set(nodes.filter((n) => !cutNodes.includes(n)).flatMap((n) => n.output));
  for (const n of cutNodes) {
    for (const i of n.input) {
      if (produced.has(i) && isFloat(i) && !kept.includes(i) && !added.includes(i)) {
        added.push(i);
      }
    }
  }
  const ops = [...new Set(cutNodes.map((n) => qualifiedOp(n)))].join(", ");
  const dropped = outputs.filter((o) => cutValues.has(o));
  const note = `Cut off post-processing after the network (${ops}): outputs ${
    list(dropped)
  } dropped${added.length ? `, ${list(added)} output instead` : ""}`;
  return { outputs: [...kept, ...added], note };
}

const list = (names: readonly string[]) => names.map((n) => `"${n}"`).join(", ") || "none";

/**
 * The nodes needed to compute `outputs`, in order. `depsOf` gives the names a node reads (a
 * fused linear layer reads its input and weights, not the nodes it absorbed).
 */
export function neededNodes(
  nodes: readonly NodeProto[],
  outputs: readonly string[],
  depsOf: (n: NodeProto) => readonly string[],
  producerOf: (name: string) => NodeProto | undefined,
): Set<NodeProto> {
  const needed = new Set<NodeProto>();
  const stack = [...outputs];
  while (stack.length) {
    const p = producerOf(stack.pop()!);
    if (!p || needed.has(p)) continue;
    needed.add(p);
    for (const i of depsOf(p)) if (i) stack.push(i);
  }
  return new Set(nodes.filter((n) => needed.has(n)));
}
