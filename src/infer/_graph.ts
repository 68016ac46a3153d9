/**
 * The engine's serving graph: the base model with the grouped-adapter branch of
 * `src/lora/multi.ts` on its adaptable layers, compiled, with the stacker that feeds it.
 *
 * It is compiled without DoRA's term, which LoRA adapters only pass exact zeros through, and
 * replaced once by the graph with it when the first DoRA adapter is registered
 * ({@linkcode CurrentGraph.ensureDora}). Runs already started on the first graph finish there;
 * its session is released after the last of them.
 *
 * Imported only by `engine.ts`.
 *
 * @module
 */

import { type Dim, Graph } from "../engine/graph.ts";
import { Session, type SessionOptions } from "../engine/runtime.ts";
import type { BaseModel, LinearLayer, ModelIO } from "../models/model.ts";
import { formatShape, type Tensor } from "../tensor.ts";
import { multiLoraHook, type StackInputs } from "../lora/multi.ts";
import { Stacker } from "./_stack.ts";

/** A compiled serving graph and the stacker that feeds it. */
export interface ServingGraph {
  readonly session: Session;
  /** `null` when no adapted layer is in the graph. */
  readonly stacker: Stacker | null;
  /** The graph's name of the served output. */
  readonly outputName: string;
  /** The graph has DoRA's term. */
  readonly dora: boolean;
}

/** Options of {@linkcode compileServing}: the session's, and the layers adapters attach to. */
export interface ServingOptions extends SessionOptions {
  /** Default: every linear layer of the model. */
  readonly layers?: readonly LinearLayer[];
}

/** A compiled serving graph and what it serves. */
export interface Served {
  readonly graph: ServingGraph;
  /** The layers that carry the adapter branch. */
  readonly layers: readonly LinearLayer[];
  /** The model's inputs, with the shapes the graph declares. */
  readonly inputs: readonly ModelIO[];
  /** The output served, `[rows, …]`, under the model's name for it. */
  readonly output: ModelIO;
  /** The graph's names of the model's inputs, in their order. */
  readonly feedNames: readonly string[];
}

/**
 * Builds and compiles the serving graph of `model`, with DoRA's term when `dora`. Throws a
 * TypeError when an input or the output does not have the rows first.
 */
export async function compileServing(
  model: BaseModel,
  opts: ServingOptions,
  dora: boolean,
): Promise<Served> {
  const g = new Graph();
  const stacks = new Map<string, StackInputs>();
  const batch: Dim | undefined = model.inputs[0]?.shape[0];
  const hook = multiLoraHook(opts.layers ?? model.layers, stacks, { batch, dora });
  const built = model.build(g, { hook });
  const output = built.outputs[0];
  const io = (v: { name: string; dtype: Tensor["dtype"]; shape: readonly Dim[] }) =>
    `"${v.name}" ${v.dtype} ${formatShape(v.shape)}`;
  const rowwise = (shape: readonly Dim[]) => shape.length > 0 && shape[0] === batch;
  if (
    !output || built.inputs.length === 0 ||
    ![...built.inputs, output].every((v) => rowwise(v.shape))
  ) {
    throw new TypeError(
      `Cannot serve a model with input ${built.inputs.map(io).join(", ") || "(none)"} and ` +
        `output ${output ? io(output) : "(none)"}: every input and the output must have the ` +
        `batch (rows) first`,
    );
  }
  g.output(output);
  const session = await Session.compile(g, { ...opts, outputs: [output] });
  const layers = (opts.layers ?? model.layers).filter((l) => stacks.has(l.name));
  const stacker = layers.length ? new Stacker(layers, { dora }) : null;
  return {
    graph: { session, stacker, outputName: output.name, dora },
    layers,
    inputs: model.inputs.map((m, i) => ({ ...m, shape: built.inputs[i]!.shape })),
    output: {
      name: model.outputs[0]?.name ?? output.name,
      dtype: output.dtype,
      shape: output.shape,
    },
    feedNames: built.inputs.map((v) => v.name),
  };
}

/** The serving graph runs start on, and the runs in flight on each graph. */
export class CurrentGraph {
  #graph: ServingGraph;
  readonly #running = new Map<ServingGraph, number>();
  #switching: Promise<void> | null = null;
  #closed = false;
  readonly #compileDora: () => Promise<ServingGraph>;

  /** `compileDora` compiles the graph with DoRA's term, when first needed. */
  constructor(graph: ServingGraph, compileDora: () => Promise<ServingGraph>) {
    this.#graph = graph;
    this.#compileDora = compileDora;
  }

  /** The graph runs start on now. */
  get graph(): ServingGraph {
    return this.#graph;
  }

  /** Runs `f` on the current graph, counted in flight on it until `f` settles. */
  async use<T>(f: (graph: ServingGraph) => Promise<T>): Promise<T> {
    const g = this.#graph;
    this.#running.set(g, (this.#running.get(g) ?? 0) + 1);
    try {
      return await f(g);
    } finally {
      const left = this.#running.get(g)! - 1;
      if (left > 0) this.#running.set(g, left);
      else {
        this.#running.delete(g);
        if (g !== this.#graph) await g.session.release(); // replaced meanwhile
      }
    }
  }

  /**
   * Switches to the graph with DoRA's term, compiling it once (concurrent callers share the
   * compile; a failed one is tried again by the next caller).
   */
  ensureDora(): Promise<void> {
    if (this.#graph.dora) return Promise.resolve();
    this.#switching ??= (async () => {
      const next = await this.#compileDora();
      if (this.#closed) {
        await next.session.release();
        throw new Error("Cannot add DoRA's term: the engine was closed");
      }
      const old = this.#graph;
      this.#graph = next;
      if (!this.#running.has(old)) await old.session.release();
    })().finally(() => (this.#switching = null));
    return this.#switching;
  }

  /** Releases the current graph's session; a replaced one goes after its last run. */
  async release(): Promise<void> {
    this.#closed = true;
    await this.#graph.session.release();
  }
}
