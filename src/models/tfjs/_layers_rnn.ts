/**
 * Keras recurrent layers as the ONNX LSTM, GRU and RNN ops (onnx/docs/Operators.md, opset 14).
 *
 * Keras stores `kernel` `[in, gates · units]`, `recurrent_kernel` `[units, gates · units]` and
 * `bias` `[gates · units]`; ONNX reads `W` `[1, gates · hidden, in]`, `R` `[1, gates · hidden,
 * hidden]` and `B` `[1, 2 · gates · hidden]` (input biases, then recurrent ones). Gate order:
 * Keras LSTM is i, f, c, o and ONNX LSTM is i, o, f, c, so the blocks are reordered; Keras and ONNX
 * GRU both use z, r, h. GRU's `reset_after` (Keras 2 and 3's default, a `[2, 3 · units]` bias with
 * the recurrent bias in row 1) is ONNX's `linear_before_reset = 1`; TF.js's GRU is the
 * `reset_after = false` form (recurrent bias zero). Activations map to ONNX's names
 * (`hard_sigmoid` is HardSigmoid with α = 0.2, or 1/6 in Keras 3).
 *
 * `go_backwards` reverses the sequence before a forward pass (Keras then returns sequences in
 * that reversed order too); `return_sequences` and `return_state` pick `Y`, `Y_h` and `Y_c`.
 * Stateful layers, masks and `time_major` inputs are refused.
 *
 * @module
 */

import { type Attr, type KTensor, range } from "./_emit.ts";
import {
  activationName,
  type Converter,
  expectRank,
  flag,
  type LayerCtx,
  num,
  shapeText,
} from "./_keras.ts";

interface RnnActivation {
  readonly op: string;
  readonly alpha?: number;
  readonly beta?: number;
}

function rnnActivation(ctx: LayerCtx, key: string, fallback: string): RnnActivation {
  const v = ctx.config[key];
  const name = (v === undefined || v === null ? fallback : activationName(v))
    .replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`);
  const known: Record<string, RnnActivation> = {
    tanh: { op: "Tanh" },
    sigmoid: { op: "Sigmoid" },
    hard_sigmoid: { op: "HardSigmoid", alpha: ctx.keras3 ? 1 / 6 : 0.2, beta: 0.5 },
    relu: { op: "Relu" },
    linear: { op: "Affine", alpha: 1, beta: 0 },
    softsign: { op: "Softsign" },
    softplus: { op: "Softplus" },
    elu: { op: "Elu", alpha: 1 },
  };
  return known[name] ?? ctx.fail(
    `its ${key.replace("_", " ")} "${name}" has no ONNX ${ctx.cls} form (supported: ${
      Object.keys(known).join(", ")
    })`,
  );
}

const GATES: Readonly<Record<string, readonly number[]>> = {
  LSTM: [0, 3, 1, 2], // ONNX i, o, f, c from Keras i, f, c, o
  GRU: [0, 1, 2],
  SimpleRNN: [0],
};

/** `m` `[rows, gates · units]` as ONNX's `[gates · units, rows]`, its gate blocks reordered. */
function gatesFirst(m: Float32Array, rows: number, units: number, order: readonly number[]) {
  const g = order.length;
  const out = new Float32Array(m.length);
  for (let gate = 0; gate < g; gate++) {
    for (let j = 0; j < units; j++) {
      const src = order[gate]! * units + j;
      for (let r = 0; r < rows; r++) out[(gate * units + j) * rows + r] = m[r * g * units + src]!;
    }
  }
  return out;
}

function recurrent(kind: "LSTM" | "GRU" | "SimpleRNN"): Converter {
  return (ctx, [x]) => {
    const { em, name, config: c } = ctx;
    expectRank(ctx, x!, 3);
    for (const key of ["stateful", "time_major"]) {
      if (flag(c, key, false)) ctx.fail(`${key} is true, which ffwd does not convert`);
    }
    const order = GATES[kind]!;
    const g = order.length;
    const units = num(c, "units", 0);
    const kernel = ctx.weight("kernel");
    const rec = ctx.weight("recurrent_kernel");
    const inF = kernel.shape[0]!;
    if (
      kernel.shape[1] !== g * units || rec.shape.join() !== `${units},${g * units}` ||
      (x!.shape[2] !== null && x!.shape[2] !== inF)
    ) {
      ctx.fail(
        `its input is ${shapeText(x!.shape)}, its kernel [${kernel.shape.join(", ")}] and its ` +
          `recurrent kernel [${rec.shape.join(", ")}], which do not fit ${units} units`,
      );
    }
    const bias = flag(c, "use_bias", true) ? ctx.weight("bias") : null;
    // The bias tells reset_after apart ([2, 3·units]); without one, the config does (TF.js
    // leaves it out: false).
    const resetAfter = kind === "GRU" &&
      (bias ? bias.shape.length === 2 : flag(c, "reset_after", false));
    const b = new Float32Array(2 * g * units);
    if (bias) {
      const rows = bias.shape.length === 2 ? 2 : 1;
      const parts = gatesFirst(bias.data, rows, units, order); // [g·units, rows]
      for (let i = 0; i < g * units; i++) {
        b[i] = parts[i * rows]!;
        if (rows === 2) b[g * units + i] = parts[i * rows + 1]!;
      }
    }
    const W = em.weight(
      `${name}/kernel`,
      [1, g * units, inF],
      () => gatesFirst(kernel.data, inF, units, order),
    );
    const R = em.weight(
      `${name}/recurrent_kernel`,
      [1, g * units, units],
      () => gatesFirst(rec.data, units, units, order),
    );
    const B = em.weight(`${name}/bias`, [1, 2 * g * units], () => b);
    let seq = x!.name;
    if (flag(c, "go_backwards", false)) {
      const ints = (v: number[]) => em.ints(name, v);
      seq = em.op(
        name,
        "Slice",
        [seq, ints([-1]), ints([Number.MIN_SAFE_INTEGER]), ints([1]), ints([-1])],
        {},
        "Reverse",
      );
    }
    const xt = em.op(name, "Transpose", [seq], { perm: { ints: [1, 0, 2] } }); // [steps, batch, in]
    const acts = kind === "SimpleRNN" ? [rnnActivation(ctx, "activation", "tanh")] : [
      rnnActivation(ctx, "recurrent_activation", "hard_sigmoid"),
      rnnActivation(ctx, "activation", "tanh"),
    ];
    if (kind === "LSTM") acts.push(acts[1]!);
    const attrs: Record<string, Attr> = {
      hidden_size: { i: units },
      activations: { strings: acts.map((a) => a.op) },
      direction: { s: "forward" },
    };
    const alphas = acts.flatMap((a) => a.alpha === undefined ? [] : [a.alpha]);
    const betas = acts.flatMap((a) => a.beta === undefined ? [] : [a.beta]);
    if (alphas.length) attrs.activation_alpha = { floats: alphas };
    if (betas.length) attrs.activation_beta = { floats: betas };
    if (kind === "GRU") attrs.linear_before_reset = { i: resetAfter ? 1 : 0 };
    const sequences = flag(c, "return_sequences", false);
    const states = flag(c, "return_state", false);
    const [Y, Yh, Yc] = em.node(name, kind === "SimpleRNN" ? "RNN" : kind, [xt, W, R, B], attrs, [
      sequences,
      !sequences || states,
      kind === "LSTM" && states,
    ]);
    const squeeze = (v: string, axis: number) => em.op(name, "Squeeze", [v, em.ints(name, [axis])]);
    const last = (v: string): KTensor => ({ name: squeeze(v, 0), shape: [null, units] });
    const out: KTensor = sequences
      ? {
        name: em.op(name, "Transpose", [squeeze(Y!, 1)], { perm: { ints: [1, 0, 2] } }),
        shape: [null, x!.shape[1]!, units],
      }
      : last(Yh!);
    if (!states) return [out];
    return [out, ...range(0, kind === "LSTM" ? 2 : 1).map((i) => last(i === 0 ? Yh! : Yc!))];
  };
}

/** The recurrent layers, by class. */
export const RNN_LAYERS: Readonly<Record<string, Converter>> = {
  LSTM: recurrent("LSTM"),
  GRU: recurrent("GRU"),
  SimpleRNN: recurrent("SimpleRNN"),
};
