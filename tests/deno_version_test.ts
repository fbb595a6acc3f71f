// The minimum Deno version: stated in deno.json and the README, checked when a registry opens, with a message that
// names the version needed; and checked for real on an older Deno fetched from npm, where npm can provide one.
import assert from "node:assert/strict";
import { RegistryError } from "@oxide/registry";
import { checkDenoVersion, MIN_DENO_VERSION } from "../src/_deno_version.ts";

const ROOT = new URL("../", import.meta.url);

Deno.test("checkDenoVersion() refuses a Deno older than the minimum, naming the version needed and the one running", async (t) => {
  for (const old of ["2.6.3", "2.5.7", "2.0.0", "1.46.3"]) {
    await t.step(old, () => {
      assert.throws(() => checkDenoVersion(old), (error: Error) => {
        assert.ok(error instanceof RegistryError);
        assert.equal(
          error.message,
          `registry error: @oxide/registry needs Deno ${MIN_DENO_VERSION} or newer, and this is Deno ${old} ` +
            "(older releases fail with unrelated errors): upgrade with `deno upgrade`",
        );
        return true;
      });
    });
  }
  for (const ok of [MIN_DENO_VERSION, "2.6.10", "2.10.0", "3.0.0", "2.9.6-rc.1", Deno.version.deno]) {
    await t.step(`${ok} is fine`, () => checkDenoVersion(ok));
  }
});

Deno.test("the minimum Deno version is the same in the code, deno.json (engines.deno) and the README", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  assert.equal(config.engines?.deno, `>=${MIN_DENO_VERSION}`);
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  assert.match(readme, new RegExp(`Deno ${RegExp.escape(MIN_DENO_VERSION)} or newer`));
});

/** The path of an older Deno from npm (cached by npx), or why there is none. */
async function olderDeno(version: string): Promise<string | { reason: string }> {
  try {
    const output = await new Deno.Command("npx", {
      args: ["--prefer-offline", "-y", `deno@${version}`, "eval", "console.log(Deno.execPath())"],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(240_000),
    }).output();
    const path = new TextDecoder().decode(output.stdout).trim();
    return output.success && path !== "" ? path : { reason: new TextDecoder().decode(output.stderr).slice(0, 200) };
  } catch (error) {
    return { reason: String(error) };
  }
}

Deno.test("opening a registry on a Deno older than the minimum fails with the message naming the version needed", async () => {
  const old = "2.6.3"; // The last release before the minimum: node:sqlite fails there with 'column index out of range'.
  const deno = await olderDeno(old);
  if (typeof deno !== "string") {
    console.log(`skipped: no Deno ${old} from npm (${deno.reason})`);
    return;
  }
  const script = `import { StateRegistry } from ${JSON.stringify(new URL("mod.ts", ROOT).href)};
    await StateRegistry.inMemory({ engine: "node" }).then(() => console.log("opened"), (e) => console.log(String(e)));`;
  const output = await new Deno.Command(deno, {
    args: ["eval", "--no-config", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assert.equal(
    stdout.trim(),
    `RegistryError: registry error: @oxide/registry needs Deno ${MIN_DENO_VERSION} or newer, and this is Deno ${old} ` +
      "(older releases fail with unrelated errors): upgrade with `deno upgrade`",
    new TextDecoder().decode(output.stderr),
  );
});
