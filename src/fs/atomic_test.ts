import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { withAtomicFile, writeAll, writeFileAtomic } from "./atomic.ts";

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) out.push(entry.name);
  return out.sort();
}

Deno.test("writeFileAtomic() writes a buffer and leaves no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeFileAtomic(`${dir}/a.bin`, new Uint8Array([1, 2, 3]));
    deepStrictEqual(await Deno.readFile(`${dir}/a.bin`), new Uint8Array([1, 2, 3]));
    deepStrictEqual(await names(dir), ["a.bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() streams chunks from iterables, async iterables and streams", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const chunks = [new Uint8Array([1]), new Uint8Array([2, 3]), new Uint8Array(0)];
    await writeFileAtomic(`${dir}/sync.bin`, chunks);
    await writeFileAtomic(
      `${dir}/async.bin`,
      (async function* () {
        yield* chunks;
      })(),
    );
    await writeFileAtomic(`${dir}/stream.bin`, ReadableStream.from(chunks));
    for (const name of ["sync.bin", "async.bin", "stream.bin"]) {
      deepStrictEqual(await Deno.readFile(`${dir}/${name}`), new Uint8Array([1, 2, 3]), name);
    }
    deepStrictEqual(await names(dir), ["async.bin", "stream.bin", "sync.bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() replaces an existing file and accepts file URLs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const url = new URL(`file://${dir}/dir%20with%20space.txt`);
    await Deno.writeTextFile(url, "old contents that are longer");
    await writeFileAtomic(url, new TextEncoder().encode("new"), { sync: false });
    strictEqual(await Deno.readTextFile(url), "new");
    deepStrictEqual(await names(dir), ["dir with space.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("withAtomicFile() keeps the old file and removes the temporary one on error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/keep.txt`;
    await Deno.writeTextFile(path, "old");
    await rejects(
      withAtomicFile(path, async (file) => {
        await writeAll(file, new TextEncoder().encode("half of the new"));
        throw new RangeError("stop here");
      }),
      { name: "RangeError", message: "stop here" },
    );
    strictEqual(await Deno.readTextFile(path), "old");
    deepStrictEqual(await names(dir), ["keep.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("withAtomicFile() returns the callback's result and writes the temp file nearby", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const seen = await withAtomicFile(`${dir}/x.json`, async (file) => {
      await writeAll(file, new TextEncoder().encode("{}"));
      return await names(dir);
    });
    strictEqual(seen.length, 1);
    ok(/^\.x\.json\.[0-9a-z]+\.tmp$/.test(seen[0]!), String(seen[0]));
    strictEqual(await Deno.readTextFile(`${dir}/x.json`), "{}");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() names the destination when its folder is missing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await rejects(writeFileAtomic(`${dir}/nope/out.bin`, new Uint8Array(1)), (error) => {
      ok(error instanceof Deno.errors.NotFound);
      strictEqual(error.message, `Cannot write "${dir}/nope/out.bin": its folder does not exist`);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() rejects chunks that are not bytes and cleans up", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bad = [new Uint8Array(1), "text"] as unknown as Uint8Array[];
    await rejects(writeFileAtomic(`${dir}/bad.bin`, bad), {
      name: "TypeError",
      message: `Cannot write "${dir}/bad.bin": a chunk is a string, expected a Uint8Array`,
    });
    deepStrictEqual(await names(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic() refuses a path that names a folder", async () => {
  await rejects(writeFileAtomic("some/folder/", new Uint8Array(1)), {
    name: "TypeError",
    message: `Cannot write "some/folder/": it names a folder`,
  });
});

Deno.test("writeFileAtomic() applies the requested mode", async () => {
  if (Deno.build.os === "windows") return;
  const dir = await Deno.makeTempDir();
  try {
    await writeFileAtomic(`${dir}/secret`, new Uint8Array(1), { mode: 0o600 });
    strictEqual((await Deno.stat(`${dir}/secret`)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
