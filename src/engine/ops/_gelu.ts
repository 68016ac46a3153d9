/**
 * GELU (Hendrycks & Gimpel, "Gaussian Error Linear Units", arXiv:1606.08415) and erf, re-exported
 * by `activation.ts`.
 *
 * - exact: `x·Φ(x) = 0.5·x·(1 + erf(x/√2))`
 * - tanh approximation: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (GPT-2, HF `gelu_new`)
 *
 * Form `"op"` emits one ONNX `Gelu` node (opset 20) with a hand-written VJP; form `"decomposed"`
 * emits the primitives in the order exporters write them, and the autograd differentiates those.
 *
 * onnxruntime 1.30's CPU provider has no float64 kernel for Erf, hence none for
 * `Gelu(approximate="none")` either (its function body calls Erf): graphs holding them cannot run as
 * the float64 twin. The tanh forms have no such gap.
 *
 * @module
 */

import { str, type Value } from "../graph.ts";
import { assertFloat } from "../shapes.ts";
import { inputsOf, type Vjp } from "../vjp.ts";
import { scalar } from "./constant.ts";
import { add, div, exp, mul, pow, sqrt, sub } from "./elementwise.ts";

/** Options of {@link gelu}. */
export interface GeluOptions {
  /** `"none"` (exact, default) or `"tanh"` (the tanh approximation). */
  approximate?: "none" | "tanh";
  /** `"op"`: one ONNX Gelu node, opset 20 (default); `"decomposed"`: Erf/Tanh/Mul/Add primitives. */
  form?: "op" | "decomposed";
}

const GELU_K = 0.044715;

function unary(op: string, x: Value): Value {
  assertFloat(op, x);
  return x.graph.node(op, [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

/**
 * The error function, element-wise (ONNX Erf).
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { erf } from "./activation.ts";
 * const g = new Graph();
 * const y = erf(g.input("x", "F32", ["batch", 4]));
 * ```
 */
export const erf = (x: Value): Value => unary("Erf", x);

// saved for backward: x
const erfVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = inputsOf(node)[0]!;
  return [mul(dy!, mul(exp(mul(mul(x, x), -1)), 2 / Math.sqrt(Math.PI)))];
};

/** `tanh`, local so that this file does not import its sibling `activation.ts`. */
const tanhOf = (x: Value): Value => unary("Tanh", x);

/**
 * GELU, exact or tanh-approximated, as one ONNX op (opset 20) or composed from primitives.
 *
 * The decomposed exact form is `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)`, node for node what
 * `torch.onnx` exports for `nn.GELU()`; the decomposed tanh form is HF's `gelu_new`.
 *
 * @example
 * ```ts
 * import { Graph } from "../graph.ts";
 * import { gelu } from "./activation.ts";
 * const g = new Graph();
 * const x = g.input("x", "F32", ["batch", 4]);
 * const exact = gelu(x); // one Gelu node; the graph now needs opset 20
 * const gpt2 = gelu(x, { approximate: "tanh", form: "decomposed" });
 * ```
 */
export function gelu(x: Value, opts: GeluOptions = {}): Value {
  const { approximate = "none", form = "op" } = opts;
  assertFloat("Gelu", x);
  if (approximate !== "none" && approximate !== "tanh") {
    throw new RangeError(`Invalid GELU approximation "${approximate}": expected "none" or "tanh"`);
  }
  if (form === "op") {
    x.graph.requireOpset(20);
    return x.graph.node("Gelu", [x], { approximate: str(approximate) }, [{
      dtype: x.dtype,
      shape: x.shape,
    }])[0]!;
  }
  if (form !== "decomposed") {
    throw new RangeError(`Invalid GELU form "${form}": expected "op" or "decomposed"`);
  }
  if (approximate === "none") return mul(mul(x, add(erf(div(x, Math.SQRT2)), 1)), 0.5);
  const inner = mul(add(x, mul(pow(x, 3), GELU_K)), Math.sqrt(2 / Math.PI));
  return mul(mul(x, 0.5), add(tanhOf(inner), 1));
}

// saved for backward: x (the derivative is recomputed from it, cheaper than saving Φ(x))
const geluVjp: Vjp = ({ node, dy: [dy] }) => {
  const x = inputsOf(node)[0]!;
  const approx = (node.attrs["approximate"] as { value: string } | undefined)?.value ?? "none";
  return [mul(dy!, approx === "tanh" ? dGeluTanh(x) : dGeluExact(x))];
};

/** d GELU / dx for the exact form: `Φ(x) + x·φ(x)`. */
function dGeluExact(x: Value): Value {
  const cdf = mul(add(erf(mul(x, Math.SQRT1_2)), 1), 0.5); // Φ(x)
  const pdf = mul(exp(mul(mul(x, x), -0.5)), 1 / Math.sqrt(2 * Math.PI)); // φ(x)
  return add(cdf, mul(x, pdf));
}

/**
 * d GELU / dx for the tanh form, with `u = c·(x + k·x³)`, `t = tanh(u)`:
 * `0.5·(1 + t) + 0.5·x·(1 − t²)·c·(1 + 3k·x²)`.
 */
function dGeluTanh(x: Value): Value {
  // c = Sqrt(2/π as a float), as in the ONNX Gelu function body, so that the float64 twin
  // differentiates exactly the function onnxruntime computes.
  const c = sqrt(scalar(x.graph, 2 / Math.PI, x.dtype));
  const x2 = mul(x, x);
  const t = tanhOf(mul(c, add(x, mul(mul(x2, x), GELU_K))));
  const du = mul(c, add(mul(mul(x2, GELU_K), 3), 1)); // du/dx
  const sech2 = sub(1, mul(t, t));
  return add(mul(add(t, 1), 0.5), mul(mul(mul(x, 0.5), sech2), du));
}

/** Gradient rules of GELU and Erf. */
export const VJPS: Record<string, Vjp> = {
  Erf: erfVjp,
  Gelu: geluVjp,
};
