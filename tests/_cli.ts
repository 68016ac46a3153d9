/**
 * Runs `ffwd` as a subprocess, the way a user runs it: `deno run` with the permissions of the
 * `ffwd` task in deno.json, from the repository's root, with `NO_COLOR=1`.
 *
 * The test task may only run `deno` (`--allow-run=deno`). Under `npx deno`, that name resolves
 * through `node_modules/.bin` to another path than `Deno.execPath()`, which the permission then
 * does not cover; so the binary's own path is used only when it is allowed, else `deno` from PATH.
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);
const MAIN = new URL("cli/main.ts", ROOT).pathname;

/** What a run of the CLI gave. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The `deno` binary the tests may run (see the module documentation). */
export function denoBinary(): string {
  const exec = Deno.execPath();
  const granted = (command: string) =>
    Deno.permissions.querySync({ name: "run", command }).state === "granted";
  if (granted(exec)) return exec;
  if (granted("deno")) return "deno";
  throw new Error(
    `Cannot run the CLI: --allow-run covers neither Deno.execPath() (${exec}) nor a \`deno\` ` +
      "on PATH; run the tests with `deno task test` (or `npx deno task test`) with deno on PATH",
  );
}

/** The permissions of the `ffwd` task in deno.json. */
function taskFlags(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  const task: string = config.tasks.ffwd;
  return task.split(/\s+/).filter((word) => word.startsWith("--allow-"));
}

/**
 * Runs `ffwd ...args` and returns its exit code and output.
 *
 * @example
 * ```ts ignore
 * const { code, stdout } = await ffwd("--version");
 * ```
 */
export async function ffwd(...args: string[]): Promise<CliRun> {
  const out = await command(args).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/**
 * Starts `ffwd ...args` and returns the running process, stdout and stderr piped, for tests that
 * act on it while it runs (send it a signal).
 *
 * @example
 * ```ts ignore
 * const child = spawnFfwd("train", "--config", "train.json");
 * child.kill("SIGINT");
 * const { code } = await child.output();
 * ```
 */
export function spawnFfwd(...args: string[]): Deno.ChildProcess {
  return command(args).spawn();
}

function command(args: readonly string[]): Deno.Command {
  return new Deno.Command(denoBinary(), {
    args: ["run", ...taskFlags(), MAIN, ...args],
    cwd: ROOT.pathname,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}
