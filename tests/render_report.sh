#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium and saves a screenshot, to look at the report
# in a real browser (not run by CI). It also loads the page as XHTML, so Chromium's XML parser
# confirms the page is well-formed, and checks that the page references nothing outside itself.
#
# Needs Debian's chromium:  apt-get update && apt-get install -y chromium
#
# Usage, from anywhere:  tests/render_report.sh [run-dir] [screenshot.png] [height]
#   run-dir     default fixtures/report_run (copied to a temporary folder, so it stays clean;
#               regenerate it with fixtures/report_run/make_fixture.ts)
#   screenshot  default /tmp/report.png (and <name>_narrow.png, 400 px wide)
#   height      window height in px, default 1800 (use ~3400 to see the whole sample page)
set -euo pipefail
run=$(cd "${1:-$(dirname "$0")/../fixtures/report_run}" && pwd)
png=$(realpath -m "${2:-/tmp/report.png}")
cd "$(dirname "$0")/.."
height=${3:-1800}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
name=$(basename "$run")
cp -r "$run" "$work/$name"

# write report.html with the library (the same call `ffwd train` and `ffwd report` make)
npx -y deno@2.9.6 run --allow-read --allow-write - <<EOF
import { writeReport } from "$PWD/report/html.ts";
console.log(await writeReport("$work/$name"));
EOF

chrome() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d -p "$work")" "$@" 2>>"$work/chromium.log"
}

# the screenshot (1280 px wide: the page's 1240 px layout plus margins), and a phone-sized one
chrome --screenshot="$png" --window-size="1280,$height" "file://$work/$name/report.html"
chrome --screenshot="${png%.png}_narrow.png" --window-size="400,$height" "file://$work/$name/report.html"
echo "screenshots: $png ${png%.png}_narrow.png"

# well-formed XML: an XHTML copy parses without a <parsererror>
cp "$work/$name/report.html" "$work/$name/report.xhtml"
dom=$(chrome --dump-dom "file://$work/$name/report.xhtml")
if grep -q "parsererror" <<<"$dom"; then
  echo "error: report.html is not well-formed XML:" >&2
  grep -o "<parsererror.*</parsererror>" <<<"$dom" | head -c 2000 >&2
  exit 1
fi
echo "xhtml: well-formed"

# no network: the page references nothing outside itself
if grep -Eo "(src|href)=\"[^\"]*\"|url\(|@import|https?://[^\"]*" "$work/$name/report.html" |
  grep -v "^http://www.w3.org/2000/svg$"; then
  echo "error: report.html references something outside itself (above)" >&2
  exit 1
fi
echo "network: no external references"
