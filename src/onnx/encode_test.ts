import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  TensorProtoSchema,
} from "./gen/onnx_pb.ts";
import { encodeModelFast } from "./encode.ts";

function model(sizes: number[]) {
  const initializer = sizes.map((n, i) =>
    create(TensorProtoSchema, {
      name: `w${i}`,
      dims: [BigInt(n / 4)],
      dataType: 1,
      rawData: Uint8Array.from({ length: n }, (_, j) => (j * 31 + i) & 0xff),
    })
  );
  return create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: "test",
    graph: create(GraphProtoSchema, {
      name: "g",
      node: [create(NodeProtoSchema, { opType: "Identity", input: ["w0"], output: ["y"] })],
      initializer,
    }),
  });
}

Deno.test("encodeModelFast() decodes to the same message as toBinary() with big and small initializers", () => {
  const m = model([8, 1 << 16, 300_000, 12, 1 << 20]);
  const fast = encodeModelFast(m);
  const slow = toBinary(ModelProtoSchema, m);
  if (fast.byteLength !== slow.byteLength) {
    throw new Error(`sizes differ: ${fast.byteLength} vs ${slow.byteLength}`);
  }
  const a = fromBinary(ModelProtoSchema, fast);
  const b = fromBinary(ModelProtoSchema, slow);
  // Initializers come out in a different order: compare as sets by name.
  const byName = (x: typeof a) => new Map(x.graph!.initializer.map((t) => [t.name, t]));
  const ia = byName(a), ib = byName(b);
  if (ia.size !== ib.size) throw new Error("initializer counts differ");
  for (const [k, t] of ib) {
    if (!equals(TensorProtoSchema, t, ia.get(k)!)) throw new Error(`initializer ${k} differs`);
  }
  a.graph!.initializer = [];
  b.graph!.initializer = [];
  if (!equals(ModelProtoSchema, a, b)) throw new Error("models differ outside initializers");
});

Deno.test("encodeModelFast() falls back to toBinary() when nothing is big", () => {
  const m = model([8, 16]);
  const fast = encodeModelFast(m);
  const slow = toBinary(ModelProtoSchema, m);
  if (fast.join() !== slow.join()) throw new Error("bytes differ");
});
