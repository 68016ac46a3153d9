/**
 * One compiled training step: forward, loss and the backward for the trainable parameters only,
 * emitted once into one ONNX graph and run as one `session.run` per step. The base weights stay
 * inside the session; only the batch and the (small) parameters cross per step.
 *
 * @module
 */

import type * as ort from "npm:onnxruntime-node@1.30.0";
import { grad } from "../engine/autograd.ts";
import type { Graph, Value } from "../engine/graph.ts";
import { add, mul } from "../engine/ops/elementwise.ts";
import { reduceSum } from "../engine/ops/reduce.ts";
import { type OrtTensor, Session, type SessionOptions, toOrt } from "../engine/runtime.ts";
import type { Tensor } from "../tensor.ts";

/** What to compile. */
export interface StepSpec {
  /** The graph holding the forward and the loss; compiling appends the backward to it. */
  readonly graph: Graph;
  /** Scalar loss. */
  readonly loss: Value;
  /** Trainable parameters: graph inputs. */
  readonly params: readonly Value[];
  /** Further values to fetch each step (e.g. logits for accuracy). */
  readonly extra?: readonly Value[];
}

/** What a step returns. */
export interface StepResult {
  /** The loss on the batch, at the parameter values given. */
  readonly loss: number;
  /** Gradient of each parameter, by parameter name. */
  readonly grads: Map<string, Float32Array>;
  /**
   * The sum of the squares of every gradient element, computed in the graph (float32): the
   * squared global gradient norm. It is finite exactly when every gradient is, unless it
   * overflows; a loop that has it need not scan the gradients again.
   */
  readonly gradSumSq?: number;
  /** The values of `spec.extra`, by value name. */
  readonly extra: Record<string, Tensor>;
}

/**
 * A compiled training step.
 *
 * @example
 * ```ts
 * import { Graph } from "../engine/graph.ts";
 * import { matmul } from "../engine/ops/matmul.ts";
 * import { reduceSum } from "../engine/ops/reduce.ts";
 * import { TrainStep } from "./step.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", [1, 2]);
 * const w = g.input("w", "F32", [2, 1]);
 * const step = await TrainStep.compile({ graph: g, loss: reduceSum(matmul(x, w)), params: [w] });
 * const { loss, grads } = await step.run(
 *   { x: { dtype: "F32", shape: [1, 2], data: new Float32Array([3, 4]) } },
 *   new Map([["w", new Float32Array([1, 1])]]),
 * ); // loss 7, grads.get("w") [3, 4]
 * await step.release();
 * ```
 */
export class TrainStep {
  private constructor(
    readonly session: Session,
    readonly spec: StepSpec,
    private readonly gradNames: readonly string[],
    private readonly sumSqName: string,
  ) {}

  /**
   * Appends the backward pass for `spec.params`, and the sum of the gradients' squares, and
   * compiles forward + backward.
   */
  static async compile(spec: StepSpec, opts: SessionOptions = {}): Promise<TrainStep> {
    for (const p of spec.params) {
      if (p.kind !== "input") {
        throw new TypeError(`Cannot train "${p.name}": trainable parameters must be graph inputs`);
      }
    }
    if (spec.params.length === 0) {
      throw new TypeError("Nothing to train: the step has no parameters");
    }
    const grads = grad(spec.loss, spec.params);
    const sumSq = grads.map((g) => reduceSum(mul(g, g))).reduce((a, b) => add(a, b));
    const outputs = [spec.loss, sumSq, ...grads, ...(spec.extra ?? [])];
    const session = await Session.compile(spec.graph, { ...opts, outputs });
    return new TrainStep(session, spec, grads.map((g) => g.name), sumSq.name);
  }

  /**
   * Runs one step. `params` maps parameter names to their current values (float32, shaped as
   * declared); `batch` holds the data inputs.
   */
  async run(
    batch: Record<string, Tensor | OrtTensor>,
    params: ReadonlyMap<string, Float32Array>,
  ): Promise<StepResult> {
    const feeds: Record<string, Tensor | ort.Tensor> = { ...batch };
    for (const p of this.spec.params) {
      const data = params.get(p.name);
      if (!data) throw new TypeError(`Missing value for parameter "${p.name}"`);
      feeds[p.name] = toOrt({ dtype: "F32", shape: p.shape as number[], data });
    }
    const out = await this.session.run(feeds);
    const loss = Number(out[this.spec.loss.name]!.data[0]);
    const gradSumSq = Number(out[this.sumSqName]!.data[0]);
    const grads = new Map<string, Float32Array>();
    this.spec.params.forEach((p, i) =>
      grads.set(p.name, out[this.gradNames[i]!]!.data as Float32Array)
    );
    const extra: Record<string, Tensor> = {};
    for (const v of this.spec.extra ?? []) extra[v.name] = out[v.name]!;
    return { loss, grads, gradSumSq, extra };
  }

  /** Frees the session. */
  release(): Promise<void> {
    return this.session.release();
  }
}
