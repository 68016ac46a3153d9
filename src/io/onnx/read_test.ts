import { create } from "@bufbuild/protobuf";
import { TensorProtoSchema } from "../../onnx/gen/onnx_pb.ts";
import { bf16BitsToNumber, f16BitsToNumber, toFloat32 } from "../../tensor.ts";
import { assertEquals, withTempDir } from "../../../tests/_assert.ts";
import {
  external,
  f32,
  io,
  model,
  node,
  REALDATA,
  realdataTest,
  writeModel,
} from "../../../tests/_onnx.ts";
import { openOnnxModel } from "../../models/onnx/import.ts";
import { inspectOnnx } from "../../models/onnx/inspect.ts";
import { loadTensor, readOnnxFile } from "./read.ts";
import { tensorFromProto } from "./tensor_proto.ts";

async function assertRejects(
  p: Promise<unknown>,
  cls: ErrorConstructor,
  re: RegExp,
): Promise<Error> {
  const e = await p.then(() => undefined, (e) => e);
  if (!(e instanceof cls) || !re.test(e.message)) {
    throw new Error(`Expected ${cls.name} matching ${re}, got ${e}`);
  }
  return e;
}

const FIX = `${REALDATA}tracel-ai__burn/crates/onnx-ir/tests/fixtures/`;

Deno.test("tensorFromProto() reads every typed field", () => {
  const mk = (dataType: number, init: Record<string, unknown>) =>
    tensorFromProto(create(TensorProtoSchema, { dims: [2n], dataType, ...init }), "t");
  assertEquals([...mk(1, { floatData: [1.5, -2] }).data], [1.5, -2], "float_data");
  assertEquals([...mk(11, { doubleData: [0.1, 2] }).data], [0.1, 2], "double_data");
  assertEquals([...mk(7, { int64Data: [3n, -4n] }).data].map(String), ["3", "-4"], "int64_data");
  assertEquals([...mk(6, { int32Data: [7, -8] }).data], [7, -8], "int32_data");
  assertEquals([...mk(3, { int32Data: [-1, 5] }).data], [-1, 5], "int8 in int32_data");
  assertEquals([...mk(9, { int32Data: [1, 0] }).data], [1, 0], "bool in int32_data");
  assertEquals([...mk(12, { uint64Data: [9n, 10n] }).data], [9, 10], "uint32 in uint64_data");
  // Half precision: the 16-bit patterns in int32_data, kept as patterns.
  const h = mk(10, { int32Data: [0x3c00, 0xc000] });
  assertEquals(
    [h.dtype, ...[...(h.data as Uint16Array)].map(f16BitsToNumber)],
    ["F16", 1, -2],
    "float16",
  );
  const b = mk(16, { int32Data: [0x3f80, 0x4040] });
  assertEquals(
    [b.dtype, ...[...(b.data as Uint16Array)].map(bf16BitsToNumber)],
    ["BF16", 1, 3],
    "bfloat16",
  );
});

Deno.test("tensorFromProto() copies unaligned raw_data and checks its length", () => {
  const buf = new Uint8Array(9);
  new DataView(buf.buffer).setFloat32(1, 2.5, true);
  new DataView(buf.buffer).setFloat32(5, -1, true);
  const raw = buf.subarray(1); // offset 1: not 4-byte aligned
  const t = tensorFromProto(
    create(TensorProtoSchema, { dims: [2n], dataType: 1, rawData: raw }),
    "w",
  );
  assertEquals([...t.data], [2.5, -1]);
  let err: unknown;
  try {
    tensorFromProto(create(TensorProtoSchema, { dims: [3n], dataType: 1, rawData: raw }), '"w"');
  } catch (e) {
    err = e;
  }
  if (!(err instanceof RangeError) || !/"w": raw_data has 8 bytes, expected 12/.test(err.message)) {
    throw new Error(`Unexpected error ${err}`);
  }
});

realdataTest("half-precision initializers stay F16/BF16 and compute as float32", async () => {
  for (const [file, dtype] of [["fp_float16", "F16"], ["fp_bfloat16", "BF16"]] as const) {
    const path = `${REALDATA}kraiskil__onnx2c/test/simple_networks/${file}.onnx`;
    const m = await openOnnxModel(path);
    assertEquals(m.initializers.map((i) => [i.name, i.dtype, i.bytes]), [["data", dtype, 40]]);
    const t = await m.readTensor("data");
    assertEquals(t.dtype, dtype, file);
    assertEquals(m.outputs.map((o) => o.dtype), ["F32"], file);
    // The file holds special values first: NaN, +Inf, -Inf, 123, -123.
    assertEquals([...toFloat32(t).data.slice(0, 5)].map(String), [
      "NaN",
      "Infinity",
      "-Infinity",
      "123",
      "-123",
    ], file);
  }
});

realdataTest(
  "external data is read at non-zero offsets, from several files, and mixed with inline data",
  async () => {
    const cases: [string, string, number, number][] = [
      ["external_data.onnx", "external_data.bin", 320, 64],
      ["external_data_offset.onnx", "external_data_offset.bin", 96, 24],
      ["multi_external_files.onnx", "multi_external_weights.bin", 0, 64],
      ["multi_external_files.onnx", "multi_external_bias.bin", 0, 16],
      ["mixed_data.onnx", "mixed_data.bin", 65536, 16384],
    ];
    for (const [onnx, bin, offset, length] of cases) {
      const file = await readOnnxFile(FIX + onnx);
      const tp = file.proto.graph!.initializer.find((t) =>
        t.externalData.some((e) => e.key === "location" && e.value === bin)
      )!;
      const t = await loadTensor(file, tp);
      const bytes = (await Deno.readFile(FIX + bin)).subarray(offset, offset + length);
      const want = new Float32Array(bytes.slice().buffer);
      assertEquals([...t.data], [...want], `${onnx} ${tp.name}`);
    }
    const mixed = await openOnnxModel(FIX + "mixed_data.onnx");
    assertEquals((await mixed.readTensor("bias")).shape, [64], "inline bias");
  },
);

realdataTest("external data without offset and length keys is the whole file from 0", async () => {
  const dir = `${REALDATA}onnxruntime__onnxruntime-qnn/onnxruntime/test/testdata/`;
  const s = await inspectOnnx(dir + "model_with_external_initializers.onnx");
  assertEquals(s.initializers[0]!.external, { location: "Pads.bin", offset: 0 });
  const m = await openOnnxModel(dir + "model_with_external_initializers.onnx");
  assertEquals([...(await m.readTensor("Pads")).data].map(Number), [0, 0, 1, 1]);
});

realdataTest(
  "an external location that escapes the model's folder is refused before reading",
  async () => {
    const path =
      `${REALDATA}onnxruntime__onnxruntime-qnn/onnxruntime/test/testdata/test_arbitrary_external_file.onnx`;
    for (const open of [openOnnxModel, inspectOnnx, readOnnxFile]) {
      await assertRejects(
        open(path),
        RangeError,
        /test_arbitrary_external_file\.onnx": tensor "evil_weights": external data location "\.\.\/.*etc\/passwd" is outside the model's folder/,
      );
    }
  },
);

Deno.test("absolute and escaping external locations of hand-made files are refused", async () => {
  await withTempDir(async (dir) => {
    // The bytes exist and are readable: only the location rule may stop them.
    await Deno.writeFile(`${dir}/w.bin`, new Uint8Array(16));
    const sub = `${dir}/sub`;
    await Deno.mkdir(sub);
    for (
      const [name, location, re] of [
        ["abs.onnx", `${dir}/w.bin`, /"w": external data location ".*w\.bin" is absolute/],
        ["up.onnx", "../w.bin", /"w": external data location "\.\.\/w\.bin" is outside/],
        ["deep.onnx", "a/../../w.bin", /is outside the model's folder/],
      ] as const
    ) {
      const m = model({
        nodes: [node("Add", ["x", "w"], ["y"])],
        inputs: [io("x", [4])],
        outputs: [io("y", [4])],
        inits: [external("w", [4], 1, { location, offset: "0", length: "16" })],
      });
      const path = await writeModel(sub, name, m);
      const e = await assertRejects(openOnnxModel(path), RangeError, re);
      if (!e.message.includes(path)) throw new Error(`Error does not name the model: ${e.message}`);
    }
    // A location inside the folder that passes through a subfolder is fine.
    await Deno.writeFile(`${sub}/w.bin`, new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer));
    const ok = model({
      nodes: [node("Add", ["x", "w"], ["y"])],
      inputs: [io("x", [4])],
      outputs: [io("y", [4])],
      inits: [external("w", [4], 1, { location: "./x/../w.bin" })],
    });
    const m = await openOnnxModel(await writeModel(sub, "ok.onnx", ok));
    assertEquals([...(await m.readTensor("w")).data], [1, 2, 3, 4]);
  });
});

Deno.test("external data of the wrong length fails naming the file, tensor, expected and actual", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/w.bin`, new Uint8Array(12));
    const m = model({
      nodes: [node("Add", ["x", "w"], ["y"])],
      inputs: [io("x", [4])],
      outputs: [io("y", [4])],
      inits: [external("w", [4], 1, { location: "w.bin" })],
    });
    await assertRejects(
      openOnnxModel(await writeModel(dir, "short.onnx", m)),
      RangeError,
      /short\.onnx": tensor "w": external data in "w\.bin" at offset 0 has 12 bytes, expected 16 for F32 \[4\]/,
    );
  });
});

realdataTest("files that are not ONNX fail with a SyntaxError", async () => {
  await assertRejects(
    readOnnxFile(`${REALDATA}tensorflow__tfjs/e2e/custom_module/dense_model/model/model.json`),
    SyntaxError,
    /is JSON .*not an ONNX ModelProto/,
  );
  await assertRejects(
    readOnnxFile(`${REALDATA}huggingface__safetensors/samples/overall.safetensors`),
    SyntaxError,
    /overall\.safetensors": not (a valid|an ONNX) ModelProto/,
  );
});

Deno.test("f32() helper and Float32 initializers round-trip", () => {
  assertEquals([...tensorFromProto(f32("a", [2], [1, 2]), "a").data], [1, 2]);
});

Deno.test("an external Constant tensor with an absolute location is refused too", async () => {
  await withTempDir(async (dir) => {
    const value = external("", [4], 1, { location: "/etc/passwd" });
    const m = model({
      nodes: [node("Constant", [], ["c"], { value: { t: value } }, { name: "evil" })],
      inputs: [],
      outputs: [io("c", [4])],
    });
    await assertRejects(
      openOnnxModel(await writeModel(dir, "const.onnx", m)),
      RangeError,
      /const\.onnx": tensor "evil \(attribute\)": external data location "\/etc\/passwd" is absolute/,
    );
  });
});
