// The suite passes wherever the project is cloned: here, from a copy of the checkout inside a folder only its owner
// may enter (as `mktemp -d` makes, or a home of mode 700), the tests that run workers as another user still pass.
import assert from "node:assert/strict";
import { runDeno, tempDir } from "./_helpers.ts";
import { unprivilegedRunner } from "./_subprocess.ts";

const CHECKOUT = new URL("../", import.meta.url).pathname;
/** What the copy needs to run the hostile-file tests: the package, the tests and their fixtures. */
const PARTS = ["deno.json", "mod.ts", "src", "tests"];

function copyTree(from: string, to: string): void {
  if (Deno.statSync(from).isDirectory) {
    Deno.mkdirSync(to, { recursive: true });
    for (const entry of Deno.readDirSync(from)) copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
  } else {
    Deno.copyFileSync(from, to);
  }
}

Deno.test("the tests that run workers as `nobody` pass from a checkout in a folder of mode 700", async (t) => {
  const runner = await unprivilegedRunner();
  if (runner === undefined || typeof runner === "string") {
    const reason = runner ?? "not running as root: workers run as this user, who can read the checkout";
    console.log(`skipped: ${reason}`);
    await t.step({ name: `skipped: ${reason}`, ignore: true, fn: () => {} });
    return;
  }
  await using dir = await tempDir();
  await Deno.chmod(dir.path, 0o700); // As mktemp -d and most homes: nobody may not enter.
  const clone = `${dir.path}/registry`;
  Deno.mkdirSync(clone);
  for (const part of PARTS) copyTree(`${CHECKOUT}${part}`, `${clone}/${part}`);
  const { code, stdout, stderr } = await runDeno(
    [
      "test",
      "--no-lock",
      "--allow-ffi",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-run",
      "tests/hostile_test.ts",
    ],
    { cwd: clone, env: { NO_COLOR: "1" } },
  );
  assert.equal(code, 0, `${stdout}\n${stderr}`);
  assert.match(stdout, /ok \| \d+ passed/);
  assert.doesNotMatch(stdout, /skipped/, "the unprivileged tests ran");
});
