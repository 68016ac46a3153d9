/**
 * The small dense linear algebra that re-ranking a low-rank product needs, in float64:
 * Householder QR of a tall thin matrix and a one-sided Jacobi SVD (Hestenes, 1958; Demmel and
 * Veselić, 1992) of a small square core. Imported by `combine.ts` only.
 *
 * Why here and not in onnxruntime: ONNX has no QR or SVD operator. Why not a library: the
 * matrices are `[out or in, R]` and `[R, R]` with R the sum of the adapters' ranks (tens), so the
 * work is O((out + in)·R²) — milliseconds — and Jacobi is accurate to the last bits for such cores.
 *
 * Matrices are row-major `Float64Array`s.
 *
 * @module
 */

/**
 * Thin QR of `m` `[rows, cols]`: `Q [rows, p]` with orthonormal columns and `R [p, cols]`, p = min.
 *
 * @example
 * ```ts
 * import { qr } from "./_svd.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const { Q, R } = qr(new Float64Array([3, 4]), 2, 1);
 * const round = (a: Float64Array) => Array.from(a, (v) => Number(v.toFixed(12)));
 * deepStrictEqual(round(Q), [-0.6, -0.8]);
 * deepStrictEqual(round(R), [-5]);
 * ```
 */
export function qr(m: Float64Array, rows: number, cols: number): {
  Q: Float64Array;
  R: Float64Array;
  p: number;
} {
  const p = Math.min(rows, cols);
  const a = Float64Array.from(m);
  const vs: Float64Array[] = [];
  for (let k = 0; k < p; k++) {
    // Householder vector v for column k, rows k..rows-1: (I - 2vvᵀ) zeroes below the diagonal.
    const v = new Float64Array(rows - k);
    let norm = 0;
    for (let i = k; i < rows; i++) norm += a[i * cols + k]! ** 2;
    norm = Math.sqrt(norm);
    const x0 = a[k * cols + k]!;
    const alpha = x0 >= 0 ? -norm : norm;
    for (let i = k; i < rows; i++) v[i - k] = a[i * cols + k]!;
    v[0] = x0 - alpha;
    let vn = 0;
    for (let i = 0; i < v.length; i++) vn += v[i]! ** 2;
    vn = Math.sqrt(vn);
    if (vn > 0) { for (let i = 0; i < v.length; i++) v[i] = v[i]! / vn; }
    vs.push(v);
    for (let j = k; j < cols; j++) {
      let dot = 0;
      for (let i = k; i < rows; i++) dot += v[i - k]! * a[i * cols + j]!;
      for (let i = k; i < rows; i++) a[i * cols + j] = a[i * cols + j]! - 2 * dot * v[i - k]!;
    }
  }
  const R = new Float64Array(p * cols);
  for (let i = 0; i < p; i++) for (let j = i; j < cols; j++) R[i * cols + j] = a[i * cols + j]!;
  // Q = H_0 · … · H_{p-1} · I[:, :p], applied from the last reflector back.
  const Q = new Float64Array(rows * p);
  for (let i = 0; i < p; i++) Q[i * p + i] = 1;
  for (let k = p - 1; k >= 0; k--) {
    const v = vs[k]!;
    for (let j = 0; j < p; j++) {
      let dot = 0;
      for (let i = k; i < rows; i++) dot += v[i - k]! * Q[i * p + j]!;
      for (let i = k; i < rows; i++) Q[i * p + j] = Q[i * p + j]! - 2 * dot * v[i - k]!;
    }
  }
  return { Q, R, p };
}

/**
 * SVD of `m` `[rows, cols]`: `U [rows, q]`, `S [q]` descending, `V [cols, q]`, q = min(rows, cols),
 * with `m = U · diag(S) · Vᵀ`.
 *
 * @example
 * ```ts
 * import { svd } from "./_svd.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(svd(new Float64Array([0, 2, 3, 0]), 2, 2).S, new Float64Array([3, 2]));
 * ```
 */
export function svd(m: Float64Array, rows: number, cols: number): {
  U: Float64Array;
  S: Float64Array;
  V: Float64Array;
  q: number;
} {
  if (rows < cols) {
    const t = transpose(m, rows, cols);
    const r = svd(t, cols, rows);
    return { U: r.V, S: r.S, V: r.U, q: r.q };
  }
  const q = cols;
  const u = Float64Array.from(m); // columns are orthogonalised in place
  const v = new Float64Array(q * q);
  for (let i = 0; i < q; i++) v[i * q + i] = 1;
  const eps = 1e-15;
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let i = 0; i < q - 1; i++) {
      for (let j = i + 1; j < q; j++) {
        let a = 0, b = 0, g = 0;
        for (let k = 0; k < rows; k++) {
          const x = u[k * q + i]!, y = u[k * q + j]!;
          a += x * x;
          b += y * y;
          g += x * y;
        }
        if (Math.abs(g) <= eps * Math.sqrt(a * b) || g === 0) continue;
        rotated = true;
        // The rotation that makes columns i and j orthogonal (Golub & Van Loan, §8.6.3).
        const zeta = (b - a) / (2 * g);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        rotate(u, rows, q, i, j, c, s);
        rotate(v, q, q, i, j, c, s);
      }
    }
    if (!rotated) break;
  }
  const S = new Float64Array(q);
  for (let j = 0; j < q; j++) {
    let n = 0;
    for (let k = 0; k < rows; k++) n += u[k * q + j]! ** 2;
    S[j] = Math.sqrt(n);
    if (S[j]! > 0) { for (let k = 0; k < rows; k++) u[k * q + j] = u[k * q + j]! / S[j]!; }
  }
  const order = [...S.keys()].sort((x, y) => S[y]! - S[x]!);
  const U = new Float64Array(rows * q), V = new Float64Array(q * q), Ss = new Float64Array(q);
  order.forEach((from, to) => {
    Ss[to] = S[from]!;
    for (let k = 0; k < rows; k++) U[k * q + to] = u[k * q + from]!;
    for (let k = 0; k < q; k++) V[k * q + to] = v[k * q + from]!;
  });
  return { U, S: Ss, V, q };
}

function rotate(
  m: Float64Array,
  rows: number,
  cols: number,
  i: number,
  j: number,
  c: number,
  s: number,
) {
  for (let k = 0; k < rows; k++) {
    const x = m[k * cols + i]!, y = m[k * cols + j]!;
    m[k * cols + i] = c * x - s * y;
    m[k * cols + j] = s * x + c * y;
  }
}

/**
 * `m` `[rows, cols]` transposed.
 *
 * @example
 * ```ts
 * import { transpose } from "./_svd.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(
 *   transpose(new Float64Array([1, 2, 3, 4, 5, 6]), 2, 3),
 *   new Float64Array([1, 4, 2, 5, 3, 6]),
 * );
 * ```
 */
export function transpose(m: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = m[i * cols + j]!;
  return t;
}

/**
 * `a [n, k] · b [k, m]`.
 *
 * @example
 * ```ts
 * import { matmul } from "./_svd.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * deepStrictEqual(
 *   matmul(new Float64Array([1, 2]), new Float64Array([3, 4]), 1, 2, 1),
 *   new Float64Array([11]),
 * );
 * ```
 */
export function matmul(a: Float64Array, b: Float64Array, n: number, k: number, m: number) {
  const c = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let l = 0; l < k; l++) {
      const x = a[i * k + l]!;
      if (x === 0) continue;
      for (let j = 0; j < m; j++) c[i * m + j] = c[i * m + j]! + x * b[l * m + j]!;
    }
  }
  return c;
}
