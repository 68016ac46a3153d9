/**
 * (in progress)
 *
 * @module
 */

import type { Vjp } from "../vjp.ts";

/** Gradient rules of this family. */
export const VJPS: Record<string, Vjp> = {};
