// mod.ts is a library other projects import by path or file URL, from any folder, with no config
// flag: every module it reaches names its npm packages in full (npm:name@version), since a
// project's import map applies only inside that project.
import { strictEqual } from "node:assert/strict";
import { denoBinary } from "./_cli.ts";
import { withTempDir } from "./_assert.ts";

const MOD = new URL("../mod.ts", import.meta.url).href;
const MODEL = new URL("../fixtures/mnist/base.onnx", import.meta.url).pathname;

Deno.test("a script in another folder imports mod.ts by file URL and runs it with the README's permissions", async () => {
  await withTempDir(async (dir) => {
    const script = `${dir}/use.ts`;
    await Deno.writeTextFile(
      script,
      `import { openModel, defaultPeftConfig } from ${JSON.stringify(MOD)};\n` +
        `const m = await openModel(${JSON.stringify(MODEL)});\n` +
        `console.log(JSON.stringify({ layers: m.layers.map((l) => l.name), r: defaultPeftConfig().r }));\n` +
        `m.close();\n`,
    );
    const out = await new Deno.Command(denoBinary(), {
      args: ["run", "--allow-read", "--allow-env", "--allow-ffi", "--allow-sys", script],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    strictEqual(out.code, 0, stderr);
    strictEqual(
      new TextDecoder().decode(out.stdout).trim(),
      JSON.stringify({ layers: ["fc1", "fc2", "fc3"], r: 8 }),
    );
  });
});
