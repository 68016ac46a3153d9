// The layering rules of README's "Where things live", checked on the import graph of every
// TypeScript file in the repository (comments and doc examples aside: only real imports count).
import { deepStrictEqual } from "node:assert/strict";
import { dirname, join, normalize } from "node:path";

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));
const SKIP = new Set(["node_modules", "runs", ".bench", ".git", "fixtures", ".scratch"]);
const GENERATED = "src/onnx/gen/";
const MAX_LINES = 500;

/**
 * The areas of the code, lowest first. An area may import its own rank and the ranks below; the
 * areas of one rank must not import each other in a cycle.
 */
const RANKS: readonly (readonly string[])[] = [
  ["src/tensor", "src/half", "src/rng", "src/fs", "src/onnx"],
  ["src/engine", "src/io"],
  ["src/models", "src/data", "src/lora"],
  ["src/train", "src/infer"],
  ["adapters"],
  ["workflows", "report"],
  ["mod.ts"],
  ["cli"],
  ["examples"],
];

interface Import {
  readonly from: string;
  readonly to: string;
  readonly typeOnly: boolean;
}

async function tsFiles(dir = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(ROOT, dir))) {
    const path = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory && !SKIP.has(e.name) && !`${path}/`.startsWith(GENERATED)) {
      out.push(...await tsFiles(path));
    } else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

/** The source with comments blanked out (strings and template literals kept). */
function stripComments(src: string): string {
  let out = "";
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    const next = src[i + 1];
    if (c === "/" && next === "/") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = src.indexOf("*/", i + 2);
      i = end < 0 ? src.length : end + 2;
      out += " ";
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === "\\" ? 2 : 1;
      out += src.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const STATIC = /(?:^|[;\n}])\s*(import|export)\s+(type\s+)?([^;"']*?\s+from\s+)?["']([^"']+)["']/g;
const DYNAMIC = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

function importsOf(file: string, src: string): Import[] {
  const code = stripComments(src);
  const out: Import[] = [];
  const add = (spec: string, typeOnly: boolean) => {
    if (!spec.startsWith(".")) return; // npm and node: specifiers
    out.push({ from: file, to: normalize(join(dirname(file), spec)), typeOnly });
  };
  for (const m of code.matchAll(STATIC)) {
    const names = m[3] ?? "";
    // `import { type A, type B } from` is type-only too
    const allTypes = /^\{[^}]*\}/.test(names.trim()) &&
      names.replace(/[{}]|\s+from\s+$/g, "").split(",").every((n) =>
        n.trim() === "" || n.trim().startsWith("type ")
      );
    add(m[4]!, m[2] !== undefined || allTypes);
  }
  for (const m of code.matchAll(DYNAMIC)) add(m[1]!, false);
  return out;
}

function areaOf(path: string): string {
  const parts = path.split("/");
  if (parts.length === 1) return parts[0]!;
  if (parts[0] === "src") {
    return parts.length === 2 ? `src/${parts[1]!.replace(/\.ts$/, "")}` : `src/${parts[1]}`;
  }
  return parts[0]!;
}

const rankOf = (area: string) => RANKS.findIndex((r) => r.includes(area));
const isTest = (path: string) => path.endsWith("_test.ts") || path.startsWith("tests/");
const isProduction = (path: string) => !isTest(path) && rankOf(areaOf(path)) >= 0;

const files = await tsFiles();
const sources = new Map(
  await Promise.all(
    files.map(async (f) => [f, await Deno.readTextFile(join(ROOT, f))] as const),
  ),
);
const imports = files.flatMap((f) => importsOf(f, sources.get(f)!));

Deno.test("the import graph is read (the rules below check something)", () => {
  deepStrictEqual(imports.length > 500, true, `only ${imports.length} imports found`);
  deepStrictEqual(
    importsOf("a/b.ts", 'import type { X } from "../c.ts";\nexport { y } from "./d.ts";'),
    [{ from: "a/b.ts", to: "c.ts", typeOnly: true }, {
      from: "a/b.ts",
      to: "a/d.ts",
      typeOnly: false,
    }],
  );
  deepStrictEqual(importsOf("a.ts", '/** import { x } from "./doc.ts"; */ const s = "//";'), []);
});

Deno.test("every production file belongs to a known area", () => {
  const unknown = files.filter((f) =>
    !isTest(f) && !f.startsWith("bench/") && !f.startsWith(GENERATED) && rankOf(areaOf(f)) < 0
  );
  deepStrictEqual(unknown, []);
});

Deno.test("no production file under src/ imports anything outside src/", () => {
  const bad = imports.filter((i) =>
    i.from.startsWith("src/") && !isTest(i.from) && !i.to.startsWith("src/")
  );
  deepStrictEqual(bad.map((i) => `${i.from} → ${i.to}`), []);
});

Deno.test("production code imports no tests, fixtures, test files or benchmark code", () => {
  const bad = imports.filter((i) =>
    isProduction(i.from) &&
    (isTest(i.to) || i.to.startsWith("fixtures/") ||
      (i.to.startsWith("bench/") && !i.from.startsWith("cli/")))
  );
  deepStrictEqual(bad.map((i) => `${i.from} → ${i.to}`), []);
});

Deno.test("imports run downwards: no area imports a higher one", () => {
  const bad = imports.filter((i) => {
    if (!isProduction(i.from) || !isProduction(i.to)) return false;
    return rankOf(areaOf(i.to)) > rankOf(areaOf(i.from));
  });
  deepStrictEqual(bad.map((i) => `${i.from} → ${i.to}${i.typeOnly ? " (type)" : ""}`), []);
});

Deno.test("no cycle between areas (type-only imports aside)", () => {
  const edges = new Map<string, Set<string>>();
  for (const i of imports) {
    if (i.typeOnly || isTest(i.from) || isTest(i.to)) continue;
    const [a, b] = [areaOf(i.from), areaOf(i.to)];
    if (a !== b) edges.set(a, (edges.get(a) ?? new Set()).add(b));
  }
  const cycles: string[] = [];
  const reaches = (from: string, to: string, seen = new Set<string>()): boolean => {
    if (from === to) return true;
    if (seen.has(from)) return false;
    seen.add(from);
    return [...edges.get(from) ?? []].some((n) => reaches(n, to, seen));
  };
  for (const [a, targets] of edges) {
    for (const b of targets) if (a < b && reaches(b, a)) cycles.push(`${a} ⇄ ${b}`);
  }
  deepStrictEqual(cycles, []);
});

Deno.test("a private _x.ts module is imported only from its own folder", () => {
  const bad = imports.filter((i) => {
    const name = i.to.split("/").pop()!;
    return name.startsWith("_") && !i.to.startsWith("tests/") && dirname(i.to) !== dirname(i.from);
  });
  deepStrictEqual(bad.map((i) => `${i.from} → ${i.to}`), []);
});

Deno.test(`no production file is over ${MAX_LINES} lines`, () => {
  const long = files.filter((f) => isProduction(f) && !f.startsWith(GENERATED))
    .map((f) => ({ f, n: sources.get(f)!.split("\n").length - 1 }))
    .filter(({ n }) => n > MAX_LINES).map(({ f, n }) => `${f}: ${n}`);
  deepStrictEqual(long, []);
});

Deno.test("mod.ts exports no benchmark code", () => {
  const bad = imports.filter((i) => i.from === "mod.ts" && i.to.startsWith("bench/"));
  deepStrictEqual(bad.map((i) => i.to), []);
});
