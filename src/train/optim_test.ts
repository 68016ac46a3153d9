/**
 * The optimizers against torch.optim (PyTorch 1.13), step by step: from the same float32
 * parameters, through the same six gradient sets and a varying learning rate, `Optimizer` leaves
 * the parameters PyTorch's float32 run leaves after every step, for SGD (plain, weight decay,
 * momentum with dampening, whose first step leaves the buffer undamped, Nesterov), RMSprop
 * (default, centered with momentum and weight decay), Adam (default, L2 weight decay with other
 * betas and eps) and AdamW (default, weight decay 0.1); `clipGradNorm` returns
 * `clip_grad_norm_`'s norm and clips the gradients as it does.
 *
 * The reference is `fixtures/golden/optim.safetensors`, written by
 * `fixtures/golden/make_optim.py`: its metadata gives each case's torch call, the hyper-parameters
 * torch resolved (defaults included), ffwd's equivalent options and the learning rates, so the
 * cases live in one place. Error of a parameter tensor after a step: `max|ffwd − torch| /
 * max|torch|`, at most 1e-6; PyTorch's own float64 run of the same case is within 1.3e-7 of its
 * float32 run, the scale of float32 rounding. To show the bound is tight enough to matter, every
 * hyper-parameter a case depends on, changed by 1%, and the learning rate, changed by 0.01%, move
 * the result beyond it.
 *
 * Also: a state saved mid-run and loaded into a new optimizer continues byte for byte as the
 * uninterrupted run, and a gradient scale equals pre-scaled gradients. What the optimizer refuses
 * is in `optim_checks_test.ts`.
 *
 * @module
 */

import { assert, assertEquals, relError, sameBytes } from "../../tests/_assert.ts";
import { readSafetensors } from "../io/safetensors.ts";
import type { Tensor } from "../tensor.ts";
import {
  clipGradNorm,
  Optimizer,
  type OptimizerName,
  type OptimizerOptions,
  type OptimizerState,
} from "./optim.ts";

const GOLDEN = new URL("../../fixtures/golden/optim.safetensors", import.meta.url);
/** Parameters after a step, by `max|ffwd − torch| / max|torch|`. */
const RTOL = 1e-6;
const STEPS = 6;
const NAMES = ["a", "b"] as const;

/** One case of the golden file, as its metadata describes it. */
interface Case {
  readonly name: string;
  /** Learning rate of each step. */
  readonly lrs: readonly number[];
  /** Steps (0-based) at which `b` has no gradient, so torch.optim does not update it. */
  readonly skip_b: readonly number[];
  readonly torch: {
    readonly class: string;
    readonly kwargs: Readonly<Record<string, unknown>>;
    /** The hyper-parameters torch resolved, under torch's names. */
    readonly group: Readonly<Record<string, number | boolean | readonly number[]>>;
  };
  readonly ffwd: { readonly name: OptimizerName; readonly options: OptimizerOptions };
}

/** torch.optim's names of the hyper-parameters, to ffwd's. */
const FFWD_KEY: Readonly<Record<string, keyof OptimizerOptions>> = {
  weight_decay: "weightDecay",
  momentum: "momentum",
  dampening: "dampening",
  nesterov: "nesterov",
  betas: "betas",
  eps: "eps",
  alpha: "alpha",
  centered: "centered",
};

const golden = await readSafetensors(GOLDEN);
const CASES: readonly Case[] = JSON.parse(meta("cases"));
const CLIPS: readonly { name: string; max_norm: number }[] = JSON.parse(meta("clip"));

function meta(key: string): string {
  const v = golden.metadata[key];
  if (v === undefined) throw new TypeError(`Golden file has no metadata "${key}"`);
  return v;
}

function get(key: string): Tensor {
  const t = golden.tensors.get(key);
  if (!t) throw new TypeError(`Golden file has no tensor "${key}"`);
  return t;
}

function f32(key: string): Float32Array {
  const t = get(key);
  assertEquals(t.dtype, "F32", key);
  return t.data as Float32Array;
}

function f64(key: string): Float64Array {
  const t = get(key);
  assertEquals(t.dtype, "F64", key);
  return t.data as Float64Array;
}

/** Row `step` of a tensor holding one row per step. */
function row<T extends Float32Array | Float64Array>(data: T, step: number): T {
  const n = data.length / STEPS;
  return data.subarray(step * n, (step + 1) * n) as T;
}

/** The gradients of step `step` (copies). */
function gradsAt(step: number): Map<string, Float32Array> {
  return new Map(NAMES.map((k) => [k, row(f32(`grads.${k}`), step).slice()]));
}

/** Parameters after each step: `[step][name]`. */
type Trajectory = Map<string, Float32Array>[];

interface RunOptions {
  /** Multiplies every learning rate. */
  readonly lrFactor?: number;
  /** Passed to `step` as its gradient scale. */
  readonly gradScale?: number;
  /** Multiplies every gradient element before `step` sees it (stored as float32). */
  readonly preScale?: number;
}

/** The gradients of step `s` of case `c`: without `b` at the case's skipped steps. */
function caseGrads(c: Case, s: number): Map<string, Float32Array> {
  const grads = gradsAt(s);
  if (c.skip_b.includes(s)) grads.delete("b");
  return grads;
}

/** Runs `opt` from the initial parameters through the case's six steps. */
function run(c: Case, opt: Optimizer, o: RunOptions = {}): Trajectory {
  const params = new Map(NAMES.map((k) => [k, f32(`init.${k}`).slice()]));
  const out: Trajectory = [];
  for (let s = 0; s < STEPS; s++) {
    const grads = caseGrads(c, s);
    if (o.preScale !== undefined) {
      for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] = g[i]! * o.preScale;
    }
    const lr = c.lrs[s]! * (o.lrFactor ?? 1);
    if (o.gradScale === undefined) opt.step(params, grads, lr);
    else opt.step(params, grads, lr, o.gradScale);
    out.push(new Map([...params].map(([k, p]) => [k, p.slice()])));
  }
  return out;
}

function optimizer(c: Case, options: OptimizerOptions = c.ffwd.options): Optimizer {
  return new Optimizer(c.ffwd.name, options);
}

/** Worst error of a trajectory against torch's float32 run of the case, over steps and tensors. */
function errorVsTorch(c: Case, t: Trajectory): number {
  let worst = 0;
  for (let s = 0; s < STEPS; s++) {
    for (const k of NAMES) {
      worst = Math.max(worst, relError(t[s]!.get(k)!, row(f32(`${c.name}.${k}`), s)));
    }
  }
  return worst;
}

/** Worst error of one trajectory against another. */
function errorBetween(actual: Trajectory, expected: Trajectory): number {
  let worst = 0;
  for (let s = 0; s < STEPS; s++) {
    for (const k of NAMES) {
      worst = Math.max(worst, relError(actual[s]!.get(k)!, expected[s]!.get(k)!));
    }
  }
  return worst;
}

/** The case's torch call, as Python writes it. */
function call(c: Case): string {
  const py = (v: unknown): string =>
    typeof v === "boolean"
      ? (v ? "True" : "False")
      : Array.isArray(v)
      ? `(${v.join(", ")})`
      : `${v}`;
  const args = Object.entries(c.torch.kwargs).map(([k, v]) => `${k}=${py(v)}`);
  return `torch.optim.${c.torch.class}(${args.join(", ")})`;
}

/**
 * The resolved hyper-parameters with one changed: numbers by 1%, booleans flipped. Zeros stay, and
 * so does `eps` under L2 weight decay (Adam, RMSprop): `weight_decay * param` then dominates every
 * element's gradient, and `eps` is negligible next to its root mean square.
 */
function nudges(c: Case): { what: string; options: OptimizerOptions }[] {
  const opts = optimizer(c).opts;
  const l2 = c.torch.class !== "AdamW" && opts.weightDecay !== 0;
  const out: { what: string; options: OptimizerOptions }[] = [];
  for (const torchKey of Object.keys(c.torch.group)) {
    const key = FFWD_KEY[torchKey];
    assert(key, `unknown hyper-parameter ${torchKey}`);
    if (key === "eps" && l2) continue;
    const v = opts[key];
    if (typeof v === "boolean") out.push({ what: `${key} ${!v}`, options: { ...opts, [key]: !v } });
    else if (typeof v === "number" && v !== 0) {
      out.push({ what: `${key} ${v * 0.99}`, options: { ...opts, [key]: v * 0.99 } });
    } else if (Array.isArray(v)) {
      const [b1, b2] = v as [number, number];
      out.push({ what: `betas[0] ${b1 * 0.99}`, options: { ...opts, betas: [b1 * 0.99, b2] } });
      out.push({ what: `betas[1] ${b2 * 0.99}`, options: { ...opts, betas: [b1, b2 * 0.99] } });
    }
  }
  return out;
}

Deno.test("The golden file holds the twelve optimizer cases and two clip cases, from PyTorch 1.13", () => {
  assertEquals(CASES.length, 12);
  assertEquals(CASES.filter((c) => c.skip_b.length).map((c) => c.name), [
    "adam_skip",
    "sgd_momentum_skip",
  ]);
  assertEquals(CLIPS.map((c) => c.name), ["clip_over", "clip_under"]);
  assert(meta("torch").startsWith("1.13"), meta("torch"));
  for (const c of CASES) assertEquals(c.lrs.length, STEPS, c.name);
});

Deno.test("Each case's ffwd options resolve to the hyper-parameters torch.optim resolved", () => {
  for (const c of CASES) {
    const opts = optimizer(c).opts;
    for (const [torchKey, value] of Object.entries(c.torch.group)) {
      assertEquals(opts[FFWD_KEY[torchKey]!], value, `${c.name}: ${torchKey}`);
    }
  }
});

for (const c of CASES) {
  Deno.test(`${c.name}: ffwd's "${c.ffwd.name}" leaves ${call(c)}'s float32 parameters after every step`, () => {
    const err = errorVsTorch(c, run(c, optimizer(c)));
    assert(err <= RTOL, `${c.name}: error ${err.toExponential(2)} > ${RTOL}`);
    // PyTorch's float64 run of the same case: the scale float32 rounding alone reaches.
    let gap = 0;
    for (let s = 0; s < STEPS; s++) {
      for (const k of NAMES) {
        gap = Math.max(
          gap,
          relError(row(f64(`${c.name}.${k}.f64`), s), row(f32(`${c.name}.${k}`), s)),
        );
      }
    }
    assert(gap <= RTOL / 5, `${c.name}: torch float64 vs float32 ${gap.toExponential(2)}`);
  });
}

Deno.test("Changing any hyper-parameter a case uses by 1%, or the learning rate by 0.01%, exceeds the tolerance", () => {
  for (const c of CASES) {
    const lrErr = errorVsTorch(c, run(c, optimizer(c), { lrFactor: 1 + 1e-4 }));
    assert(lrErr > RTOL, `${c.name}: lr × 1.0001 only moves ${lrErr.toExponential(2)}`);
    for (const { what, options } of nudges(c)) {
      let opt: Optimizer;
      try {
        opt = optimizer(c, options);
      } catch (e) {
        if (e instanceof RangeError) continue; // Nesterov with dampening or without momentum
        throw e;
      }
      const err = errorVsTorch(c, run(c, opt));
      assert(err > RTOL, `${c.name}: ${what} only moves ${err.toExponential(2)}`);
    }
  }
});

Deno.test("A state saved mid-run and loaded into a new optimizer continues byte for byte", () => {
  for (const c of CASES) {
    const whole = run(c, optimizer(c));
    const params = new Map(NAMES.map((k) => [k, f32(`init.${k}`).slice()]));
    const first = optimizer(c);
    for (let s = 0; s < 3; s++) first.step(params, caseGrads(c, s), c.lrs[s]!);
    const saved: OptimizerState = first.state();
    assertEquals(saved.step, 3, c.name);
    // The saved state is a copy: stepping on leaves it as it was.
    const kept = structuredClone(saved);
    first.step(new Map(NAMES.map((k) => [k, f32(`init.${k}`).slice()])), gradsAt(3), 1);
    for (const [k, b] of Object.entries(kept.buffers)) {
      for (const [n, a] of Object.entries(b)) {
        assert(sameBytes(saved.buffers[k]![n]!, a), `${c.name}: state() shares ${k}.${n}`);
      }
    }
    const resumed = optimizer(c);
    resumed.load(saved);
    // Loading copies too: overwriting the saved state afterwards changes nothing below.
    for (const b of Object.values(saved.buffers)) for (const a of Object.values(b)) a.fill(NaN);
    const fresh = optimizer(c);
    const freshParams = new Map([...params].map(([k, p]) => [k, p.slice()]));
    for (let s = 3; s < STEPS; s++) {
      resumed.step(params, caseGrads(c, s), c.lrs[s]!);
      fresh.step(freshParams, caseGrads(c, s), c.lrs[s]!);
      for (const k of NAMES) {
        assert(sameBytes(params.get(k)!, whole[s]!.get(k)!), `${c.name}: step ${s + 1}, ${k}`);
      }
    }
    // Without the state, a case with momentum or moments goes elsewhere.
    const stateless = c.torch.class === "SGD" && c.torch.group["momentum"] === 0;
    const freshErr = relError(freshParams.get("a")!, whole[STEPS - 1]!.get("a")!);
    assert(stateless === (freshErr === 0), `${c.name}: restarting without state: ${freshErr}`);
  }
});

Deno.test("Stepping with a gradient scale s equals stepping with the gradients multiplied by s", () => {
  for (const c of CASES) {
    for (const s of [0.37, 1 / 3, 4]) {
      const scaled = run(c, optimizer(c), { gradScale: s });
      const ignored = errorBetween(scaled, run(c, optimizer(c)));
      assert(ignored > RTOL, `${c.name}: step() ignored gradScale ${s}`);
      const err = errorBetween(scaled, run(c, optimizer(c), { preScale: s }));
      assert(err <= RTOL, `${c.name}: gradScale ${s}: ${err.toExponential(2)}`);
    }
  }
});

Deno.test("clipGradNorm returns clip_grad_norm_'s norm and clips the gradients as it does", () => {
  for (const { name, max_norm } of CLIPS) {
    const grads = NAMES.map((k) => f32(`${name}.grads.${k}`).slice());
    const norm = clipGradNorm(grads, max_norm);
    const torchNorm = f32(`${name}.norm`)[0]!, exactNorm = f64(`${name}.norm.f64`)[0]!;
    assert(Math.abs(norm - torchNorm) <= RTOL * torchNorm, `${name}: norm ${norm} vs ${torchNorm}`);
    assert(Math.abs(norm - exactNorm) <= RTOL * exactNorm, `${name}: norm ${norm} vs ${exactNorm}`);
    const over = torchNorm > max_norm;
    assertEquals(over, name === "clip_over");
    NAMES.forEach((k, i) => {
      const expected = f32(`${name}.clipped.${k}`);
      const err = relError(grads[i]!, expected);
      assert(err <= RTOL, `${name}.${k}: ${err.toExponential(2)}`);
      // Clipping changed the gradients by far more than the tolerance, or left them alone.
      const moved = relError(f32(`${name}.grads.${k}`), expected);
      assert(over ? moved > 0.5 : sameBytes(grads[i]!, expected), `${name}.${k}: ${moved}`);
    });
    if (over) {
      const after = Math.hypot(...grads.flatMap((g) => [...g]));
      assert(Math.abs(after - max_norm) <= 1e-5 * max_norm, `${name}: clipped norm ${after}`);
    }
  }
});
