import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { castFloat } from "../tensor.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import type { Dataset } from "./dataset.ts";
import { loadDataset, loadInputs, saveDatasetSafetensors, writeJsonl } from "./files.ts";
import { withTempDir } from "../../tests/_assert.ts";

/** Writes `text` to `dir/name` and returns the path. */
async function file(dir: string, name: string, text: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, text);
  return path;
}

/** Asserts that `run` rejects with an error of `Class` whose message is exactly `message`. */
async function failsWith(
  run: () => Promise<unknown>,
  Class: new (...args: never[]) => Error,
  message: string,
): Promise<void> {
  await rejects(run, (e: Error) => {
    strictEqual(e.message, message);
    ok(e instanceof Class, `expected a ${Class.name}, got ${e.constructor.name}`);
    return true;
  });
}

Deno.test("loadDataset() reads JSONL labels, skipping blank lines and CRLF endings", async () => {
  await withTempDir(async (dir) => {
    const path = await file(dir, "a.jsonl", '{"x":[1,2],"y":0}\r\n\n  \n{"x":[3,4.5],"y":2}');
    const data = await loadDataset(path);
    strictEqual(data.rows, 2);
    strictEqual(data.width, 2);
    deepStrictEqual(data.x, new Float32Array([1, 2, 3, 4.5]));
    deepStrictEqual(data.y, { kind: "labels", data: new BigInt64Array([0n, 2n]), classes: 3 });
    const given = await loadDataset(path, { classes: 10 });
    strictEqual(given.y.kind === "labels" && given.y.classes, 10);
  });
});

Deno.test("loadDataset() reads JSONL float targets", async () => {
  await withTempDir(async (dir) => {
    const path = await file(dir, "t.ndjson", '{"x":[1],"y":[0.5,1]}\n{"x":[2],"y":[3,-4]}\n');
    const data = await loadDataset(path);
    deepStrictEqual(data.y, { kind: "targets", data: new Float32Array([0.5, 1, 3, -4]), width: 2 });
  });
});

Deno.test("loadDataset() names the row, the expected and the actual width", async () => {
  await withTempDir(async (dir) => {
    const path = await file(dir, "train.jsonl", '{"x":[1,2],"y":0}\n\n{"x":[1],"y":0}\n');
    await failsWith(
      () => loadDataset(path),
      TypeError,
      `Cannot load "${path}": row 3 has 1 value, expected 2`,
    );
    await failsWith(
      () => loadDataset(path, { width: 3 }),
      TypeError,
      `Cannot load "${path}": row 1 has 2 values, expected 3`,
    );
  });
});

Deno.test("loadDataset() rejects JSONL garbage, naming the row and the value", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, new (...args: never[]) => Error, string][] = [
      [
        '{"x":[1,2],"y":0}\n{"x":[1,"a"],"y":0}',
        TypeError,
        'row 2, x[1] is "a", expected a number',
      ],
      ['{"x":[1,null],"y":0}', TypeError, "row 1, x[1] is null, expected a number"],
      ['{"x":[1,NaN],"y":0}', SyntaxError, "row 1 is not valid JSON"],
      ['{"x":[1,2],"y":0}\n[1,2]', TypeError, 'row 2 is not an object like {"x": [...], "y": ...}'],
      ['{"y":0}', TypeError, 'row 1 has no "x" array'],
      ['{"x":[1]}', TypeError, 'row 1 has no "y" (an integer label or an array of targets)'],
      ['{"x":[1],"y":0.5}', TypeError, 'row 1 has "y" 0.5, expected an integer class label'],
      ['{"x":[1],"y":-1}', RangeError, "row 1 has label -1, expected an integer class >= 0"],
      ['{"x":[1],"y":[1,"b"]}', TypeError, 'row 1, y[1] is "b", expected a number'],
      ['{"x":[],"y":1}', RangeError, "row 1 has no input values"],
      ['{"x":[1e999],"y":1}', RangeError, "row 1, x[0] is Infinity, expected a finite number"],
      [
        '{"x":[1],"y":{"a":1}}',
        TypeError,
        'row 1 has "y" {"a":1}, expected an integer class label',
      ],
    ];
    for (const [text, Class, part] of cases) {
      const path = await file(dir, "bad.jsonl", text);
      await rejects(() => loadDataset(path), (e: Error) => {
        ok(e instanceof Class, `${text}: got ${e.constructor.name}: ${e.message}`);
        ok(e.message.startsWith(`Cannot load "${path}": ${part}`), e.message);
        return true;
      });
    }
  });
});

Deno.test("loadDataset() rejects mixed labels and targets, naming both rows", async () => {
  await withTempDir(async (dir) => {
    const path = await file(dir, "mixed.jsonl", '{"x":[1],"y":1}\n{"x":[2],"y":[1]}\n');
    await failsWith(
      () => loadDataset(path),
      TypeError,
      `Cannot load "${path}": row 2 has float targets in "y", but row 1 has an integer label`,
    );
    const over = await file(dir, "over.jsonl", '{"x":[1],"y":1}\n{"x":[2],"y":10}\n');
    await failsWith(
      () => loadDataset(over, { classes: 10 }),
      RangeError,
      `Cannot load "${over}": row 2 has label 10, expected a class below 10`,
    );
  });
});

Deno.test("loadDataset() and loadInputs() take the width and the named inputs from { model }", async () => {
  await withTempDir(async (dir) => {
    const image = { inputs: [{ name: "x", dtype: "F32" as const, shape: ["batch", 1, 2, 2] }] };
    const path = await file(dir, "a.jsonl", '{"x":[1,2,3,4],"y":0}\n{"x":[1,2,3],"y":1}\n');
    await failsWith(
      () => loadDataset(path, { model: image }),
      TypeError,
      `Cannot load "${path}": row 2 has 3 values, expected 4`,
    );
    // A width given wins over the model's.
    await failsWith(
      () => loadDataset(path, { model: image, width: 3 }),
      TypeError,
      `Cannot load "${path}": row 1 has 4 values, expected 3`,
    );
    const text = {
      inputs: [
        { name: "input_ids", dtype: "I64" as const, shape: ["batch", "seq"] },
        { name: "attention_mask", dtype: "I64" as const, shape: ["batch", "seq"] },
      ],
    };
    const ids = await file(
      dir,
      "ids.jsonl",
      '{"inputs":{"input_ids":[5,6,7],"attention_mask":[1,1,0]},"y":1}\n',
    );
    const data = await loadDataset(ids, { model: text });
    deepStrictEqual([...data.inputs!.keys()], ["input_ids", "attention_mask"]);
    deepStrictEqual(data.inputs!.get("input_ids")!.data, new BigInt64Array([5n, 6n, 7n]));
    deepStrictEqual([...(await loadInputs(ids, { model: text })).inputs!.keys()], [
      "input_ids",
      "attention_mask",
    ]);
    await failsWith(
      () => loadDataset(ids, { model: {} as typeof text }),
      TypeError,
      `Cannot load "${ids}": model has no inputs; pass a model opened with openModel()`,
    );
  });
});

Deno.test("loadInputs() reads JSONL rows with or without y", async () => {
  await withTempDir(async (dir) => {
    const path = await file(dir, "in.jsonl", '{"x":[1,2]}\n{"x":[3,4],"y":[9]}\n');
    deepStrictEqual(await loadInputs(path), {
      rows: 2,
      width: 2,
      x: new Float32Array([1, 2, 3, 4]),
    });
  });
});

Deno.test("loadDataset() detects a CSV header and finds the label column by name or index", async () => {
  await withTempDir(async (dir) => {
    const expected = {
      rows: 2,
      width: 2,
      x: new Float32Array([0.5, 1, 2, -3]),
      y: { kind: "labels", data: new BigInt64Array([1n, 0n]), classes: 2 },
    };
    const named = await file(dir, "h.csv", '"label",a,"b ""2"""\n1,0.5,1\n0,2,-3\n');
    deepStrictEqual(await loadDataset(named, { labelColumn: "label" }), expected);
    deepStrictEqual(await loadDataset(named, { labelColumn: 0 }), expected);
    const bare = await file(dir, "n.csv", "0.5,1,1\r\n2,-3,0\r\n");
    deepStrictEqual(await loadDataset(bare, { labelColumn: -1 }), expected);
    deepStrictEqual(await loadDataset(bare, { labelColumn: 2 }), expected);
    // pandas writes integer column names: still a header, as the label cell is not a number
    const pandas = await file(dir, "p.csv", "label,0,1\n1,0.5,1\n0,2,-3\n");
    deepStrictEqual(await loadDataset(pandas, { labelColumn: "label" }), expected);
    const forced = await loadInputs(bare, { header: true });
    deepStrictEqual(forced, { rows: 1, width: 3, x: new Float32Array([2, -3, 0]) });
  });
});

Deno.test("loadInputs() reads every CSV column, or all but the label column", async () => {
  await withTempDir(async (dir) => {
    const path = await file(dir, "in.csv", "a,b,label\n1,2,0\n3,4,1\n");
    deepStrictEqual(await loadInputs(path, { labelColumn: "label" }), {
      rows: 2,
      width: 2,
      x: new Float32Array([1, 2, 3, 4]),
    });
    const bare = await file(dir, "bare.csv", "1,2,0\n3,4,1\n");
    deepStrictEqual((await loadInputs(bare)).x, new Float32Array([1, 2, 0, 3, 4, 1]));
  });
});

Deno.test("loadDataset() names the CSV row and column of a bad cell, counting the header", async () => {
  await withTempDir(async (dir) => {
    const path = await file(dir, "bad.csv", "y,a,b\n1,2,3\n\n0,4,5,6\n");
    await failsWith(
      () => loadDataset(path, { labelColumn: "y" }),
      TypeError,
      `Cannot load "${path}": row 4 has 3 values besides the label, expected 2`,
    );
    await failsWith(
      () => loadDataset(path, { labelColumn: "y", width: 3 }),
      TypeError,
      `Cannot load "${path}": row 1 (the header) has 3 columns, expected 4 (3 inputs and the label)`,
    );
    const cells: [string, string][] = [
      ["1,2,NaN", 'row 3, column 3 ("b"): "NaN" is not a number'],
      ["1,2,", 'row 3, column 3 ("b"): the cell is empty, expected a number'],
      ["1,x7,3", 'row 3, column 2 ("a"): "x7" is not a number'],
      ["1.5,2,3", "row 3 has label 1.5, expected an integer class >= 0"],
      ['1,"2', "row 3 has an unterminated quote (a quoted cell cannot span lines)"],
    ];
    for (const [row, message] of cells) {
      const bad = await file(dir, "cell.csv", `y,a,b\n1,2,3\n${row}\n`);
      await rejects(() => loadDataset(bad, { labelColumn: "y" }), (e: Error) => {
        strictEqual(e.message, `Cannot load "${bad}": ${message}`);
        return true;
      });
    }
    const nan = await file(dir, "nan.csv", "1,nan,3\n");
    await failsWith(
      () => loadInputs(nan),
      TypeError,
      `Cannot load "${nan}": row 1, column 2: "nan" is not a number`,
    );
  });
});

Deno.test("loadDataset() explains a CSV label column it cannot find", async () => {
  await withTempDir(async (dir) => {
    const head = await file(dir, "h.csv", "a,b\n1,2\n");
    const bare = await file(dir, "b.csv", "1,2\n");
    await failsWith(
      () => loadDataset(head),
      TypeError,
      `Cannot load "${head}": name its label column (labelColumn: a header name or a 0-based index)`,
    );
    await failsWith(
      () => loadDataset(head, { labelColumn: "label" }),
      RangeError,
      `Cannot load "${head}": no column is named "label"; the header has "a", "b" (2 columns)`,
    );
    await failsWith(
      () => loadDataset(bare, { labelColumn: "label" }),
      TypeError,
      `Cannot load "${bare}": labelColumn "label" names a column, but the file has no header row (row 1 is all numbers)`,
    );
    await failsWith(
      () => loadDataset(bare, { labelColumn: 2 }),
      RangeError,
      `Cannot load "${bare}": labelColumn 2 is out of range: the file has 2 columns`,
    );
  });
});

Deno.test("loadDataset() fails clearly on empty files and unknown formats", async () => {
  await withTempDir(async (dir) => {
    for (
      const [name, text, why] of [
        ["e.jsonl", "", "the file is empty"],
        ["e.csv", "", "the file is empty"],
        ["blank.jsonl", "\n \n", "the file has no rows"],
        ["head.csv", "a,label\n", "the file has no rows"],
      ]
    ) {
      const path = await file(dir, name!, text!);
      await failsWith(
        () => loadDataset(path, { labelColumn: "label" }),
        SyntaxError,
        `Cannot load "${path}": ${why}`,
      );
    }
    const txt = await file(dir, "data.txt", "1,2\n");
    await rejects(() => loadInputs(txt), /cannot tell its format from its name/);
    deepStrictEqual((await loadInputs(txt, { format: "csv" })).x, new Float32Array([1, 2]));
    await rejects(() => loadInputs(`${dir}/missing.csv`), Deno.errors.NotFound);
    const binary = `${dir}/bin.csv`;
    await Deno.writeFile(binary, new Uint8Array([0x31, 0xff, 0xfe, 0x0a]));
    await failsWith(
      () => loadInputs(binary),
      SyntaxError,
      `Cannot load "${binary}": the file is not UTF-8 text`,
    );
  });
});

Deno.test("saveDatasetSafetensors() then loadDataset() gives back the same dataset", async () => {
  await withTempDir(async (dir) => {
    const x = new Float32Array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    const sets: Dataset[] = [
      {
        rows: 3,
        width: 2,
        x,
        y: { kind: "labels", data: new BigInt64Array([2n, 0n, 1n]), classes: 7 },
      },
      {
        rows: 2,
        width: 3,
        x,
        y: { kind: "targets", data: new Float32Array([1, 2, 3, 4]), width: 2 },
      },
    ];
    for (const data of sets) {
      const path = `${dir}/d.safetensors`;
      await saveDatasetSafetensors(path, data);
      deepStrictEqual(await loadDataset(path, { width: data.width }), data);
      deepStrictEqual(await loadInputs(path), { rows: data.rows, width: data.width, x });
    }
  });
});

Deno.test("loadDataset() converts safetensors inputs to F32 and checks shapes and values", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/d.safetensors`;
    const x32 = { dtype: "F32" as const, shape: [2, 2, 2], data: new Float32Array(8).fill(0.5) };
    await writeSafetensors(path, {
      x: castFloat(x32, "BF16"),
      y: { dtype: "U8", shape: [2], data: new Uint8Array([1, 3]) },
    });
    const data = await loadDataset(path);
    deepStrictEqual([data.rows, data.width, data.x], [2, 4, new Float32Array(8).fill(0.5)]);
    deepStrictEqual(data.y, { kind: "labels", data: new BigInt64Array([1n, 3n]), classes: 4 });
    await failsWith(
      () => loadDataset(path, { width: 3 }),
      TypeError,
      `Cannot load "${path}": tensor "x" has shape [2, 2, 2], expected [rows, 3]`,
    );
    x32.data[5] = NaN;
    await writeSafetensors(path, {
      x: x32,
      y: { dtype: "F32", shape: [2], data: new Float32Array(2) },
    });
    await failsWith(
      () => loadInputs(path),
      RangeError,
      `Cannot load "${path}": x[1, 0, 1] is NaN, expected a finite number`,
    );
    x32.data[5] = 0;
    await writeSafetensors(path, {
      x: x32,
      y: { dtype: "F32", shape: [2], data: new Float32Array(2) },
    });
    await failsWith(
      () => loadDataset(path),
      TypeError,
      `Cannot load "${path}": tensor "y" has dtype F32 and shape [2], expected integer labels [2] or float targets [2, k]`,
    );
    await writeSafetensors(path, { x: x32 });
    await rejects(() => loadDataset(path), /it has no tensor "y"/);
  });
});

Deno.test("writeJsonl() writes typed arrays as the shortest float32 decimals", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/out.jsonl`;
    const y = new Float32Array([0.1, 1 / 3, 1e-8, 2]);
    await writeJsonl(path, [{ y: y.subarray(0, 2) }, { y: y.subarray(2), label: 3n }]);
    strictEqual(
      await Deno.readTextFile(path),
      '{"y":[0.1,0.33333334]}\n{"y":[1e-8,2],"label":3}\n',
    );
    await writeJsonl(path, [{ x: y }]);
    deepStrictEqual((await loadInputs(path)).x, y);
  });
});
