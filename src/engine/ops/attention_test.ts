// The VJPs between a transformer's adapters and its loss, checked against float64 finite
// differences in the shapes attention uses them: activation MatMuls over [batch, heads, seq, d],
// softmax over any axis, both mask styles, and reshapes whose targets are computed at run time.
import { gradcheck } from "../gradcheck.ts";
import type { Value } from "../graph.ts";
import { logSoftmax, softmax } from "./activation.ts";
import { cast } from "./cast.ts";
import { concat } from "./concat.ts";
import { dimOf, int64s, shapeOf } from "./constant.ts";
import { add, div, mul, sub } from "./elementwise.ts";
import { matmul } from "./matmul.ts";
import { layerNorm } from "./normalization.ts";
import { equal, where } from "./select.ts";
import { expand, reshape, reshapeTo, transpose, transposeLast2, unsqueeze } from "./shape.ts";

/** float32's lowest value: what `torch.finfo(torch.float32).min` masks with. */
const LOWEST = -3.4028234663852886e38;

/** A padding mask: 1 keeps a key, 0 hides it (row 0 hides its last key, row 1 its first two). */
const MASK = { shape: [2, 3], data: [1, 1, 0, 0, 0, 1], dtype: "I64" as const };

Deno.test("QKᵀ and attn·V over [batch, heads, seq, d] match finite differences in both operands", async () => {
  await gradcheck(([q, k]) => matmul(q!, transposeLast2(k!)), {
    q: { shape: [2, 2, 3, 4] },
    k: { shape: [2, 2, 3, 4] },
  });
  await gradcheck(([p, v]) => matmul(p!, v!), {
    p: { shape: [2, 2, 3, 3] },
    v: { shape: [2, 2, 3, 4] },
  });
  // One key/value head shared by every query head (multi-query attention): broadcast over heads.
  await gradcheck(([q, k]) => matmul(q!, transposeLast2(k!)), {
    q: { shape: [2, 3, 2, 4] },
    k: { shape: [2, 1, 2, 4] },
  });
});

Deno.test("softmax and logSoftmax over every axis of a 4-D score tensor match finite differences", async () => {
  for (const axis of [0, 1, 2, 3, -1]) {
    await gradcheck(([s]) => softmax(s!, axis), { s: { shape: [2, 2, 3, 3] } });
    await gradcheck(([s]) => logSoftmax(s!, axis), { s: { shape: [2, 2, 3, 3] } });
  }
});

/** BERT's additive mask: `(1 − mask[:, None, None, :]) · lowest`, added to the scores. */
function additiveMask(scores: Value, mask: Value): Value {
  const keep = cast(unsqueeze(mask, [1, 2]), "F32"); // [batch, 1, 1, seq]
  return add(scores, mul(sub(1, keep), LOWEST));
}

/** DistilBERT's mask: `scores.masked_fill((mask == 0).view(b, 1, 1, k).expand_as(scores), lowest)`. */
function whereMask(scores: Value, mask: Value): Value {
  const g = scores.graph;
  const view = concat([dimOf(mask, 0), int64s(g, [1, 1]), dimOf(mask, 1)], 0);
  const hidden = reshapeTo(equal(mask, 0), view, [mask.shape[0]!, 1, 1, mask.shape[1]!]);
  return where(expand(hidden, shapeOf(scores), scores.shape), LOWEST, scores);
}

Deno.test("additive and Where masks before softmax pass the gradient to the kept scores only", async () => {
  for (const masked of [additiveMask, whereMask]) {
    await gradcheck(([s, m]) => softmax(masked(s!, m!)), {
      s: { shape: [2, 2, 3, 3] },
      m: MASK,
    });
  }
});

Deno.test("a masked multi-head attention block with post-LN matches finite differences", async () => {
  // x [2, 3, 4], two heads of 2; every reshape target is computed at run time from x's shape,
  // as torch.onnx.export writes `x.view(x.size()[:-1] + (heads, d))`.
  const block = ([x, wq, wk, wv, m]: Value[]) => {
    const g = x!.graph;
    const lead = [dimOf(x!, 0), dimOf(x!, 1)];
    const heads = (t: Value) =>
      transpose(reshapeTo(t, concat([...lead, int64s(g, [2, 2])], 0), [2, 3, 2, 2]), [0, 2, 1, 3]);
    const [q, k, v] = [wq, wk, wv].map((w) => heads(matmul(x!, w!)));
    const scores = div(matmul(q!, transpose(k!, [0, 1, 3, 2])), Math.SQRT2);
    const context = matmul(softmax(additiveMask(scores, m!)), v!); // [2, 2, 3, 2]
    const merged = reshape(transpose(context, [0, 2, 1, 3]), [2, 3, 4]);
    const ln = g.constant({ dtype: "F32", shape: [4], data: new Float32Array([1, 0.5, 2, 1]) });
    return layerNorm(add(x!, merged), ln, null);
  };
  await gradcheck(block, {
    x: { shape: [2, 3, 4] },
    wq: { shape: [4, 4] },
    wk: { shape: [4, 4] },
    wv: { shape: [4, 4] },
    m: MASK,
  });
});
