/**
 * Optimizers with PyTorch's semantics (torch.optim, 2.x defaults): SGD (momentum, dampening,
 * Nesterov), RMSprop (centered, momentum), Adam (L2 weight decay) and AdamW (decoupled weight
 * decay, Loshchilov & Hutter, arXiv:1711.05101), all with bias correction where PyTorch has it.
 *
 * They update adapter parameters in place, in TypeScript: adapters are a few percent of the
 * model, and the loops below are a small fraction of a training step (measured in the bench).
 * State is plain arrays so checkpoints can save and restore it exactly.
 *
 * @module
 */

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

/** Saved optimizer state: the step count and one set of buffers per parameter. */
export interface OptimizerState {
  /** The optimizer the state belongs to; loading it into another one fails. */
  readonly name: OptimizerName;
  /** Number of steps taken (Adam's bias correction depends on it). */
  readonly step: number;
  /**
   * Buffers by parameter name, then by buffer name: `m`, `v` (Adam), `sq`, `ga`, `mom` (RMSprop),
   * `mom` (SGD); each as long as its parameter.
   */
  readonly buffers: Record<string, Record<string, Float32Array>>;
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
  #buf = new Map<string, Record<string, Float32Array>>();
  /** The hyper-parameters in use: the options given, with defaults filled in. */
  readonly opts: Required<OptimizerOptions>;

  /**
   * Makes an optimizer with no state yet; buffers are allocated on each parameter's first step.
   * Throws a `RangeError` for Nesterov without momentum or with dampening.
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
      eps: opts.eps ?? (name === "rmsprop" ? 1e-8 : 1e-8),
      alpha: opts.alpha ?? 0.99,
      centered: opts.centered ?? false,
    };
    if (this.opts.nesterov && (this.opts.momentum <= 0 || this.opts.dampening !== 0)) {
      throw new RangeError("Nesterov momentum requires a momentum > 0 and zero dampening");
    }
  }

  /** Number of steps taken. */
  get steps(): number {
    return this.#step;
  }

  /** Applies one update with learning rate `lr` to every parameter that has a gradient. */
  step(
    params: ReadonlyMap<string, Float32Array>,
    grads: ReadonlyMap<string, Float32Array>,
    lr: number,
  ): void {
    this.#step++;
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) continue;
      if (g.length !== p.length) {
        throw new TypeError(
          `Gradient of "${name}" has ${g.length} elements, the parameter ${p.length}`,
        );
      }
      const buf = this.#buffers(name, p.length);
      switch (this.name) {
        case "sgd":
        case "momentum":
          this.#sgd(p, g, buf, lr);
          break;
        case "rmsprop":
          this.#rmsprop(p, g, buf, lr);
          break;
        case "adam":
        case "adamw":
          this.#adam(p, g, buf, lr);
      }
    }
  }

  #buffers(name: string, n: number): Record<string, Float32Array> {
    let b = this.#buf.get(name);
    if (!b) {
      b = {};
      const names = this.name === "adam" || this.name === "adamw"
        ? ["m", "v"]
        : this.name === "rmsprop"
        ? ["sq", "ga", "mom"]
        : ["mom"];
      for (const k of names) b[k] = new Float32Array(n);
      this.#buf.set(name, b);
    }
    return b;
  }

  #sgd(p: Float32Array, g: Float32Array, b: Record<string, Float32Array>, lr: number): void {
    const { weightDecay: wd, momentum: mu, dampening, nesterov } = this.opts;
    const buf = b["mom"]!;
    const first = this.#step === 1;
    for (let i = 0; i < p.length; i++) {
      let d = g[i]! + wd * p[i]!;
      if (mu !== 0) {
        buf[i] = first ? d : mu * buf[i]! + (1 - dampening) * d;
        d = nesterov ? d + mu * buf[i]! : buf[i]!;
      }
      p[i] = p[i]! - lr * d;
    }
  }

  #rmsprop(p: Float32Array, g: Float32Array, b: Record<string, Float32Array>, lr: number): void {
    const { weightDecay: wd, momentum: mu, alpha, eps, centered } = this.opts;
    const sq = b["sq"]!, ga = b["ga"]!, mom = b["mom"]!;
    for (let i = 0; i < p.length; i++) {
      const d = g[i]! + wd * p[i]!;
      sq[i] = alpha * sq[i]! + (1 - alpha) * d * d;
      let avg: number;
      if (centered) {
        ga[i] = alpha * ga[i]! + (1 - alpha) * d;
        avg = Math.sqrt(sq[i]! - ga[i]! * ga[i]!) + eps;
      } else {
        avg = Math.sqrt(sq[i]!) + eps;
      }
      if (mu > 0) {
        mom[i] = mu * mom[i]! + d / avg;
        p[i] = p[i]! - lr * mom[i]!;
      } else {
        p[i] = p[i]! - lr * d / avg;
      }
    }
  }

  #adam(p: Float32Array, g: Float32Array, b: Record<string, Float32Array>, lr: number): void {
    const { weightDecay: wd, betas: [b1, b2], eps } = this.opts;
    const decoupled = this.name === "adamw";
    const m = b["m"]!, v = b["v"]!;
    const bc1 = 1 - b1 ** this.#step;
    const invBc2Sqrt = 1 / Math.sqrt(1 - b2 ** this.#step);
    const stepSize = lr / bc1;
    const shrink = decoupled ? 1 - lr * wd : 1;
    const l2 = decoupled ? 0 : wd;
    const c1 = 1 - b1, c2 = 1 - b2;
    for (let i = 0; i < p.length; i++) {
      const pi = p[i]! * shrink;
      const d = g[i]! + l2 * pi;
      const mi = b1 * m[i]! + c1 * d;
      const vi = b2 * v[i]! + c2 * d * d;
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - stepSize * mi / (Math.sqrt(vi) * invBc2Sqrt + eps);
    }
  }

  /** A copy of the state, for checkpoints. */
  state(): OptimizerState {
    const buffers: Record<string, Record<string, Float32Array>> = {};
    for (const [k, b] of this.#buf) {
      buffers[k] = Object.fromEntries(Object.entries(b).map(([n, a]) => [n, a.slice()]));
    }
    return { name: this.name, step: this.#step, buffers };
  }

  /** Restores a state saved by {@link Optimizer.state}. */
  load(state: OptimizerState): void {
    if (state.name !== this.name) {
      throw new TypeError(
        `Cannot load ${state.name} optimizer state into a ${this.name} optimizer`,
      );
    }
    this.#step = state.step;
    this.#buf = new Map(
      Object.entries(state.buffers).map(([k, b]) => [
        k,
        Object.fromEntries(Object.entries(b).map(([n, a]) => [n, a.slice()])),
      ]),
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
  if (coef < 1) { for (const g of list) for (let i = 0; i < g.length; i++) g[i] = g[i]! * coef; }
  return norm;
}
