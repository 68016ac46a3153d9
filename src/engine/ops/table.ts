/**
 * The op table: every op the autograd can differentiate, listed explicitly by family.
 *
 * @module
 */

import type { Vjp } from "../vjp.ts";
import { VJPS as activation } from "./activation.ts";
import { VJPS as constant } from "./constant.ts";
import { VJPS as dropout } from "./dropout.ts";
import { VJPS as elementwise } from "./elementwise.ts";
import { VJPS as loss } from "./loss.ts";
import { VJPS as matmul } from "./matmul.ts";
import { VJPS as normalization } from "./normalization.ts";
import { VJPS as reduce } from "./reduce.ts";
import { VJPS as shape } from "./shape.ts";

/** Gradient rule of each ONNX op type (default domain) that ffwd can differentiate. */
export const VJP_TABLE: Readonly<Record<string, Vjp>> = {
  ...activation,
  ...constant,
  ...dropout,
  ...elementwise,
  ...loss,
  ...matmul,
  ...normalization,
  ...reduce,
  ...shape,
};
