import { assert, assertEquals } from "../../tests/_assert.ts";
import { Counter, Histogram, renderMetrics, serverMetrics } from "./metrics.ts";

Deno.test("counters render one series per label set, with escaped label values", () => {
  const c = new Counter("x_total", "Things.");
  c.inc({ route: "/a", status: "200" });
  c.inc({ route: "/a", status: "200" }, 2);
  c.inc({ route: 'we"ird\\\n', status: "500" });
  assertEquals(c.value({ route: "/a", status: "200" }), 3);
  assertEquals(c.render().split("\n"), [
    "# HELP x_total Things.",
    "# TYPE x_total counter",
    'x_total{route="/a",status="200"} 3',
    'x_total{route="we\\"ird\\\\\\n",status="500"} 1',
    "",
  ]);
});

Deno.test("histograms render cumulative buckets, +Inf, sum and count", () => {
  const h = new Histogram("rows", "Rows.", [1, 4, 16]);
  for (const v of [1, 3, 4, 20]) h.observe(v, { k: "v" });
  h.observe(2);
  const lines = h.render().split("\n");
  for (
    const l of [
      'rows_bucket{k="v",le="1"} 1',
      'rows_bucket{k="v",le="4"} 3',
      'rows_bucket{k="v",le="16"} 3',
      'rows_bucket{k="v",le="+Inf"} 4',
      'rows_sum{k="v"} 28',
      'rows_count{k="v"} 4',
      'rows_bucket{le="4"} 1',
      "rows_count 1",
    ]
  ) assert(lines.includes(l), `missing ${l} in\n${lines.join("\n")}`);
  assertEquals(h.count({ k: "v" }), 4);
});

Deno.test("renderMetrics() adds the engine's loads, evictions and gauges", () => {
  const m = serverMetrics();
  m.batchRows.observe(64);
  const text = renderMetrics(m, {
    stats: { loads: 5, evictions: 2, runs: 9, rows: 70 },
    adapters: 3,
    bytes: 4096,
  });
  for (
    const l of [
      "# TYPE ffwd_adapter_loads_total counter",
      "ffwd_adapter_loads_total 5",
      "ffwd_adapter_evictions_total 2",
      "ffwd_adapters_loaded 3",
      "ffwd_adapter_bytes 4096",
      'ffwd_batch_rows_bucket{le="64"} 1',
    ]
  ) assert(text.includes(l + "\n"), `missing ${l}`);
});

Deno.test("renderMetrics() reports the process's CPU seconds as a counter that never falls", () => {
  const cpu = () => {
    const text = renderMetrics(serverMetrics());
    assert(text.includes("# TYPE process_cpu_seconds_total counter\n"), text);
    return Number(/^process_cpu_seconds_total (\S+)$/m.exec(text)![1]);
  };
  const first = cpu();
  let spin = 0;
  for (let i = 0; i < 1e6; i++) spin += i % 7;
  const second = cpu();
  assert(first > 0 && second >= first, `${first} then ${second} (${spin})`);
});
