import { gradcheck } from "../gradcheck.ts";
import { add } from "./elementwise.ts";
import { gemm, matmul } from "./matmul.ts";
import { relu } from "./activation.ts";

Deno.test("MatMul 2-D gradients match finite differences", async () => {
  await gradcheck(([a, b]) => matmul(a!, b!), { a: { shape: [3, 4] }, b: { shape: [4, 2] } });
});

Deno.test("MatMul batched and broadcast gradients match finite differences", async () => {
  await gradcheck(([a, b]) => matmul(a!, b!), { a: { shape: [2, 3, 4] }, b: { shape: [4, 2] } });
  await gradcheck(([a, b]) => matmul(a!, b!), {
    a: { shape: [2, 1, 3, 4] },
    b: { shape: [3, 4, 2] },
  });
  await gradcheck(([a, b]) => matmul(a!, b!), { a: { shape: [4] }, b: { shape: [2, 4, 3] } });
  await gradcheck(([a, b]) => matmul(a!, b!), { a: { shape: [3, 4] }, b: { shape: [4] } });
});

Deno.test("Gemm gradients match finite differences for every transpose and alpha, beta", async () => {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      await gradcheck(
        ([a, b, c]) => gemm(a!, b!, c!, { alpha: 0.7, beta: 1.3, transA, transB }),
        {
          a: { shape: transA ? [4, 3] : [3, 4] },
          b: { shape: transB ? [2, 4] : [4, 2] },
          c: { shape: [2] },
        },
      );
    }
  }
});

Deno.test("an MLP with bias and ReLU gradients match finite differences", async () => {
  await gradcheck(
    ([x, w, b]) => relu(add(matmul(x!, w!), b!)),
    { x: { shape: [5, 3] }, w: { shape: [3, 4] }, b: { shape: [4] } },
  );
});
