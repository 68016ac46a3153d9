/**
 * Keras activations as ONNX nodes, and the activation layers (Activation, ReLU, ReLU6, LeakyReLU,
 * PReLU, ELU, ThresholdedReLU, Softmax). Formulas as TF.js computes them (tfjs-layers
 * `activations.ts`): `hard_sigmoid` is `clip(0.2·x + 0.5, 0, 1)` in Keras 2 and TF.js, and
 * `clip(x/6 + 0.5, 0, 1)` in Keras 3; `gelu` is the erf form and `gelu_new` the tanh one.
 *
 * Element-wise activations also run on the channels-first twin of their input, so that
 * convolution → activation → convolution needs no transposes (see `_emit.ts`).
 *
 * @module
 */

import type { Emitter, KTensor } from "./_emit.ts";
import { activationName, type Converter, type LayerCtx, num } from "./_keras.ts";

type Act = (em: Emitter, scope: string, x: string, keras3: boolean) => string;

const unary = (op: string, attrs = {}): Act => (em, scope, x) => em.op(scope, op, [x], attrs);

const gelu: Act = (em, scope, x) => {
  const erf = em.op(scope, "Erf", [em.op(scope, "Div", [x, em.floats(scope, [Math.SQRT2])])]);
  const cdf = em.op(scope, "Mul", [
    em.op(scope, "Add", [erf, em.floats(scope, [1])]),
    half(em, scope),
  ]);
  return em.op(scope, "Mul", [x, cdf]);
};

const geluTanh: Act = (em, scope, x) => {
  const cube = em.op(scope, "Mul", [em.op(scope, "Mul", [x, x]), x]);
  const inner = em.op(scope, "Add", [x, em.op(scope, "Mul", [cube, em.floats(scope, [0.044715])])]);
  const t = em.op(scope, "Tanh", [
    em.op(scope, "Mul", [inner, em.floats(scope, [Math.sqrt(2 / Math.PI)])]),
  ]);
  const y = em.op(scope, "Mul", [x, em.op(scope, "Add", [t, em.floats(scope, [1])])]);
  return em.op(scope, "Mul", [y, half(em, scope)]);
};

const half = (em: Emitter, scope: string) => em.floats(scope, [0.5]);

/** Activations by Keras name (TF.js's camelCase names are normalized to these first). */
const ACTIVATIONS: Readonly<Record<string, Act>> = {
  linear: (_em, _scope, x) => x,
  relu: unary("Relu"),
  relu6: (em, scope, x) => em.op(scope, "Clip", [x, em.floats(scope, [0]), em.floats(scope, [6])]),
  elu: unary("Elu", { alpha: { f: 1 } }),
  selu: unary("Selu"),
  sigmoid: unary("Sigmoid"),
  hard_sigmoid: (em, scope, x, keras3) =>
    em.op(scope, "HardSigmoid", [x], { alpha: { f: keras3 ? 1 / 6 : 0.2 }, beta: { f: 0.5 } }),
  hard_silu: unary("HardSwish"),
  hard_swish: unary("HardSwish"),
  tanh: unary("Tanh"),
  softplus: unary("Softplus"),
  softsign: unary("Softsign"),
  exponential: unary("Exp"),
  swish: (em, scope, x) => em.op(scope, "Mul", [x, em.op(scope, "Sigmoid", [x])]),
  silu: (em, scope, x) => em.op(scope, "Mul", [x, em.op(scope, "Sigmoid", [x])]),
  mish: (em, scope, x) =>
    em.op(scope, "Mul", [x, em.op(scope, "Tanh", [em.op(scope, "Softplus", [x])])]),
  gelu,
  gelu_new: geluTanh,
  leaky_relu: unary("LeakyRelu", { alpha: { f: 0.2 } }),
  softmax: unary("Softmax", { axis: { i: -1 } }),
  log_softmax: unary("LogSoftmax", { axis: { i: -1 } }),
};

/** Activations that mix the last axis: they run in Keras layout only. */
const AXIS_WISE = new Set(["softmax", "log_softmax"]);

/** The Keras activation names ffwd converts. */
export const ACTIVATION_NAMES: readonly string[] = Object.keys(ACTIVATIONS);

/** TF.js writes `hardSigmoid` in some versions and `hard_sigmoid` in others. */
const normalize = (name: string) => name.replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`);

/**
 * Applies `f` to `x` and, when a convolution left a channels-first twin of `x`, to the twin too
 * (`first` tells `f` which layout it gets); unused versions are pruned at the end.
 */
export function pointwise(
  ctx: LayerCtx,
  x: KTensor,
  f: (value: string, first: boolean) => string,
): KTensor {
  const y = f(x.name, false);
  const twin = ctx.em.twinOf(x.name);
  if (twin !== undefined && y !== x.name) ctx.em.pair(y, f(twin, true));
  return { name: y, shape: x.shape };
}

/** Applies the activation named in the config at `key` (`activation`), failing on unknown ones. */
export function activate(ctx: LayerCtx, x: KTensor, key = "activation"): KTensor {
  const name = normalize(activationName(ctx.config[key]));
  const act = ACTIVATIONS[name];
  if (!act) {
    return ctx.fail(
      `its ${key.replace("_", " ")} "${name}" cannot be converted (supported: ${
        ACTIVATION_NAMES.join(", ")
      })`,
    );
  }
  if (AXIS_WISE.has(name)) {
    return { name: act(ctx.em, ctx.name, x.name, ctx.keras3), shape: x.shape };
  }
  return pointwise(ctx, x, (v) => act(ctx.em, ctx.name, v, ctx.keras3));
}

/** A one-input layer that keeps its input's shape. */
const same = (f: (ctx: LayerCtx, x: KTensor) => KTensor): Converter => (ctx, [x]) => [f(ctx, x!)];

/** Keras `ReLU(max_value, negative_slope, threshold)`; TF.js writes `max_value` only. */
const relu = same((ctx, x) => {
  const c = ctx.config;
  const max = typeof c.max_value === "number" ? c.max_value : null;
  const slope = num(c, "negative_slope", 0);
  const threshold = num(c, "threshold", 0);
  const { em, name } = ctx;
  return pointwise(ctx, x, (v) => {
    if (slope === 0 && threshold === 0) {
      return max === null
        ? em.op(name, "Relu", [v])
        : em.op(name, "Clip", [v, em.floats(name, [0]), em.floats(name, [max])]);
    }
    // f(x) = x for x ≥ threshold, else slope · (x − threshold); then at most max_value
    const t = em.floats(name, [threshold]);
    const low = em.op(name, "Mul", [em.op(name, "Sub", [v, t]), em.floats(name, [slope])]);
    const y = em.op(name, "Where", [em.op(name, "GreaterOrEqual", [v, t]), v, low]);
    return max === null ? y : em.op(name, "Min", [y, em.floats(name, [max])]);
  });
});

/** The activation layers, by class. */
export const ACTIVATION_LAYERS: Readonly<Record<string, Converter>> = {
  Activation: same((ctx, x) => activate(ctx, x)),
  ReLU: relu,
  ReLU6: same((ctx, x) => pointwise(ctx, x, (v) => ACTIVATIONS.relu6!(ctx.em, ctx.name, v, false))),
  LeakyReLU: same((ctx, x) => {
    const alpha = num(ctx.config, "negative_slope", num(ctx.config, "alpha", 0.3));
    return pointwise(ctx, x, (v) => ctx.em.op(ctx.name, "LeakyRelu", [v], { alpha: { f: alpha } }));
  }),
  ELU: same((ctx, x) => {
    const alpha = num(ctx.config, "alpha", 1);
    return pointwise(ctx, x, (v) => ctx.em.op(ctx.name, "Elu", [v], { alpha: { f: alpha } }));
  }),
  ThresholdedReLU: same((ctx, x) => {
    const theta = num(ctx.config, "theta", 1);
    return pointwise(
      ctx,
      x,
      (v) => ctx.em.op(ctx.name, "ThresholdedRelu", [v], { alpha: { f: theta } }),
    );
  }),
  PReLU: same((ctx, x) => {
    const a = ctx.weight("alpha");
    const slope = ctx.em.weight(`${ctx.name}/alpha`, a.shape, () => a.data);
    return { name: ctx.em.op(ctx.name, "PRelu", [x.name, slope]), shape: x.shape };
  }),
  Softmax: same((ctx, x) => {
    const axis = num(ctx.config, "axis", -1);
    return {
      name: ctx.em.op(ctx.name, "Softmax", [x.name], { axis: { i: axis } }),
      shape: x.shape,
    };
  }),
};
