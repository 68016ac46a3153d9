/**
 * The op table: every op the autograd can differentiate, listed explicitly by family.
 *
 * @module
 */

import type { Vjp } from "../vjp.ts";
import { VJPS as activation } from "./activation.ts";
import { VJPS as cast } from "./cast.ts";
import { VJPS as concat } from "./concat.ts";
import { VJPS as constant } from "./constant.ts";
import { VJPS as conv } from "./conv.ts";
import { VJPS as dropout } from "./dropout.ts";
import { VJPS as elementwise } from "./elementwise.ts";
import { VJPS as gather } from "./gather.ts";
import { VJPS as loss } from "./loss.ts";
import { VJPS as matmul } from "./matmul.ts";
import { VJPS as normalization } from "./normalization.ts";
import { VJPS as reduce } from "./reduce.ts";
import { VJPS as select } from "./select.ts";
import { VJPS as shape } from "./shape.ts";
import { VJPS as slice } from "./slice.ts";

const FAMILIES: Readonly<Record<string, Readonly<Record<string, Vjp>>>> = {
  activation,
  cast,
  concat,
  constant,
  conv,
  dropout,
  elementwise,
  gather,
  loss,
  matmul,
  normalization,
  reduce,
  select,
  shape,
  slice,
};

function merge(families: typeof FAMILIES): Record<string, Vjp> {
  const table: Record<string, Vjp> = {};
  const owner: Record<string, string> = {};
  for (const [family, rules] of Object.entries(families)) {
    for (const [op, vjp] of Object.entries(rules)) {
      if (owner[op]) {
        throw new Error(`Op ${op} has gradient rules in both ${owner[op]}.ts and ${family}.ts`);
      }
      owner[op] = family;
      table[op] = vjp;
    }
  }
  return table;
}

/** Gradient rule of each ONNX op type (default domain) that ffwd can differentiate. */
export const VJP_TABLE: Readonly<Record<string, Vjp>> = merge(FAMILIES);
