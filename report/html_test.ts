import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import { registerReport } from "../cli/report.ts";
import { Rng } from "../src/rng.ts";
import { findAll, parseXml, textOf, type XmlElement } from "../tests/_xml.ts";
import { parseConfusion } from "./confusion.ts";
import { renderReport, writeReport } from "./html.ts";
import { parseMetrics } from "./run.ts";

const FIXTURE = new URL("../fixtures/report_run/", import.meta.url).pathname;

/** The number of metrics lines of each kind whose `key` is a finite number, read independently. */
async function countFinite(dir: string, key: string, evalLines: boolean): Promise<number> {
  const lines = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).split("\n").filter(Boolean);
  return lines.map((l) => JSON.parse(l)).filter((l) =>
    (l.eval === true) === evalLines && typeof l[key] === "number" && Number.isFinite(l[key])
  ).length;
}

/**
 * The points of series `id`. A full-width chart has a compact copy for narrow screens: both must
 * draw the same number of points.
 */
function points(page: XmlElement, id: string): number[][] {
  const lines = findAll(page, (e) => e.name === "polyline" && e.attrs["data-series"] === id)
    .map((l) => l.attrs.points!.split(" ").map((p) => p.split(",").map(Number)));
  ok(lines.length === 1 || lines.length === 2, `${lines.length} polylines "${id}"`);
  if (lines.length === 2) strictEqual(lines[0]!.length, lines[1]!.length, `copies of "${id}"`);
  return lines[0]!;
}

/** Checks what every chart of a page must satisfy; returns the page's tree. */
function checkPage(html: string, charts = true): XmlElement {
  const page = parseXml(html); // the whole page is well-formed XML
  const svgs = findAll(page, (e) => e.name === "svg");
  ok(svgs.length > 0 || !charts, "no chart");
  for (const svg of svgs) {
    for (const e of findAll(svg, () => true)) {
      for (const [k, v] of Object.entries(e.attrs)) {
        if (["x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "height"].includes(k)) {
          ok(Number.isFinite(Number(v)), `<${e.name} ${k}="${v}">`);
        }
        if (k === "points") ok(v.split(/[ ,]/).every((n) => Number.isFinite(Number(n))), v);
      }
    }
    for (const axis of ["x", "y"]) {
      const ticks = findAll(svg, (e) => e.attrs.class === `tick ${axis}`);
      const values = ticks.map((t) => Number(t.attrs["data-value"]));
      ok(values.every((v, i) => i === 0 || v > values[i - 1]!), `${axis} ticks ${values}`);
    }
  }
  const urls = html.match(/https?:\/\/[^\s"'<>)]*/g) ?? [];
  deepStrictEqual([...new Set(urls)], svgs.length ? ["http://www.w3.org/2000/svg"] : []);
  ok(!/<script|<link|<img|<iframe|@import|url\(|\ssrc=|\shref=/i.test(html), "external reference");
  ok(!/NaN|Infinity/.test(html.replace(/<aside class="notes">.*?<\/aside>/s, "")), "NaN in page");
  return page;
}

async function tempRun(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ffwd_report_" });
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return dir;
}

Deno.test("the sample run's report has one polyline point per finite metrics line", async () => {
  const page = checkPage(await renderReport(FIXTURE));
  const steps = await countFinite(FIXTURE, "loss", false);
  strictEqual(steps, 300);
  strictEqual(points(page, "loss-raw").length, steps);
  strictEqual(points(page, "loss-smooth").length, steps);
  strictEqual(points(page, "lr").length, await countFinite(FIXTURE, "lr", false));
  strictEqual(points(page, "grad-norm").length, await countFinite(FIXTURE, "grad_norm", false));
  strictEqual(
    points(page, "samples-per-s").length,
    await countFinite(FIXTURE, "samples_per_s", false),
  );
  strictEqual(points(page, "eval-loss").length, await countFinite(FIXTURE, "loss", true));
  strictEqual(points(page, "eval-accuracy").length, await countFinite(FIXTURE, "accuracy", true));
  const markers = findAll(
    page,
    (e) => e.name === "g" && e.attrs["data-series"] === "eval-loss-markers",
  );
  for (const group of markers) strictEqual(findAll(group, (e) => e.name === "circle").length, 10);
});

Deno.test("the sample run's confusion matrix cells equal confusion.json", async () => {
  const page = checkPage(await renderReport(FIXTURE));
  const input = JSON.parse(await Deno.readTextFile(`${FIXTURE}/confusion.json`));
  const [table] = findAll(page, (e) => e.name === "table");
  const rows = findAll(findAll(table!, (e) => e.name === "tbody")[0]!, (e) => e.name === "tr");
  const cells = rows.map((r) =>
    findAll(r, (e) => e.name === "td" && /\bcell\b/.test(e.attrs.class ?? "")).map((td) =>
      Number(textOf(td))
    )
  );
  deepStrictEqual(cells, input.matrix);
  const rowLabels = rows.map((r) => textOf(findAll(r, (e) => e.name === "th")[0]!));
  deepStrictEqual(rowLabels, input.labels);
});

Deno.test("the sample run's report shows the adapter, the parameter counts and the throughput", async () => {
  const html = await renderReport(FIXTURE);
  const text = textOf(parseXml(html));
  for (
    const expected of [
      "rank r8",
      "alpha α16",
      "scale2 (α / r = 16 / 8)",
      "DoRA",
      "rsLoRA off",
      "fc1",
      "fc2",
      "dropout0.05",
      "trainable15,066",
      "base (frozen)407,050",
      "trainable / base3.701%",
      "median samples/s",
    ]
  ) {
    ok(text.includes(expected), `"${expected}" not in the report`);
  }
  ok(html.includes("log scale (the loss spans"), "the fixture's loss spans two decades: log scale");
  ok(!(await renderReport(FIXTURE, { scale: "linear" })).includes("log scale (the loss"));
});

Deno.test("NaN, Inf, bad lines and repeated steps are skipped and noted", async () => {
  const dir = await tempRun({
    "metrics.jsonl": [
      '{"step":1,"loss":2.0,"lr":0.001}',
      '{"step":2,"loss":null,"lr":0.001}', // JSON.stringify(NaN)
      '{"step":3,"loss":NaN,"lr":0.001}', // Python's json
      '{"step":4,"loss":1.5,"lr":Infinity}',
      "not json",
      '{"step":5,"loss":1.2,"lr":0.001,"grad_norm":-Infinity}',
      '{"step":5,"loss":1.1,"lr":0.001}', // resumed: the later line wins
      '{"eval":true,"step":5,"epoch":1,"loss":NaN,"accuracy":0.5}',
      '{"step":6,"loss":1.0,"lr":0.001}',
      "",
    ].join("\n"),
  });
  try {
    const html = await renderReport(dir);
    const page = checkPage(html);
    strictEqual(points(page, "loss-raw").length, 4); // steps 1, 4, 5, 6
    strictEqual(points(page, "lr").length, 5); // all but step 4
    const notes = textOf(findAll(page, (e) => e.name === "aside")[0]!);
    ok(notes.includes("1 line of metrics.jsonl not a JSON object"), notes);
    ok(notes.includes("loss at step 2, loss at step 3, lr at step 4"), notes);
    ok(notes.includes("1 step logged more than once"), notes);
    // the repeated step 5 kept its later line: loss 1.1, and no grad_norm
    const m = parseMetrics(await Deno.readTextFile(`${dir}/metrics.jsonl`));
    deepStrictEqual(m.steps.map((s) => [s.step, s.loss]), [[1, 2], [2, NaN], [3, NaN], [4, 1.5], [
      5,
      1.1,
    ], [6, 1]]);
    ok(Number.isNaN(m.evals[0]!.loss) && m.evals[0]!.accuracy === 0.5);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("random metrics with gaps, NaN, Inf and odd epochs always give a well-formed page", async () => {
  const rng = new Rng(11);
  const pick = <T>(...values: T[]) => values[rng.int(values.length)]!;
  const value = (x: number) =>
    pick(`${x}`, `${x}`, `${x}`, `${x}`, "null", "NaN", "Infinity", "-Infinity", "0", "-1");
  for (let run = 0; run < 25; run++) {
    const lines: string[] = [];
    const n = rng.int(40);
    for (let step = 1; step <= n; step++) {
      const loss = 10 ** (rng.uniform() * 6 - 3);
      lines.push(
        `{"step":${step},"loss":${value(loss)},"lr":${value(1e-3 * rng.uniform())}${
          pick("", `,"samples_per_s":${value(1000 * rng.uniform())}`)
        }}`,
      );
      if (rng.uniform() < 0.2) {
        const epoch = pick(String(rng.int(5)), "null", `${step}`);
        lines.push(
          `{"eval":true,"step":${step},"epoch":${epoch},"loss":${value(loss)}${
            pick("", `,"accuracy":${value(rng.uniform())}`)
          }}`,
        );
      }
    }
    const dir = await tempRun({ "metrics.jsonl": lines.join("\n") });
    try {
      for (const scale of ["auto", "log", "linear"] as const) {
        checkPage(await renderReport(dir, { scale }), false);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("a run with only metrics.jsonl, or an empty one, still gets a report", async () => {
  const dir = await tempRun({ "metrics.jsonl": '{"step":1,"loss":0.7,"lr":0.001}\n' });
  try {
    const page = checkPage(await renderReport(dir));
    strictEqual(points(page, "loss-raw").length, 1);
    const text = textOf(page);
    ok(text.includes("No eval lines") && text.includes("No adapter_config.json"), text);
    ok(text.includes("summary.json is missing"));
    strictEqual(findAll(page, (e) => e.name === "table").length, 0);
    await Deno.writeTextFile(`${dir}/metrics.jsonl`, "");
    const empty = parseXml(await renderReport(dir));
    ok(textOf(empty).includes("No finite training loss yet"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a bad optional file is noted and its section left out", async () => {
  const dir = await tempRun({
    "metrics.jsonl": '{"step":1,"loss":0.7,"lr":0.001}\n{"step":2,"loss":0.6,"lr":0.001}\n',
    "confusion.json": '{"labels":["a","b"],"matrix":[[1,2],[3]]}',
    "summary.json": "{not json",
    "adapter_config.json": '{"peft_type":"LORA","r":0}',
  });
  try {
    const page = checkPage(await renderReport(dir));
    const notes = textOf(findAll(page, (e) => e.name === "aside")[0]!);
    ok(notes.includes(`row 1 of "matrix" must have 2 counts, got 1 values`), notes);
    ok(notes.includes('summary.json": invalid JSON'), notes);
    ok(notes.includes(`field "r" must be an integer >= 1, got 0`), notes);
    strictEqual(findAll(page, (e) => e.name === "table").length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a missing run folder or metrics.jsonl is an error naming it", async () => {
  await rejects(renderReport("/nonexistent/run"), Deno.errors.NotFound);
  const dir = await tempRun({});
  try {
    await rejects(
      renderReport(dir),
      (e: Error) => e.message.includes(`${dir}/metrics.jsonl" does not exist`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeReport() writes report.html atomically and ffwd report rewrites it", async () => {
  const dir = await tempRun({
    "metrics.jsonl": await Deno.readTextFile(`${FIXTURE}/metrics.jsonl`),
    "confusion.json": await Deno.readTextFile(`${FIXTURE}/confusion.json`),
  });
  try {
    const path = await writeReport(`${dir}/`);
    strictEqual(path, `${dir}/report.html`);
    strictEqual(await Deno.readTextFile(path), await renderReport(dir));
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "confusion.json",
      "metrics.jsonl",
      "report.html",
    ]);
    await Deno.remove(path);
    const program = new Command().option("--debug").exitOverride();
    registerReport(program);
    await program.parseAsync(["report", dir, "--scale", "linear"], { from: "user" });
    ok((await Deno.readTextFile(path)).includes("per step, linear scale"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseConfusion() checks the matrix is square and the labels match it", () => {
  deepStrictEqual(parseConfusion({ matrix: [[1, 0], [0, 1]] }).labels, ["0", "1"]);
  throws(() => parseConfusion({ matrix: [] }), TypeError);
  throws(() => parseConfusion({ matrix: [[1, -1], [0, 1]] }), RangeError);
  throws(() => parseConfusion({ labels: ["a"], matrix: [[1, 0], [0, 1]] }), TypeError);
});

Deno.test("the report names all-linear and a regular expression for what they are, and marks an interrupted run", async () => {
  const metrics = '{"step":1,"loss":0.7,"lr":0.001}\n';
  const config = (target_modules: unknown) => JSON.stringify({ peft_type: "LORA", target_modules });
  const summary = JSON.stringify({ steps: 1, interrupted: true, adapted_layers: ["fc1", "fc3"] });
  const targetsOf = async (files: Record<string, string>) => {
    const page = checkPage(
      await renderReport(await tempRun({ "metrics.jsonl": metrics, ...files })),
    );
    const dts = findAll(page, (e) => e.name === "dt");
    const dd = (label: string) => {
      const dt = dts.find((e) => textOf(e) === label);
      return dt ? textOf(findAll(page, (e) => e.name === "dd")[dts.indexOf(dt)]!) : undefined;
    };
    const badges = findAll(page, (e) => e.attrs.class === "badge").map(textOf);
    return { targets: dd("targets"), adapted: dd("adapted"), badges };
  };
  deepStrictEqual(await targetsOf({ "adapter_config.json": config("all-linear") }), {
    targets: "all-linear (every linear layer but a whole model\u2019s output layer)",
    adapted: undefined,
    badges: [],
  });
  deepStrictEqual(
    await targetsOf({ "adapter_config.json": config("fc[13]"), "summary.json": summary }),
    { targets: "fc[13] (regular expression)", adapted: "fc1fc3", badges: ["interrupted"] },
  );
  // A list of the adapted layers is not repeated.
  const listed = await targetsOf({
    "adapter_config.json": config(["fc1", "fc3"]),
    "summary.json": summary,
  });
  deepStrictEqual([listed.targets, listed.adapted], ["fc1fc3", undefined]);
});
