/**
 * The third-party files of `../shared/realdata` (beside the repository; see its README.md) and how
 * the tests that read them are registered:
 * - folder present: they run;
 * - folder absent: they are registered as ignored and a loud warning says how many were skipped,
 *   unless FFWD_REQUIRE_REALDATA=1 (CI), which makes each of them fail, naming the folder;
 * - FFWD_SKIP_REALDATA=1: they are ignored on purpose, present or not.
 *
 * @module
 */

/** The realdata folder's URL (`file:`), with a trailing slash. */
export const REALDATA_URL: URL = new URL("../../shared/realdata/", import.meta.url);

/** The realdata folder's absolute path, with a trailing slash. */
export const REALDATA: string = REALDATA_URL.pathname;

/** Whether the realdata folder exists. */
export const realdataPresent: boolean = (() => {
  try {
    return Deno.statSync(REALDATA).isDirectory;
  } catch {
    return false;
  }
})();

const env = (name: string) => Deno.env.get(name) === "1";

let skipped = 0;
let warning = false;

/**
 * Whether the tests that read {@link REALDATA} are skipped: FFWD_SKIP_REALDATA=1, or the folder is
 * absent and FFWD_REQUIRE_REALDATA is not 1. Skipping because the folder is absent arranges a loud
 * warning on stderr, once (each test file runs in its own isolate: once per file).
 */
export function skipRealdata(): boolean {
  if (env("FFWD_SKIP_REALDATA")) return true;
  if (realdataPresent || env("FFWD_REQUIRE_REALDATA")) return false;
  if (!warning) {
    warning = true;
    globalThis.addEventListener("unload", () => {
      console.error(
        `\n!!! ${REALDATA} not found: ${skipped} real-data conformance test(s) here are SKIPPED ` +
          `(set FFWD_REQUIRE_REALDATA=1 to make them fail) !!!\n`,
      );
    });
  }
  return true;
}

/**
 * A test that reads {@link REALDATA}: a normal test when the folder is present, ignored when
 * {@link skipRealdata}, and failing with the folder named when it is absent but required.
 */
export function realdataTest(
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  if (skipRealdata()) {
    skipped++;
    Deno.test({ name, ignore: true, fn });
  } else if (!realdataPresent) {
    Deno.test(name, () => {
      throw new Error(`${REALDATA} not found, and FFWD_REQUIRE_REALDATA=1 requires it`);
    });
  } else {
    Deno.test(name, fn);
  }
}
