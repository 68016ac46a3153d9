/**
 * Builds an analyzed ONNX graph into an ffwd {@link Graph} by replaying its nodes through the
 * builders of `op_map.ts`. Values are created on first use: initializers nobody reads never enter
 * the graph, half-precision ones are cast to float32 right after, integer ones stay folded
 * constants until a node needs them at run time. Linear layers are built here and pass through
 * the hook.
 *
 * @module
 */

import { type Graph, Value } from "../../engine/graph.ts";
import { dimOf, int64s } from "../../engine/ops/constant.ts";
import { add } from "../../engine/ops/elementwise.ts";
import { gemm, matmul } from "../../engine/ops/matmul.ts";
import { concat } from "../../engine/ops/concat.ts";
import { cast, identity, squeeze, transpose } from "../../engine/ops/shape.ts";
import type { BuildOptions, Built } from "../model.ts";
import { isFloat, type Tensor, toFloat32 } from "../../tensor.ts";
import type { Analysis } from "./_analyze.ts";
import { computeDtype, type OpContext, type OpResult } from "./_context.ts";
import { type Folded, foldedOf, isIntDtype, isNumeric, tensorOf } from "./_fold.ts";
import { describeNode, domainOf, readsOf } from "./_graph.ts";
import { onnxLabel } from "../../io/onnx/read.ts";
import { carriedAttrs } from "./_attrs.ts";
import type { LinearMatch } from "./linear.ts";
import { handlerOf } from "./op_map.ts";
import type { NodeProto } from "../../onnx/gen/onnx_pb.ts";

interface Entry {
  value?: Value;
  folded?: Folded;
  /** A constant's host data in its storage dtype. */
  tensor?: Tensor;
  /** The op that left this optional output unproduced. */
  missing?: string;
}

/** Builds the model into `g`; `notes` collects approximations made on the way. */
export function replay(
  a: Analysis,
  tensors: ReadonlyMap<string, Tensor>,
  g: Graph,
  opts: BuildOptions,
  notes: string[],
): Built {
  const entries = new Map<string, Entry>();
  const free = (name: string) => (g.has(name) ? g.freshName(name) : name);
  const inputs = a.inputs.map((d) => g.input(free(d.name), computeDtype(d.dtype), d.shape));
  a.inputs.forEach((d, i) => entries.set(d.name, { value: inputs[i] }));
  const replaced = (name: string) => opts.overrides?.has(name) || opts.trainable?.has(name);
  for (const [name, t] of [...a.constants, ...tensors]) {
    const plain = !replaced(name) && isIntDtype(t.dtype);
    entries.set(name, plain ? { tensor: t, folded: foldedOf(t) } : { tensor: t });
  }
  const file = onnxLabel(a.file);

  const valueOf = (name: string, reader: string): Value => {
    const e = entries.get(name);
    if (!e) throw new TypeError(`Cannot import ${file}: ${reader} reads unknown value "${name}"`);
    if (e.missing) {
      throw new TypeError(
        `Cannot import ${file}: ${reader} reads "${name}", an output ${e.missing} does not produce`,
      );
    }
    return (e.value ??= materialize(name, e));
  };

  const materialize = (name: string, e: Entry): Value => {
    const o = opts.overrides?.get(name);
    if (o !== undefined) {
      const v = o instanceof Value ? o : g.initializer(free(name), o);
      return isFloat(v.dtype) ? cast(v, computeDtype(v.dtype)) : v;
    }
    if (e.tensor && opts.trainable?.has(name)) {
      return g.input(free(name), computeDtype(e.tensor.dtype), e.tensor.shape);
    }
    if (e.tensor) {
      const v = g.initializer(free(name), e.tensor);
      return isFloat(v.dtype) ? cast(v, computeDtype(v.dtype)) : v;
    }
    const f = e.folded!;
    if (isNumeric(f)) return g.initializer(free(name), tensorOf(f));
    return symbolic(f, name);
  };

  /** A shape vector with symbolic elements, read at run time from values that carry them. */
  const symbolic = (f: Folded, name: string): Value => {
    const parts = f.data.map((d) => {
      if (typeof d === "number") return int64s(g, [d]);
      for (const v of [...inputs, ...[...entries.values()].flatMap((e) => e.value ?? [])]) {
        const axis = v.shape.indexOf(d);
        if (axis >= 0) return dimOf(v, axis);
      }
      throw new TypeError(
        `Cannot import ${file}: "${name}" holds symbolic dimension "${d}" at run time, and no ` +
          "value carries it",
      );
    });
    const joined = parts.length === 1 ? parts[0]! : concat(parts, 0);
    const shaped = f.shape.length === 0 ? squeeze(joined, [0]) : joined;
    return cast(shaped, f.dtype);
  };

  const linear = (m: LinearMatch): Value => {
    const l = m.layer;
    const reader = `linear layer "${l.name}"`;
    const x = valueOf(m.x, reader);
    const weight = valueOf(l.weightKey, reader);
    const bias = l.biasKey ? valueOf(l.biasKey, reader) : null;
    const outIn = l.orientation === "out_in";
    let y: Value;
    if (m.kind === "gemm") {
      y = gemm(x, weight, bias, { alpha: l.alpha, beta: l.beta, transB: outIn });
    } else {
      y = matmul(x, outIn ? transpose(weight) : weight);
      if (bias) y = add(y, bias);
    }
    return opts.hook ? opts.hook({ layer: l, x, y, weight, bias }) : y;
  };

  /**
   * A node of the frozen context, carried as the file wrote it: its outputs take the probed dtypes
   * and shapes, and the outer-scope values its subgraphs read keep their names in the graph.
   */
  const carry = (node: NodeProto, where: string): void => {
    const inputs = node.input.map((name) => (name ? valueOf(name, where) : null));
    const reads = readsOf(node).slice(node.input.length).map((name) => {
      const v = valueOf(name, where);
      if (v.name === name) return v;
      if (g.has(name)) {
        throw new TypeError(
          `Cannot import ${file}: ${where}: its subgraph reads "${name}", a name the graph uses ` +
            "for another value",
        );
      }
      return identity(v, name);
    });
    const attrs = carriedAttrs(node);
    if (reads.length) {
      for (const [k, a] of Object.entries(attrs)) {
        if (a.type === "onnx" && (a.value.g || a.value.graphs.length)) attrs[k] = { ...a, reads };
      }
    }
    const last = node.output.findLastIndex((o) => o !== "");
    const specs = node.output.slice(0, last + 1).map((o) => {
      if (o === "") return { dtype: "F32" as const, shape: [] }; // an unused optional output
      const p = a.probed?.get(o);
      if (!p) {
        throw new TypeError(`Cannot import ${file}: ${where}: the shape of "${o}" is unknown`);
      }
      return { dtype: computeDtype(p.dtype), shape: p.shape, name: free(o) };
    });
    const domain = domainOf(node);
    if (domain) g.domains.set(domain, a.opsets.get(domain) ?? 1);
    const outs = g.node(node.opType, inputs, attrs, specs, domain);
    node.output.forEach((o, k) => o && entries.set(o, { value: outs[k]! }));
  };

  const carried = new Set(a.carried);
  a.nodes.forEach((node) => {
    const where = describeNode(node, a.index.get(node) ?? -1);
    const m = a.linear.get(node);
    try {
      if (m) {
        entries.set(m.output, { value: linear(m) });
        return;
      }
      const handler = carried.has(node) ? undefined : handlerOf(domainOf(node), node.opType);
      if (!handler) {
        carry(node, where);
        return;
      }
      let results;
      try {
        results = handler(context(node, where));
      } catch (e) {
        const error = rethrow(e, `Cannot import ${file}: `, where);
        const reason = error.message.slice(`Cannot import ${file}: ${where}: `.length);
        throw new BuilderRefusal(error, node, `${where}: ${reason}`);
      }
      node.output.forEach((o, k) => o && entries.set(o, entryOf(results[k], node.opType)));
    } catch (e) {
      throw rethrow(e, `Cannot import ${file}: `, where);
    }
  });

  const outputs = a.outputs.map((name) => {
    let v = valueOf(name, "the graph's outputs");
    if (v.name !== name) v = identity(v, free(name));
    return g.output(v);
  });
  return { inputs, outputs };

  function context(node: NodeProto, where: string): OpContext {
    const nameOf = (i: number) => node.input[i] ?? "";
    const entry = (i: number) => entries.get(nameOf(i));
    const ctx: OpContext = {
      g,
      node,
      opset: a.opsets.get(domainOf(node)) ?? 1,
      inputCount: node.input.length,
      has: (i) => nameOf(i) !== "",
      value: (i) => {
        if (!ctx.has(i)) ctx.fail(`input ${i} is missing`);
        return valueOf(nameOf(i), where);
      },
      folded: (i) => entry(i)?.folded,
      constant: (i) => {
        const e = entry(i);
        if (!e || replaced(nameOf(i))) return undefined;
        return e.tensor ?? (e.folded && isNumeric(e.folded) ? tensorOf(e.folded) : undefined);
      },
      ints: (i, role) => {
        const f = entry(i)?.folded;
        if (!f || !isNumeric(f)) ctx.fail(`its ${role} (input ${i}) must be constant integers`);
        return f.data as number[];
      },
      scalar: (i) => {
        const t = ctx.constant(i);
        if (!t || t.data.length !== 1) return undefined;
        return isFloat(t.dtype) ? toFloat32(t).data[0]! : Number(t.data[0]);
      },
      shape: (i) => {
        const e = entry(i);
        return e?.folded?.shape ?? e?.tensor?.shape ?? ctx.value(i).shape;
      },
      dtype: (i) => {
        const e = entry(i);
        return e?.value?.dtype ?? e?.tensor?.dtype ?? e?.folded?.dtype ?? ctx.value(i).dtype;
      },
      note: (message) => {
        if (!notes.includes(message)) notes.push(message);
      },
      fail: (why) => {
        throw new TypeError(`Cannot import ${file}: ${where}: ${why}`);
      },
    };
    return ctx;
  }
}

function entryOf(r: OpResult | undefined, op: string): Entry {
  if (r === null || r === undefined) return { missing: op };
  if (r instanceof Value) return { value: r };
  if ("constant" in r) return { tensor: r.constant };
  return { folded: r };
}

/**
 * A builder refused a node (an attribute, input or shape it does not handle). The importer then
 * carries the node as frozen context instead, computed by onnxruntime as the file wrote it.
 */
export class BuilderRefusal extends TypeError {
  /**
   * Wraps `error` (its message names the model and the node).
   *
   * @param error What the builder threw, with the node's context in front.
   * @param node The node refused.
   * @param reason The node and why, without the model's name.
   */
  constructor(error: Error, readonly node: NodeProto, readonly reason: string) {
    super(error.message, { cause: error });
    this.name = "BuilderRefusal";
  }
}

/** The same error class with the node's context in front (errors from `fail` already have it). */
function rethrow(e: unknown, prefix: string, where: string): Error {
  if (!(e instanceof Error)) return new Error(`${prefix}${where}: ${e}`);
  if (e.message.startsWith(prefix)) return e;
  const Ctor = e instanceof TypeError ? TypeError : e instanceof RangeError ? RangeError : Error;
  return new Ctor(`${prefix}${where}: ${e.message}`, { cause: e });
}
