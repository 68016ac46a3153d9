/**
 * The report's look (imported only by siblings): its colours and its one inline stylesheet.
 *
 * Series colours are the Okabe–Ito palette (Okabe & Ito, "Color Universal Design", 2008),
 * distinguishable in every common form of colour blindness; the heatmap uses ColorBrewer blues.
 * Fonts are the system's own (no web fonts: the report works offline). The stylesheet has no
 * `<` or `&`, so the whole page stays well-formed XML.
 *
 * @module
 */

/** Colours of the chart series. */
export const COLORS = {
  loss: "#0072B2", // blue
  eval: "#D55E00", // vermillion
  accuracy: "#009E73", // bluish green
  lr: "#CC79A7", // reddish purple
  gradNorm: "#E69F00", // orange
  throughput: "#56B4E9", // sky blue
} as const;

const FONT =
  `system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", "Liberation Sans", Arial, sans-serif`;
const MONO = `ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace`;

/** The whole stylesheet. */
export const CSS = `
:root { --ink: #1f2933; --muted: #5f6b7a; --line: #e3e8ee; --grid: #e9edf2; --bg: #f5f7fa;
  --card: #ffffff; --accent: ${COLORS.loss}; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 15px/1.5 ${FONT};
  -webkit-font-smoothing: antialiased; }
.page { max-width: 1240px; margin: 0 auto; padding: 32px 24px 40px; }
.top { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: flex-end;
  gap: 8px 24px; }
.eyebrow { margin: 0; font-size: 12px; font-weight: 600; letter-spacing: .08em;
  text-transform: uppercase; color: var(--muted); }
h1 { margin: 2px 0 2px; font-size: 28px; font-weight: 650; letter-spacing: -.01em; }
.sub { margin: 0; color: var(--muted); }
.badge { display: inline-block; margin-left: 8px; padding: 1px 9px; border-radius: 999px;
  font-size: 12px; font-weight: 600; vertical-align: middle; background: #fff1e6;
  color: #8a3b00; border: 1px solid #f4c9a8; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 150px), 1fr));
  gap: 12px; margin: 22px 0 16px; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 16px; }
.kpi .label { font-size: 12px; font-weight: 600; letter-spacing: .06em; text-transform: uppercase;
  color: var(--muted); }
.kpi .value { margin-top: 2px; font-size: 26px; font-weight: 650; line-height: 1.25;
  font-variant-numeric: tabular-nums; }
.kpi .detail { font-size: 13px; color: var(--muted); }
.notes { margin: 0 0 16px; padding: 10px 16px; border: 1px solid #f0d48c; border-radius: 10px;
  background: #fff9e8; color: #5c4400; font-size: 14px; }
.notes h2 { margin: 0 0 2px; font-size: 14px; }
.notes ul { margin: 0; padding-left: 18px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 360px), 1fr));
  gap: 16px; margin-bottom: 16px; }
.card { min-width: 0; margin-bottom: 16px; padding: 16px 20px 12px; background: var(--card);
  border: 1px solid var(--line); border-radius: 12px; box-shadow: 0 1px 2px rgba(16, 24, 40, .04); }
.grid .card { margin-bottom: 0; }
.card-head { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: baseline;
  gap: 4px 16px; margin-bottom: 6px; }
.card h2 { margin: 0; font-size: 16px; font-weight: 650; }
.card .meta { margin: 0; font-size: 13px; color: var(--muted); }
.card .empty-card { margin: 12px 0 8px; color: var(--muted); }
.legend { display: flex; flex-wrap: wrap; gap: 2px 14px; margin: 0; padding: 0; list-style: none;
  font-size: 13px; color: var(--muted); }
.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 18px; height: 0; border-top: 3px solid; border-radius: 2px; }
.swatch.faint { opacity: .35; }
.swatch.dash { border-top-style: dashed; }
.swatch.dot { width: 9px; height: 9px; border: 0; border-radius: 50%; }
.chart-compact { display: none; }
svg.chart { display: block; width: 100%; height: auto; overflow: visible; }
svg.chart text { font: 12px ${FONT}; fill: var(--muted); font-variant-numeric: tabular-nums; }
svg.chart text.axis-label { fill: var(--ink); font-weight: 600; }
svg.chart text.empty { font-size: 14px; }
svg.chart line.grid { stroke: var(--grid); stroke-width: 1; }
svg.chart line.grid.minor { stroke: #f2f4f7; }
svg.chart line.grid.x { stroke: #f0f2f5; }
svg.chart line.axis { stroke: #9aa5b1; stroke-width: 1; }
svg.chart .hover rect { fill: transparent; }
svg.chart .hover rect:hover { fill: rgba(15, 23, 42, .06); }
svg.chart .markers circle { stroke: #ffffff; stroke-width: 1.5; }
dl.props { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 8px 0 4px;
  font-size: 14px; }
dl.props dt { color: var(--muted); }
dl.props dd { margin: 0; min-width: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
.chip { display: inline-block; margin: 0 4px 4px 0; padding: 0 8px; border-radius: 999px;
  background: #eef2f7; border: 1px solid #dde3ea; font: 12.5px/1.6 ${MONO}; }
.tag { display: inline-block; margin-right: 6px; padding: 0 8px; border-radius: 999px;
  font-size: 12.5px; font-weight: 600; border: 1px solid #dde3ea; color: var(--muted); }
.tag.on { background: #e3f3ec; color: #05603a; border-color: #b4dfca; }
code { font: 13px ${MONO}; }
.bar { height: 8px; margin: 10px 0 4px; overflow: hidden; border-radius: 999px; background: #eef2f7; }
.bar span { display: block; height: 100%; min-width: 3px; background: var(--accent); }
.confusion-wrap { overflow-x: auto; }
table.confusion { margin: 4px auto 6px; border-collapse: separate; border-spacing: 2px; font-size: 13px;
  font-variant-numeric: tabular-nums; }
table.confusion th { padding: 4px 8px; font-weight: 600; color: var(--muted); white-space: nowrap; }
table.confusion thead th { text-align: center; vertical-align: bottom; }
table.confusion tbody th, table.confusion tfoot th { text-align: right; }
table.confusion th.corner { font-size: 11px; font-weight: 500; text-align: left; }
table.confusion td { min-width: 46px; padding: 6px 6px; text-align: center; border-radius: 4px; }
table.confusion td.cell.diag { font-weight: 700; }
table.confusion td.recall, table.confusion tfoot td { background: #f5f7fa; color: var(--ink); }
table.confusion tfoot td.total { font-weight: 700; }
table.confusion.rotate thead th span { display: inline-block; writing-mode: vertical-rl;
  transform: rotate(180deg); }
.foot { margin-top: 8px; font-size: 12.5px; color: var(--muted); }
@media (max-width: 720px) {
  .chart-full { display: none; }
  .chart-compact { display: block; }
}
@media (max-width: 640px) {
  .page { padding: 20px 14px 28px; }
  h1 { font-size: 23px; }
  .kpi .value { font-size: 22px; }
}
@media print {
  body { background: #ffffff; }
  .card, .kpi { box-shadow: none; break-inside: avoid; }
}
`;
