/**
 * Optimizers with PyTorch's semantics (torch.optim, 2.x defaults): SGD (momentum, dampening,
 * Nesterov), RMSprop (centered, momentum), Adam (L2 weight decay) and AdamW (decoupled weight
 * decay, Loshchilov & Hutter, arXiv:1711.05101), all with bias correction where PyTorch has it.
 *
 * They update adapter parameters in place. The arithmetic is torch.optim's single-tensor update
 * in float32, run by the SIMD kernels of `wasm/optim.wat` over copies of the parameters and
 * gradients in the kernels' memory, where the buffers (moments, momentum) live between steps.
 * State comes out as plain arrays so checkpoints can save and restore it exactly.
 *
 * @module
 */

import { KernelArena } from "./wasm/kernels.ts";

/** Optimizer names the trainer accepts. */
export type OptimizerName = "sgd" | "momentum" | "rmsprop" | "adam" | "adamw";

/** Hyper-parameters (PyTorch names and defaults). */
export interface OptimizerOptions {
  /** Weight decay: L2 penalty, decoupled for AdamW (default 0.01 for AdamW, else 0). */
  weightDecay?: number;
  /** Momentum factor of SGD and RMSprop (default 0.9 for `"momentum"`, else 0). */
  momentum?: number;
  /** Dampening of SGD's momentum (default 0). */
  dampening?: number;
  /** Nesterov momentum for SGD (default false; needs momentum > 0 and zero dampening). */
  nesterov?: boolean;
  /** Adam's decay rates of the gradient's first and second moments (default `[0.9, 0.999]`). */
  betas?: readonly [number, number];
  /** Added to the denominator of Adam and RMSprop for stability (default 1e-8). */
  eps?: number;
  /** RMSprop smoothing constant. */
  alpha?: number;
  /** RMSprop normalises by the gradient's variance, not its mean square (default false). */
  centered?: boolean;
}

/** Saved optimizer state: the step counts and one set of buffers per parameter. */
export interface OptimizerState {
  /** The optimizer the state belongs to; loading it into another one fails. */
  readonly name: OptimizerName;
  /** Number of steps taken. */
  readonly step: number;
  /**
   * Updates each parameter has received, by name (Adam's bias correction and SGD's first
   * momentum step depend on it). PyTorch counts per parameter: a parameter without a gradient
   * at some step is not updated and its count stays. When absent (older checkpoints), every
   * parameter with buffers counts `step`.
   */
  readonly paramSteps?: Readonly<Record<string, number>>;
  /**
   * Buffers by parameter name, then by buffer name: `m`, `v` (Adam), `sq`, `ga`, `mom` (RMSprop),
   * `mom` (SGD); each as long as its parameter.
   */
  readonly buffers: Record<string, Record<string, Float32Array>>;
}

/** The buffers each rule keeps per parameter (SGD keeps its momentum buffer even without momentum). */
const BUFFERS: Readonly<Record<OptimizerName, readonly string[]>> = {
  sgd: ["mom"],
  momentum: ["mom"],
  rmsprop: ["sq", "ga", "mom"],
  adam: ["m", "v"],
  adamw: ["m", "v"],
};

/** Where a parameter's copy, gradient and buffers live in the kernels' memory (byte offsets). */
interface Slot {
  readonly n: number;
  readonly p: number;
  readonly g: number;
  readonly buffers: Record<string, number>;
}

/** Allocates a slot of `n` elements: the parameter's copy, its gradient and the named buffers. */
function newSlot(arena: KernelArena, buffers: readonly string[], n: number): Slot {
  const offsets: Record<string, number> = {};
  for (const k of buffers) offsets[k] = arena.alloc(n);
  return { n, p: arena.alloc(n), g: arena.alloc(n), buffers: offsets };
}

/**
 * An optimizer over named float32 parameters.
 *
 * @example
 * ```ts
 * import { Optimizer } from "./optim.ts";
 * const p = new Float32Array([1, 2]);
 * const opt = new Optimizer("adamw", { weightDecay: 0.01 });
 * opt.step(new Map([["w", p]]), new Map([["w", new Float32Array([0.5, -0.5])]]), 1e-3);
 * ```
 */
export class Optimizer {
  #step = 0;
  #count = new Map<string, number>();
  #arena = new KernelArena();
  #slots = new Map<string, Slot>();
  /** The hyper-parameters in use: the options given, with defaults filled in. */
  readonly opts: Required<OptimizerOptions>;

  /**
   * Makes an optimizer with no state yet; buffers are allocated on each parameter's first step.
   * Throws a `RangeError` for the values PyTorch refuses (negative weight decay, momentum or eps,
   * betas outside [0, 1), a negative alpha) and for Nesterov without momentum or with dampening.
   *
   * @param name The update rule.
   * @param opts Hyper-parameters (PyTorch names and defaults).
   */
  constructor(readonly name: OptimizerName, opts: OptimizerOptions = {}) {
    this.opts = {
      weightDecay: opts.weightDecay ?? (name === "adamw" ? 0.01 : 0),
      momentum: opts.momentum ?? (name === "momentum" ? 0.9 : 0),
      dampening: opts.dampening ?? 0,
      nesterov: opts.nesterov ?? false,
      betas: opts.betas ?? [0.9, 0.999],
      eps: opts.eps ?? 1e-8,
      alpha: opts.alpha ?? 0.99,
      centered: opts.centered ?? false,
    };
    const o = this.opts;
    const bad = (what: string, v: number) => {
      throw new RangeError(`Invalid ${what} for the ${name} optimizer: ${v}`);
    };
    if (!(o.weightDecay >= 0)) bad("weight decay", o.weightDecay);
    if (!(o.momentum >= 0)) bad("momentum", o.momentum);
    if (!(o.eps >= 0)) bad("eps", o.eps);
    if (!(o.alpha >= 0)) bad("alpha", o.alpha);
    o.betas.forEach((b, i) => {
      if (!(b >= 0 && b < 1)) bad(`beta ${i + 1} (expected 0 <= beta < 1)`, b);
    });
    if (this.opts.nesterov && (this.opts.momentum <= 0 || this.opts.dampening !== 0)) {
      throw new RangeError("Nesterov momentum requires a momentum > 0 and zero dampening");
    }
  }

  /** Number of steps taken. */
  get steps(): number {
    return this.#step;
  }

  /**
   * Applies one update with learning rate `lr` to every parameter that has a gradient. Each
   * gradient element is multiplied by `gradScale` as it is read (default 1): the trainer folds
   * gradient clipping and the mean over accumulated micro-batches in here instead of making
   * separate passes over the gradients.
   *
   * Everything is checked before anything changes: a gradient or a saved buffer whose length is
   * not the parameter's, or a negative or non-finite `lr`, throws and leaves the parameters and
   * the state as they were.
   */
  step(
    params: ReadonlyMap<string, Float32Array>,
    grads: ReadonlyMap<string, Float32Array>,
    lr: number,
    gradScale = 1,
  ): void {
    if (!(lr >= 0 && lr < Infinity)) {
      throw new RangeError(`Invalid learning rate ${lr}: expected a finite value >= 0`);
    }
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) continue;
      if (g.length !== p.length) {
        throw new TypeError(
          `Gradient of "${name}" has ${g.length} elements, the parameter ${p.length}`,
        );
      }
      const s = this.#slots.get(name);
      if (s && s.n !== p.length) {
        throw new TypeError(
          `Optimizer buffers of "${name}" have ${s.n} elements, the parameter ${p.length}: ` +
            `the state was saved for a differently shaped parameter`,
        );
      }
    }
    // Memory for parameters seen for the first time, before anything changes (it may not fit).
    for (const [name, p] of params) if (grads.has(name)) this.#slot(name, p.length);
    this.#step++;
    const a = this.#arena;
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) continue;
      const n = p.length;
      const s = this.#slot(name, n);
      const t = (this.#count.get(name) ?? 0) + 1;
      this.#count.set(name, t);
      a.view(s.p, n).set(p);
      a.view(s.g, n).set(g);
      const o = this.opts;
      const b = s.buffers;
      switch (this.name) {
        case "sgd":
        case "momentum":
          a.k.sgd(
            s.p,
            s.g,
            b["mom"]!,
            n,
            lr,
            o.weightDecay,
            o.momentum,
            1 - o.dampening,
            gradScale,
            o.nesterov ? 1 : 0,
            t === 1 ? 1 : 0,
          );
          break;
        case "rmsprop":
          a.k.rmsprop(
            s.p,
            s.g,
            b["sq"]!,
            b["ga"]!,
            b["mom"]!,
            n,
            lr,
            o.weightDecay,
            o.alpha,
            1 - o.alpha,
            o.eps,
            o.momentum,
            gradScale,
            o.centered ? 1 : 0,
          );
          break;
        case "adam":
        case "adamw": {
          const [b1, b2] = o.betas;
          const decoupled = this.name === "adamw";
          a.k.adam(
            s.p,
            s.g,
            b["m"]!,
            b["v"]!,
            n,
            lr / (1 - b1 ** t),
            Math.sqrt(1 - b2 ** t),
            o.eps,
            decoupled ? 1 - lr * o.weightDecay : 1,
            decoupled ? 0 : o.weightDecay,
            b1,
            b2,
            1 - b1,
            1 - b2,
            gradScale,
          );
        }
      }
      p.set(a.view(s.p, n));
    }
  }

  /** The parameter's slot in the kernels' memory: allocated, with zeroed buffers, on first use. */
  #slot(name: string, n: number): Slot {
    let s = this.#slots.get(name);
    if (!s) {
      s = newSlot(this.#arena, BUFFERS[this.name], n);
      this.#slots.set(name, s);
    }
    return s;
  }

  /** A copy of the state, for checkpoints. */
  state(): OptimizerState {
    const buffers: Record<string, Record<string, Float32Array>> = {};
    for (const [k, s] of this.#slots) {
      buffers[k] = Object.fromEntries(
        Object.entries(s.buffers).map(([n, off]) => [n, this.#arena.view(off, s.n).slice()]),
      );
    }
    return {
      name: this.name,
      step: this.#step,
      paramSteps: Object.fromEntries(this.#count),
      buffers,
    };
  }

  /** Restores a state saved by {@link Optimizer.state}. */
  load(state: OptimizerState): void {
    if (state.name !== this.name) {
      throw new TypeError(
        `Cannot load ${state.name} optimizer state into a ${this.name} optimizer`,
      );
    }
    // Everything is checked and built aside first: a bad state leaves this optimizer unchanged.
    const names = BUFFERS[this.name];
    for (const [k, b] of Object.entries(state.buffers)) {
      const lengths = new Set(Object.values(b).map((a) => a.length));
      if (names.some((n) => !b[n]) || lengths.size !== 1) {
        throw new TypeError(
          `Invalid ${this.name} optimizer state for "${k}": expected buffers ` +
            `${names.join(", ")} of one length, got ` +
            Object.entries(b).map(([n, a]) => `${n} (${a.length})`).join(", "),
        );
      }
    }
    const arena = new KernelArena();
    const slots = new Map<string, Slot>();
    for (const [k, b] of Object.entries(state.buffers)) {
      const s = newSlot(arena, names, b[names[0]!]!.length);
      for (const n of names) arena.view(s.buffers[n]!, s.n).set(b[n]!);
      slots.set(k, s);
    }
    this.#arena = arena;
    this.#slots = slots;
    this.#step = state.step;
    this.#count = new Map(
      Object.keys(state.buffers).map((k) => [k, state.paramSteps?.[k] ?? state.step]),
    );
  }
}

/**
 * Scales gradients in place so their global L2 norm is at most `maxNorm` (PyTorch's
 * `clip_grad_norm_`); returns the norm before clipping.
 *
 * @example
 * ```ts
 * import { clipGradNorm } from "./optim.ts";
 * const g = new Float32Array([3, 4]);
 * clipGradNorm([g], 1); // 5; g is now about [0.6, 0.8]
 * ```
 */
export function clipGradNorm(grads: Iterable<Float32Array>, maxNorm: number): number {
  const list = [...grads];
  let sq = 0;
  for (const g of list) for (let i = 0; i < g.length; i++) sq += g[i]! * g[i]!;
  const norm = Math.sqrt(sq);
  const coef = maxNorm / (norm + 1e-6);
  // `!(coef >= 1)`: a NaN norm makes every gradient NaN, as in PyTorch.
  if (!(coef >= 1)) {
    for (const g of list) {
      for (let i = 0; i < g.length; i++) g[i] = g[i]! * coef;
    }
  }
  return norm;
}
