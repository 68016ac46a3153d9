import { deepStrictEqual, ok } from "node:assert/strict";
import { describeOnnx } from "./_inspect_onnx.ts";
import { io, model, node, writeModel } from "../tests/_onnx.ts";
import { withTempDir } from "../tests/_assert.ts";

Deno.test("ffwd inspect of an ONNX file prints the outputs' count, then their names quoted", async () => {
  await withTempDir(async (dir) => {
    // PyTorch's TorchScript export names values by number: an output "15" is not 15 outputs.
    const path = await writeModel(
      dir,
      "numbered.onnx",
      model({
        nodes: [node("Relu", ["x"], ["15"]), node("Neg", ["x"], ["logits"])],
        inputs: [io("x", ["batch", 4])],
        outputs: [io("15", ["batch", 4]), io("logits", ["batch", 4])],
      }),
    );
    const { json, table } = await describeOnnx(path);
    deepStrictEqual((json as { outputs: string[] }).outputs, ["15", "logits"]);
    const lines = table.split("\n");
    ok(lines.includes('outputs: 2 ("15", "logits")'), table);
  });
});
