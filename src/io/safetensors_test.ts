import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import {
  allocData,
  type DType,
  DTYPES,
  fromBytes,
  type Tensor,
  tensor,
  toBytes,
} from "../tensor.ts";
import {
  deserializeSafetensors,
  type LazyTensor,
  openSafetensors,
  parseSafetensorsHeader,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
} from "./safetensors.ts";
import { withTempDir } from "../../tests/_assert.ts";

const enc = new TextEncoder();

/** A tensor of `dtype` and `shape` whose bytes are a recognisable pattern. */
function patterned(dtype: DType, shape: number[], seed = 1): Tensor {
  const data = allocData(dtype, shape.reduce((a, b) => a * b, 1));
  const bytes = new Uint8Array(data.buffer);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + seed * 7) & 0xff;
  return { dtype, shape, data };
}

/** A safetensors file from a literal header object (or text) and data bytes. */
function fileOf(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = enc.encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function sameTensor(a: Tensor, b: Tensor, label: string): void {
  strictEqual(a.dtype, b.dtype, label);
  deepStrictEqual([...a.shape], [...b.shape], label);
  deepStrictEqual(toBytes(a), toBytes(b), label);
}

// --- layout, checked against the reference implementation's own test vectors -----------------

Deno.test("serializeSafetensors() matches the reference bytes for one F32 tensor", () => {
  const t = tensor("F32", [1, 2, 3], new Float32Array([0, 1, 2, 3, 4, 5]));
  const out = serializeSafetensors({ "attn.0": t });
  const json = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
  deepStrictEqual(out.subarray(0, 8), new Uint8Array([64, 0, 0, 0, 0, 0, 0, 0]));
  strictEqual(new TextDecoder().decode(out.subarray(8, 72)), json);
  deepStrictEqual(out.subarray(72), toBytes(t));
});

Deno.test("serializeSafetensors() pads the header with spaces to 8 bytes, like the reference", () => {
  const t = tensor("F32", [1, 1, 2, 3], new Float32Array([0, 1, 2, 3, 4, 5]));
  const out = serializeSafetensors({ attn0: t });
  strictEqual(new DataView(out.buffer).getBigUint64(0, true), 72n);
  strictEqual(
    new TextDecoder().decode(out.subarray(8, 80)),
    '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ',
  );
  deepStrictEqual(
    serializeSafetensors({}),
    new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]),
  );
  deepStrictEqual(
    serializeSafetensors({}, { metadata: { framework: "pt" } }),
    enc.encode('\x28\0\0\0\0\0\0\0{"__metadata__":{"framework":"pt"}}     '),
  );
});

Deno.test("tensors are laid out by dtype alignment, largest first, then by name", () => {
  const names = ["b", "a", "B", "c", "z", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m"];
  const input = DTYPES.map((dtype, i) => ({ name: names[i]!, tensor: patterned(dtype, [1]) }));
  const header = parseSafetensorsHeader(serializeSafetensors(input));
  deepStrictEqual(header.tensors.map((e) => e.dtype), [
    "U64",
    "I64",
    "F64",
    "F32",
    "U32",
    "I32",
    "BF16",
    "F16",
    "U16",
    "I16",
    "F8_E4M3",
    "F8_E5M2",
    "I8",
    "U8",
    "BOOL",
  ]);
  const same = ["b", "a", "é", "Z", "\uffff", "\u{1d7d8}", "a0"].map((name) => ({
    name,
    tensor: patterned("F32", [1]),
  }));
  // code point (UTF-8 byte) order, as Rust sorts Strings; UTF-16 order would put U+1D7D8 first
  deepStrictEqual(
    parseSafetensorsHeader(serializeSafetensors(same)).tensors.map((e) => e.name),
    ["Z", "a", "a0", "b", "é", "\uffff", "\u{1d7d8}"],
  );
});

Deno.test("the header lists __metadata__ first and sorts its keys", () => {
  const out = serializeSafetensors({ x: tensor("U8", [0]) }, {
    metadata: new Map([["z", "1"], ["a", 'quote " and \n newline']]),
  });
  const n = Number(new DataView(out.buffer).getBigUint64(0, true));
  strictEqual(
    new TextDecoder().decode(out.subarray(8, 8 + n)).trimEnd(),
    '{"__metadata__":{"a":"quote \\" and \\n newline","z":"1"},' +
      '"x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}',
  );
  strictEqual(out.length % 8, 0);
});

// --- round trips ------------------------------------------------------------------------------

Deno.test("every dtype round-trips through a file, with rank-0 and empty tensors", async () => {
  await withTempDir(async (dir) => {
    const input = new Map<string, Tensor>();
    DTYPES.forEach((dtype, i) => {
      input.set(`${dtype}.matrix`, patterned(dtype, [3, 5], i));
      input.set(`${dtype}.scalar`, patterned(dtype, [], i + 100));
      input.set(`${dtype}.empty`, patterned(dtype, [4, 0, 2]));
    });
    const metadata = { format: "pt", note: "ünïcødé ✓" };
    const written = await writeSafetensors(`${dir}/all.safetensors`, input, { metadata });
    const { tensors, metadata: back } = await readSafetensors(`${dir}/all.safetensors`);
    deepStrictEqual(back, metadata);
    strictEqual(tensors.size, input.size);
    for (const [name, t] of input) sameTensor(tensors.get(name)!, t, name);
    deepStrictEqual(parseSafetensorsHeader(await Deno.readFile(`${dir}/all.safetensors`)), written);
  });
});

Deno.test("64-bit integers, BOOL, BF16 and F8 keep their exact values", () => {
  const input = {
    i64: tensor("I64", [3], new BigInt64Array([-(2n ** 63n), -1n, 2n ** 63n - 1n])),
    u64: tensor("U64", [2], new BigUint64Array([0n, 2n ** 64n - 1n])),
    bool: tensor("BOOL", [3], new Uint8Array([1, 0, 1])),
    bf16: tensor("BF16", [3], new Uint16Array([0x3f80, 0xff80, 0x7fc0])),
    f16: tensor("F16", [2], new Uint16Array([0x7bff, 0x0001])),
    e4m3: tensor("F8_E4M3", [2], new Uint8Array([0x7e, 0x80])),
    e5m2: tensor("F8_E5M2", [2], new Uint8Array([0x7b, 0xff])),
  };
  const { tensors } = deserializeSafetensors(serializeSafetensors(input));
  deepStrictEqual([...tensors.get("i64")!.data], [-(2n ** 63n), -1n, 2n ** 63n - 1n]);
  deepStrictEqual([...tensors.get("u64")!.data], [0n, 2n ** 64n - 1n]);
  for (const [name, t] of Object.entries(input)) sameTensor(tensors.get(name)!, t, name);
});

Deno.test("a file with no tensors and no metadata round-trips", async () => {
  await withTempDir(async (dir) => {
    await writeSafetensors(`${dir}/empty.safetensors`, []);
    const back = await readSafetensors(`${dir}/empty.safetensors`);
    strictEqual(back.tensors.size, 0);
    deepStrictEqual(back.metadata, {});
    strictEqual((await Deno.stat(`${dir}/empty.safetensors`)).size, 16);
  });
});

Deno.test("fileOffset points at each tensor's bytes in the file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/offsets.safetensors`;
    const input = {
      a: patterned("F32", [7, 3]),
      b: patterned("F16", [5], 2),
      c: patterned("U8", [3]),
    };
    await writeSafetensors(path, input);
    const bytes = await Deno.readFile(path);
    using file = await openSafetensors(path);
    for (const e of file.header.tensors) {
      deepStrictEqual(
        bytes.subarray(e.fileOffset, e.fileOffset + e.byteLength),
        toBytes(input[e.name as "a"]),
      );
      strictEqual(e.fileOffset, file.header.dataStart + e.dataOffsets[0]);
    }
    strictEqual(file.header.tensors[0]!.fileOffset % 8, 0); // data region is 8-byte aligned
  });
});

// --- streaming and laziness ---------------------------------------------------------------

Deno.test("lazy tensors are loaded once each, in file order, from an async iterable", async () => {
  await withTempDir(async (dir) => {
    const loads: string[] = [];
    const lazy = (name: string, dtype: DType, shape: number[]): LazyTensor => ({
      dtype,
      shape,
      load: async () => {
        loads.push(name);
        await Promise.resolve();
        return patterned(dtype, shape, name.length);
      },
    });
    async function* items() {
      yield { name: "small", tensor: lazy("small", "U8", [3]) };
      yield { name: "big", tensor: lazy("big", "F64", [2, 2]) };
      yield { name: "now", tensor: patterned("F32", [2]) };
    }
    const header = await writeSafetensors(`${dir}/lazy.safetensors`, items());
    deepStrictEqual(loads, ["big", "small"]);
    deepStrictEqual(header.tensors.map((e) => e.name), ["big", "now", "small"]);
    const back = await readSafetensors(`${dir}/lazy.safetensors`);
    sameTensor(back.tensors.get("big")!, patterned("F64", [2, 2], 3), "big");
  });
});

Deno.test("an open file's lazyTensor() streams one file into another unchanged", async () => {
  await withTempDir(async (dir) => {
    const input = {
      w: patterned("BF16", [16, 8]),
      b: patterned("F32", [8]),
      n: patterned("I64", []),
    };
    await writeSafetensors(`${dir}/a.safetensors`, input, { metadata: { k: "v" } });
    {
      using src = await openSafetensors(`${dir}/a.safetensors`);
      const names = src.header.tensors.map((e) => e.name);
      await writeSafetensors(
        `${dir}/b.safetensors`,
        names.map((name) => ({ name, tensor: src.lazyTensor(name) })),
        { metadata: src.metadata },
      );
    }
    deepStrictEqual(
      await Deno.readFile(`${dir}/b.safetensors`),
      await Deno.readFile(`${dir}/a.safetensors`),
    );
  });
});

Deno.test("a lazy tensor that loads the wrong shape fails and leaves no file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bad.safetensors`;
    await rejects(
      writeSafetensors(path, {
        w: { dtype: "F32", shape: [2, 3], load: () => tensor("F32", [3, 2]) },
      }),
      {
        name: "TypeError",
        message:
          `Cannot write "${path}": tensor "w" was declared F32 [2, 3], but load() returned F32 [3, 2]`,
      },
    );
    deepStrictEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("reads of one open file may overlap and still get their own bytes", async () => {
  await withTempDir(async (dir) => {
    const input: Record<string, Tensor> = {};
    for (let i = 0; i < 20; i++) input[`t${i}`] = patterned("F32", [64 + i], i);
    await writeSafetensors(`${dir}/many.safetensors`, input);
    using file = await openSafetensors(`${dir}/many.safetensors`);
    const names = Object.keys(input).reverse();
    const got = await Promise.all(names.map((name) => file.readTensor(name)));
    names.forEach((name, i) => sameTensor(got[i]!, input[name]!, name));
  });
});

Deno.test("a tensor beyond 4 GiB is read by seeking, without reading what comes before", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sparse.safetensors`;
    const big = 5 * 2 ** 30; // 5 GiB of U8, never written: the file is sparse
    const header = fileOf({
      big: { dtype: "U8", shape: [big], data_offsets: [0, big] },
      tail: { dtype: "F32", shape: [2], data_offsets: [big, big + 8] },
    });
    await Deno.writeFile(path, header);
    await Deno.truncate(path, header.length + big + 8);
    using f = await Deno.open(path, { write: true });
    await f.seek(header.length + big, Deno.SeekMode.Start);
    await f.write(new Uint8Array(new Float32Array([1.5, -2]).buffer));
    const started = performance.now();
    using file = await openSafetensors(path);
    const tail = await file.readTensor("tail");
    ok(performance.now() - started < 1000, "opening and reading the tail took too long");
    deepStrictEqual([...tail.data], [1.5, -2]);
    strictEqual(file.entry("tail").fileOffset, header.length + big);
  });
});

// --- errors of the API ----------------------------------------------------------------------

Deno.test("readTensor() names the file and the missing tensor", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/one.safetensors`;
    await writeSafetensors(path, { "fc1.weight": tensor("F32", [1]) });
    using file = await openSafetensors(path);
    await rejects(file.readTensor("fc1.weigth"), {
      name: "RangeError",
      message:
        `Cannot read "${path}": no tensor named "fc1.weigth" (it has 1 tensor: "fc1.weight")`,
    });
    file.close();
    await rejects(file.readTensor("fc1.weight"), {
      message: `Cannot read "${path}": the file is closed`,
    });
  });
});

Deno.test("openSafetensors() reports a missing file and a folder by path", async () => {
  await withTempDir(async (dir) => {
    await rejects(openSafetensors(`${dir}/nope.safetensors`), (e) => {
      ok(e instanceof Deno.errors.NotFound);
      strictEqual(e.message, `Cannot read "${dir}/nope.safetensors": no such file`);
      return true;
    });
    await rejects(openSafetensors(dir), {
      name: "TypeError",
      message: `Cannot read "${dir}": it is a folder, not a file`,
    });
  });
});

Deno.test("the writer rejects bad names, metadata and data with the tensor named", () => {
  const w = "Cannot serialize safetensors";
  throws(() => serializeSafetensors({ __metadata__: tensor("F32", [1]) }), {
    message: `${w}: "__metadata__" is reserved and cannot name a tensor`,
  });
  throws(
    () =>
      serializeSafetensors([{ name: "a", tensor: tensor("U8", [1]) }, {
        name: "a",
        tensor: tensor("U8", [1]),
      }]),
    { name: "TypeError", message: `${w}: tensor "a" is given twice` },
  );
  throws(
    () => serializeSafetensors({}, { metadata: { n: 3 } as unknown as Record<string, string> }),
    { name: "TypeError", message: `${w}: metadata "n" is a number, expected a string` },
  );
  const wrong = { dtype: "F32", shape: [2], data: new Float64Array(2) } as unknown as Tensor;
  throws(() => serializeSafetensors({ w: wrong }), {
    name: "TypeError",
    message:
      `${w}: tensor "w" has dtype F32, but its data is a Float64Array, expected a Float32Array`,
  });
  const short = { dtype: "F32", shape: [3], data: new Float32Array(2) } as Tensor;
  throws(() => serializeSafetensors({ s: short }), {
    message: `${w}: tensor "s" has shape [3] but 2 elements of data, expected 3`,
  });
  const lazy = { dtype: "U8", shape: [1], load: () => tensor("U8", [1]) } as unknown as Tensor;
  throws(() => serializeSafetensors({ l: lazy }), {
    message: `${w}: tensor "l" is lazy: use writeSafetensors()`,
  });
  const odd = { dtype: "F4", shape: [1], data: new Uint8Array(1) } as unknown as Tensor;
  throws(() => serializeSafetensors({ o: odd }), {
    message: `${w}: tensor "o" has unknown dtype "F4"`,
  });
});

// --- header validation (in memory; the conformance test covers whole files) -----------------

Deno.test("parseSafetensorsHeader() accepts metadata null, key order and surrounding spaces", () => {
  const bytes = fileOf(
    ' {"b":{"shape":[1],"data_offsets":[4,8],"dtype":"F32"},"__metadata__":null,' +
      '"a":{"dtype":"I32","shape":[],"data_offsets":[0,4]}}  ',
    new Uint8Array(8),
  );
  const header = parseSafetensorsHeader(bytes);
  deepStrictEqual(header.tensors.map((e) => e.name), ["a", "b"]);
  deepStrictEqual(header.metadata, {});
});

Deno.test("parseSafetensorsHeader() works from the header bytes alone given the file size", () => {
  const whole = serializeSafetensors({ a: patterned("F32", [1000]) });
  const n = 8 + Number(new DataView(whole.buffer).getBigUint64(0, true));
  const header = parseSafetensorsHeader(whole.subarray(0, n), { fileSize: whole.length });
  strictEqual(header.tensors[0]!.byteLength, 4000);
  throws(() => parseSafetensorsHeader(whole.subarray(0, n - 1), { fileSize: whole.length }), {
    name: "RangeError",
    message: `Cannot parse safetensors bytes: the header needs the first ${n} bytes, got ${n - 1}`,
  });
});

Deno.test("parseSafetensorsHeader() finds duplicate tensor names, which JSON.parse would hide", () => {
  const text = '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},' +
    '"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}';
  throws(
    () => parseSafetensorsHeader(fileOf(text, new Uint8Array(2)), { source: "d.safetensors" }),
    {
      name: "SyntaxError",
      message: `Cannot read "d.safetensors": header names tensor "w" twice`,
    },
  );
  const escaped = '{"\\u0077":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},' +
    '"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}';
  throws(() => parseSafetensorsHeader(fileOf(escaped, new Uint8Array(2))), {
    message: `Cannot parse safetensors bytes: header names tensor "w" twice`,
  });
  const inner = '{"__metadata__":{"k":"1","k":"2"}}';
  throws(() => parseSafetensorsHeader(fileOf(inner)), {
    message: `Cannot parse safetensors bytes: "__metadata__" has the key "k" twice`,
  });
});

Deno.test("parseSafetensorsHeader() checks each entry's dtype, shape and byte length", () => {
  const one = (entry: unknown, data = 4) => () =>
    parseSafetensorsHeader(fileOf({ t: entry }, new Uint8Array(data)));
  const w = "Cannot parse safetensors bytes";
  throws(one({ dtype: "F4", shape: [8], data_offsets: [0, 4] }), {
    name: "TypeError",
    message: new RegExp(
      `^${w}: tensor "t" has dtype "F4", which ffwd does not know \\(known: F64,`,
    ),
  });
  throws(one({ dtype: "F32", shape: [2], data_offsets: [0, 4] }), {
    name: "TypeError",
    message:
      `${w}: tensor "t" of dtype F32 and shape [2] needs 8 bytes, but its data_offsets [0, 4] hold 4`,
  });
  throws(one({ dtype: "F32", shape: [-1], data_offsets: [0, 4] }), {
    name: "SyntaxError",
    message: `${w}: tensor "t" has shape [-1], expected an array of integers >= 0`,
  });
  throws(one({ dtype: "F32", shape: [1] }), {
    message: `${w}: tensor "t" has no data_offsets, expected [begin, end] with integers >= 0`,
  });
  throws(one({ shape: [1], data_offsets: [0, 4] }), { message: `${w}: tensor "t" has no dtype` });
  throws(one([1, 2]), { message: `${w}: tensor "t" is an array, expected an object` });
});

Deno.test("parseSafetensorsHeader() requires the tensors to tile the data region", () => {
  const w = "Cannot parse safetensors bytes";
  const u8 = (a: number, b: number) => ({ dtype: "U8", shape: [b - a], data_offsets: [a, b] });
  throws(() => parseSafetensorsHeader(fileOf({ a: u8(0, 4), b: u8(2, 6) }, new Uint8Array(6))), {
    name: "RangeError",
    message: `${w}: tensor "b" at data_offsets [2, 6] overlaps tensor "a" at [0, 4]`,
  });
  throws(() => parseSafetensorsHeader(fileOf({ a: u8(0, 4), b: u8(5, 6) }, new Uint8Array(6))), {
    message: `${w}: data bytes [4, 5) belong to no tensor (a gap before tensor "b")`,
  });
  throws(() => parseSafetensorsHeader(fileOf({ a: u8(0, 4) }, new Uint8Array(7))), {
    message:
      `${w}: the last 3 bytes of the file belong to no tensor (the tensors cover 4 of the 7 data bytes)`,
  });
  // zero-size tensors may sit at any boundary, but not inside another tensor
  parseSafetensorsHeader(fileOf({ a: u8(0, 4), e: u8(4, 4), f: u8(0, 0) }, new Uint8Array(4)));
  throws(() => parseSafetensorsHeader(fileOf({ a: u8(0, 4), e: u8(2, 2) }, new Uint8Array(4))), {
    message: `${w}: tensor "e" at data_offsets [2, 2] overlaps tensor "a" at [0, 4]`,
  });
});

Deno.test("deserializeSafetensors() copies, so tensors never alias the input bytes", () => {
  const bytes = serializeSafetensors({ a: patterned("F32", [4]) });
  const t = deserializeSafetensors(bytes).tensors.get("a")!;
  ok(t.data.buffer !== bytes.buffer);
  sameTensor(t, fromBytes("F32", [4], toBytes(patterned("F32", [4]))), "a");
});
