/**
 * Conformance of the safetensors reader and writer with files other tools made (from
 * `../shared/realdata`, see its README.md) and with every malformed variant we could think of.
 *
 * Expected values were read from the files with Python's `struct` and `json` modules
 * (independently of this code): e.g. `struct.unpack("<6e", data[96:108])` for the F16 sample.
 * The tests of real files are registered by `realdataTest` (see tests/_realdata.ts).
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { type Tensor, toBytes, toFloat32 } from "../../src/tensor.ts";
import {
  inspectSafetensors,
  openSafetensors,
  readSafetensors,
  writeSafetensors,
} from "../../src/io/safetensors.ts";
import { REALDATA_URL as REALDATA, realdataTest } from "../_realdata.ts";

const OVERALL = new URL("huggingface__safetensors/samples/overall.safetensors", REALDATA);
const E_SAMPLE = new URL("huggingface__safetensors/samples/e.safetensors", REALDATA);
const MULTI_LAYER = new URL(
  "tracel-ai__burn/crates/burn-store/safetensors-tests/tests/multi_layer/multi_layer.safetensors",
  REALDATA,
);
const MLX_ADAPTER = new URL(
  "ml-explore__mlx-examples/llms/adapters/adapters.safetensors",
  REALDATA,
);

registerRealFileTests();
registerMalformedTests();

function values(t: Tensor): (number | bigint)[] {
  return [...(t.data as ArrayLike<number | bigint> & Iterable<number | bigint>)];
}

/** Sum in float64, the way `math.fsum` was used to get the expected sums (within 1e-9). */
function sum(t: Tensor): number {
  let s = 0;
  for (const v of toFloat32(t).data) s += v;
  return s;
}

function registerRealFileTests(): void {
  realdataTest("overall.safetensors: all nine dtypes decode to the sample's values", async () => {
    const { tensors, metadata } = await readSafetensors(OVERALL);
    deepStrictEqual(metadata, { test: "a" });
    const expected: Record<string, [string, (number | bigint)[]]> = {
      B: ["U8", [253, 254, 255, 0, 1, 2]],
      H: ["U16", [65533, 65534, 65535, 0, 1, 2]],
      I: ["U32", [4294967293, 4294967294, 4294967295, 0, 1, 2]],
      b: ["I8", [-3, -2, -1, 0, 1, 2]],
      d: ["F64", [-3, -2, -1, 0, 1, 2]],
      e: ["F16", [0xc200, 0xc000, 0xbc00, 0x0000, 0x3c00, 0x4000]],
      f: ["F32", [-3, -2, -1, 0, 1, 2]],
      h: ["I16", [-3, -2, -1, 0, 1, 2]],
      i: ["I32", [-3, -2, -1, 0, 1, 2]],
    };
    deepStrictEqual([...tensors.keys()], Object.keys(expected));
    for (const [name, [dtype, data]] of Object.entries(expected)) {
      const t = tensors.get(name)!;
      strictEqual(t.dtype, dtype, name);
      deepStrictEqual(t.shape, [6], name);
      deepStrictEqual(values(t), data, name);
    }
    deepStrictEqual([...toFloat32(tensors.get("e")!).data], [-3, -2, -1, 0, 1, 2]);
  });

  realdataTest("overall.safetensors: header sizes and absolute offsets", async () => {
    using file = await openSafetensors(OVERALL);
    const h = file.header;
    deepStrictEqual([h.headerLength, h.dataStart, h.dataLength, h.fileSize], [526, 534, 168, 702]);
    const d = file.entry("d");
    deepStrictEqual([d.dataOffsets, d.fileOffset, d.byteLength], [[48, 96], 582, 48]);
    const bytes = await Deno.readFile(OVERALL);
    const f = file.entry("f");
    deepStrictEqual(
      bytes.subarray(f.fileOffset, f.fileOffset + f.byteLength),
      toBytes(await file.readTensor("f")),
    );
  });

  realdataTest("e.safetensors: the F16 sample decodes exactly", async () => {
    const { tensors, metadata } = await readSafetensors(E_SAMPLE);
    deepStrictEqual(metadata, { test: "a" });
    deepStrictEqual([...toFloat32(tensors.get("e")!).data], [-3, -2, -1, 0, 1, 2]);
  });

  realdataTest("multi_layer.safetensors: an I64 scalar of shape [] and F32 weights", async () => {
    const { tensors, metadata } = await readSafetensors(MULTI_LAYER);
    deepStrictEqual(metadata, {});
    const counter = tensors.get("norm1.num_batches_tracked")!;
    deepStrictEqual([counter.dtype, counter.shape, values(counter)], ["I64", [], [1n]]);
    deepStrictEqual(values(tensors.get("conv1.bias")!), [
      0.13191646337509155,
      0.03988170251250267,
      0.061896324157714844,
      0.14375224709510803,
    ]);
    const sums: Record<string, [number[], number, number]> = {
      "conv1.weight": [[4, 3, 3, 3], 0.452049087791238, 0.010049121454358101],
      "fc1.bias": [[16], -0.11218494921922684, -0.027155384421348572],
      "fc1.weight": [[16, 256], -3.8182605504989624, -0.03956901282072067],
      "norm1.running_mean": [[4], 0.0753373148618266, 0.0016524147940799594],
      "norm1.running_var": [[4], 3.6108431220054626, 0.9031827449798584],
      "norm1.weight": [[4], 4, 1],
      "norm1.bias": [[4], 0, 0],
    };
    for (const [name, [shape, total, last]] of Object.entries(sums)) {
      const t = tensors.get(name)!;
      deepStrictEqual(t.shape, shape, name);
      ok(Math.abs(sum(t) - total) < 1e-9, `${name}: sum ${sum(t)}, expected ${total}`);
      strictEqual(t.data[t.data.length - 1], last, name);
    }
  });

  realdataTest(
    "MLX adapters.safetensors: __metadata__ null and offsets out of name order",
    async () => {
      const summary = await inspectSafetensors(MLX_ADAPTER);
      deepStrictEqual(summary.metadata, {});
      strictEqual(summary.tensors.length, 16);
      strictEqual(summary.parameters, 16 * 2304 * 8);
      strictEqual(summary.tensors[0]!.name, "model.layers.39.self_attn.v_proj.lora_b");
      using file = await openSafetensors(MLX_ADAPTER);
      const a = await file.readTensor("model.layers.36.self_attn.q_proj.lora_a");
      deepStrictEqual(a.shape, [2304, 8]);
      strictEqual(a.data[0], 0.02313074842095375);
      ok(Math.abs(sum(a) - -1.1312320728484337) < 1e-9);
    },
  );

  realdataTest("every real file survives a write and a read back unchanged", async () => {
    const dir = await Deno.makeTempDir({ prefix: "ffwd_conf_" });
    try {
      for (const url of [OVERALL, E_SAMPLE, MULTI_LAYER, MLX_ADAPTER]) {
        const before = await readSafetensors(url);
        const out = `${dir}/copy.safetensors`;
        await writeSafetensors(out, before.tensors, { metadata: before.metadata });
        const after = await readSafetensors(out);
        deepStrictEqual(after.metadata, before.metadata);
        strictEqual(after.tensors.size, before.tensors.size);
        for (const [name, t] of before.tensors) {
          const u = after.tensors.get(name)!;
          deepStrictEqual([u.dtype, u.shape, toBytes(u)], [t.dtype, t.shape, toBytes(t)], name);
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

// --- malformed files ------------------------------------------------------------------------

const enc = new TextEncoder();

/** A file from a header (object or raw text) and data, with an optional forced length prefix. */
function fileOf(header: unknown, data: Uint8Array | number = 0, length?: bigint): Uint8Array {
  const json = enc.encode(typeof header === "string" ? header : JSON.stringify(header));
  const bytes = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + bytes.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(bytes, 8 + json.length);
  return out;
}

const u8 = (begin: number, end: number) => ({
  dtype: "U8",
  shape: [end - begin],
  data_offsets: [begin, end],
});

type Expect = [kind: "SyntaxError" | "RangeError" | "TypeError", message: string | RegExp];

function registerMalformedTests(): void {
  realdataTest("malformed files fail with the file named and the problem stated", async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "ffwd_bad_" });
    const overall = await Deno.readFile(OVERALL);
    const at = (i: number, text: string) => {
      const copy = overall.slice();
      copy.set(enc.encode(text), i);
      return copy;
    };
    const offsetOf = (text: string) => new TextDecoder().decode(overall).indexOf(text);
    const cases: [string, Uint8Array, Expect][] = [
      ["empty file", new Uint8Array(0), [
        "SyntaxError",
        /not a safetensors file: the file is empty/,
      ]],
      ["4 bytes", overall.slice(0, 4), ["SyntaxError", /it is only 4 bytes long/]],
      ["cut after the length", overall.slice(0, 8), [
        "RangeError",
        "file is truncated: it is 8 bytes, but its header alone needs 8 + 526 bytes",
      ]],
      ["cut inside the header", overall.slice(0, 300), [
        "RangeError",
        /it is 300 bytes, but its header/,
      ]],
      ["cut after the header", overall.slice(0, 534), [
        "RangeError",
        'file is truncated: it is 534 bytes, but tensor "i" ends at byte 702',
      ]],
      ["one byte short", overall.slice(0, 701), ["RangeError", /it is 701 bytes, but tensor "i"/]],
      ["three bytes too many", new Uint8Array([...overall, 1, 2, 3]), [
        "RangeError",
        "the last 3 bytes of the file belong to no tensor (the tensors cover 168 of the 171 data bytes)",
      ]],
      ["header length 0", fileOf("", 0), [
        "SyntaxError",
        "not a safetensors file: its header length is 0",
      ]],
      ["huge header length", fileOf("{}", 0, 2n ** 63n), [
        "RangeError",
        `header length ${
          2n ** 63n
        } is over the 100000000-byte limit: not a safetensors file, or a corrupt one`,
      ]],
      ["header length just over the limit", fileOf("{}", 0, 100_000_001n), [
        "RangeError",
        /over the/,
      ]],
      ["header not starting with {", at(8, "["), [
        "SyntaxError",
        'not a safetensors file: the header should start with "{", found byte 0x5b',
      ]],
      ["a colon flipped", at(offsetOf('"B":') + 3, ";"), [
        "SyntaxError",
        /^header is not valid JSON: /,
      ]],
      ["dtype flipped to F33", at(offsetOf('"F32"') + 3, "3"), [
        "TypeError",
        /^tensor "f" has dtype "F33", which ffwd does not know \(known: F64, F32/,
      ]],
      ["an offset off by one", at(offsetOf("[108,132]") + 7, "3"), [
        "TypeError",
        'tensor "f" of dtype F32 and shape [6] needs 24 bytes, but its data_offsets [108, 133] hold 25',
      ]],
      [
        "invalid UTF-8",
        (() => {
          const c = overall.slice();
          c[offsetOf('"test"') + 1] = 0xff;
          return c;
        })(),
        ["SyntaxError", "header is not valid UTF-8"],
      ],
      ["array header", fileOf("[]"), [
        "SyntaxError",
        'not a safetensors file: the header should start with "{", found byte 0x5b',
      ]],
      ["null header", fileOf("null"), ["SyntaxError", /not a safetensors file/]],
      ["tensor entry is a number", fileOf('{"a":1}'), [
        "SyntaxError",
        'tensor "a" is the number 1, expected an object',
      ]],
      [
        "duplicate tensor",
        fileOf(`{"a":${JSON.stringify(u8(0, 1))},"a":${JSON.stringify(u8(1, 2))}}`, 2),
        [
          "SyntaxError",
          'header names tensor "a" twice',
        ],
      ],
      [
        "duplicate field",
        fileOf('{"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}}', 1),
        [
          "SyntaxError",
          'tensor "a" has the key "dtype" twice',
        ],
      ],
      ["duplicate metadata", fileOf('{"__metadata__":{"k":"a","k":"b"}}'), [
        "SyntaxError",
        '"__metadata__" has the key "k" twice',
      ]],
      ["metadata number", fileOf({ __metadata__: { epochs: 3 } }), [
        "SyntaxError",
        '"__metadata__" maps "epochs" to the number 3, expected a string',
      ]],
      ["metadata nested", fileOf({ __metadata__: { cfg: { r: "8" } } }), [
        "SyntaxError",
        /maps "cfg" to an object/,
      ]],
      ["metadata array", fileOf({ __metadata__: ["a"] }), [
        "SyntaxError",
        '"__metadata__" is an array, expected an object of strings',
      ]],
      ["overlap", fileOf({ a: u8(0, 4), b: u8(3, 7) }, 7), [
        "RangeError",
        'tensor "b" at data_offsets [3, 7] overlaps tensor "a" at [0, 4]',
      ]],
      ["same range twice", fileOf({ a: u8(0, 4), b: u8(0, 4) }, 4), [
        "RangeError",
        /overlaps tensor "a"/,
      ]],
      ["gap", fileOf({ a: u8(0, 4), b: u8(6, 8) }, 8), [
        "RangeError",
        'data bytes [4, 6) belong to no tensor (a gap before tensor "b")',
      ]],
      ["gap at the start", fileOf({ a: u8(2, 4) }, 4), [
        "RangeError",
        /data bytes \[0, 2\) belong to no tensor/,
      ]],
      ["offsets past the end", fileOf({ a: u8(0, 4), b: u8(4, 9) }, 6), [
        "RangeError",
        /file is truncated: it is \d+ bytes, but tensor "b" ends at byte \d+/,
      ]],
      ["end before begin", fileOf({ a: { dtype: "U8", shape: [0], data_offsets: [4, 2] } }, 4), [
        "RangeError",
        'tensor "a" has data_offsets [4, 2] that end before they begin',
      ]],
      ["three offsets", fileOf({ a: { dtype: "U8", shape: [1], data_offsets: [0, 1, 2] } }, 1), [
        "SyntaxError",
        'tensor "a" has data_offsets [0,1,2], expected [begin, end] with integers >= 0',
      ]],
      ["fractional shape", fileOf({ a: { dtype: "U8", shape: [1.5], data_offsets: [0, 1] } }, 1), [
        "SyntaxError",
        'tensor "a" has shape [1.5], expected an array of integers >= 0',
      ]],
      ["missing shape", fileOf({ a: { dtype: "U8", data_offsets: [0, 1] } }, 1), [
        "SyntaxError",
        'tensor "a" has no shape, expected an array of integers >= 0',
      ]],
      [
        "shape overflow",
        fileOf(
          { a: { dtype: "F64", shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 1] } },
          1,
        ),
        [
          "RangeError",
          /tensor "a" has shape \[1073741824, 1073741824, 1073741824\], too large to address/,
        ],
      ],
      ["wrong length", fileOf({ a: { dtype: "I64", shape: [2], data_offsets: [0, 12] } }, 12), [
        "TypeError",
        'tensor "a" of dtype I64 and shape [2] needs 16 bytes, but its data_offsets [0, 12] hold 12',
      ]],
      [
        "Git LFS pointer",
        enc.encode(
          "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 702\n",
        ),
        [
          "SyntaxError",
          "this is a Git LFS pointer, not tensor data: fetch the real file (git lfs pull); the real file is 702 bytes",
        ],
      ],
      ["zip (PyTorch .bin)", new Uint8Array([0x50, 0x4b, 3, 4, 20, 0, 0, 0, 8, 0, 0, 0]), [
        "SyntaxError",
        "not a safetensors file: it is a zip archive (a PyTorch checkpoint?)",
      ]],
      [
        "pickle",
        new Uint8Array([0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8]),
        [
          "SyntaxError",
          "not a safetensors file: it is a Python pickle (a PyTorch checkpoint?)",
        ],
      ],
      ["HTML error page", enc.encode("<!DOCTYPE html><html><body>404</body></html>"), [
        "SyntaxError",
        "not a safetensors file: it is an HTML or XML page (a failed download?)",
      ]],
      ["JSON file", enc.encode('{"modelTopology": {}}'), [
        "SyntaxError",
        "not a safetensors file: it is JSON text, not an 8-byte header length and a header",
      ]],
      ["random bytes", new Uint8Array([0x13, 0x9a, 0xf0, 0x77, 0x01, 0xee, 0x42, 0x90, 1, 2, 3]), [
        "RangeError",
        /header length \d+ is over the 100000000-byte limit/,
      ]],
    ];
    try {
      for (const [name, bytes, [kind, message]] of cases) {
        await t.step(name, async () => {
          const path = `${dir}/case.safetensors`;
          await Deno.writeFile(path, bytes);
          await rejects(openSafetensors(path), (e: Error) => {
            strictEqual(e.name, kind, `${name}: ${e.message}`);
            const prefix = `Cannot read "${path}": `;
            ok(e.message.startsWith(prefix), e.message);
            const rest = e.message.slice(prefix.length);
            if (typeof message === "string") strictEqual(rest, message);
            else ok(message.test(rest), rest);
            ok(!e.message.includes("\n"), "one line");
            return true;
          });
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  realdataTest("every truncation and 400 random byte flips fail cleanly or parse", async () => {
    const dir = await Deno.makeTempDir({ prefix: "ffwd_fuzz_" });
    const path = `${dir}/fuzz.safetensors`;
    const overall = await Deno.readFile(OVERALL);
    const variants: Uint8Array[] = [];
    for (let n = 0; n < overall.length; n++) variants.push(overall.slice(0, n));
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 400; i++) {
      const copy = overall.slice();
      const i = next() % 534; // inside the length prefix or the header
      copy[i] = copy[i]! ^ (1 << (next() % 8));
      variants.push(copy);
    }
    try {
      let failed = 0;
      for (const bytes of variants) {
        await Deno.writeFile(path, bytes);
        try {
          using file = await openSafetensors(path);
          await file.readAll();
        } catch (e) {
          failed++;
          ok(
            e instanceof SyntaxError || e instanceof RangeError || e instanceof TypeError,
            String(e),
          );
          ok(e.message.startsWith(`Cannot read "${path}": `), e.message);
        }
      }
      ok(failed >= overall.length, `${failed} of ${variants.length} failed`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  realdataTest(
    "a file cut short after it was opened fails on read, naming the tensor",
    async () => {
      const dir = await Deno.makeTempDir({ prefix: "ffwd_cut_" });
      try {
        const path = `${dir}/shrinks.safetensors`;
        await Deno.copyFile(OVERALL, path);
        using file = await openSafetensors(path);
        await Deno.truncate(path, 600);
        await rejects(file.readTensor("i"), {
          name: "RangeError",
          message:
            `Cannot read "${path}": file is now 600 bytes, but tensor "i" needs bytes 678 to 702: ` +
            "it was truncated after it was opened",
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}
