// What SQLite is handed as a file, on both engines: a plain absolute path (never a URI), resolved once for the
// permission check, the one-engine-per-file guard and the open; and no SQL that opens other files (ATTACH, VACUUM
// INTO), whatever the permissions.
import assert from "node:assert/strict";
import { RegistryError, StateRegistry } from "@oxide/registry";
import { ENGINES, engineTest, runDeno, tempDir } from "./_helpers.ts";

const MOD = import.meta.resolve("../mod.ts");

/** Runs `body` in a subprocess in `cwd` with exactly `flags`; it prints one JSON line per attempt. */
async function runProbe(cwd: string, flags: string[], body: string): Promise<unknown[]> {
  const script = `${cwd}/probe.ts`;
  await Deno.writeTextFile(
    script,
    `import { StateRegistry } from ${JSON.stringify(MOD)};
const report = (what: string, outcome: string) => console.log(JSON.stringify({ what, outcome }));
${body}`,
  );
  const { code, stdout, stderr } = await runDeno(["run", "--no-lock", ...flags, script], { cwd });
  assert.equal(code, 0, stderr);
  return stdout.trim().split("\n").map((line) => JSON.parse(line));
}

for (const engine of ENGINES) {
  Deno.test(`file: URIs and percent-encoding open nothing outside the granted folder [${engine}]`, async () => {
    await using dir = await tempDir();
    await Deno.mkdir(dir.file("data"));
    await Deno.mkdir(dir.file("outside"));
    const paths = [
      "file:x/../data/%2E%2E/%2E%2E/outside/r.db",
      "file:x/../data/%2E%2E/outside/r.db",
      "file:data/r.db?mode=rwc&vfs=unix",
      "file:./data/../outside/r.db",
      "data/../outside/r.db",
    ];
    const outcomes = await runProbe(
      dir.path,
      [`--allow-read=./data,${new URL(MOD).pathname.replace(/mod\.ts$/, "")}`, "--allow-write=./data", "--allow-ffi"],
      `for (const path of ${JSON.stringify(paths)}) {
  try {
    await using reg = await StateRegistry.connect(path, { engine: ${JSON.stringify(engine)} });
    await reg.setConfig("k", 1);
    report(path, "opened");
  } catch (error) {
    report(path, error.constructor.name);
  }
}`,
    );
    assert.deepEqual(outcomes, paths.map((path) => ({ what: path, outcome: "RegistryError" })));
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir.file("outside"))), [], "nothing created outside ./data");
  });
}

Deno.test("a percent-encoded name of an open file is not another file to the one-engine-per-file guard", async () => {
  await using dir = await tempDir();
  // Permission on the whole folder: only the path's meaning decides.
  const outcomes = await runProbe(
    dir.path,
    ["--allow-read", "--allow-write", "--allow-ffi"],
    `await using node = await StateRegistry.connect("g.db", { engine: "node" });
await node.setConfig("k", 1);
for (const path of ["file:g%2Edb", "file:./g.db", "./x/../g.db", ${JSON.stringify(`${dir.path}/g.db`)}]) {
  try {
    await using ffi = await StateRegistry.connect(path, { engine: "ffi" });
    report(path, "opened " + String(await ffi.tryGetConfig("k")));
  } catch (error) {
    report(path, error.message.includes("has it open with the node engine") ? "guarded" : "refused");
  }
}`,
  );
  assert.deepEqual(outcomes, [
    // Literal names (a file "g%2Edb" in a folder "file:"): nothing to open, and never the node engine's file.
    { what: "file:g%2Edb", outcome: "opened undefined" },
    { what: "file:./g.db", outcome: "refused" },
    { what: "./x/../g.db", outcome: "guarded" },
    { what: `${dir.path}/g.db`, outcome: "guarded" },
  ]);
});

engineTest("ATTACH, VACUUM INTO and VACUUM are refused through reg.db, with every permission", async (engine) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.connect(dir.file("r.db"), { engine });
  for (const sql of [`ATTACH '${dir.file("other.db")}' AS other`, `VACUUM INTO '${dir.file("copy.db")}'`, "VACUUM"]) {
    assert.throws(
      () => reg.db.exec(sql),
      (error: unknown) => error instanceof RegistryError && /too many attached databases - max 0/.test(error.message),
      sql,
    );
  }
  assert.deepEqual((await Array.fromAsync(Deno.readDir(dir.path))).map((e) => e.name).toSorted(), [
    "r.db",
    "r.db-shm",
    "r.db-wal",
  ]);
});

for (const engine of ENGINES) {
  Deno.test(`ATTACH is refused under --allow-all too, as under narrow permissions [${engine}]`, async () => {
    await using dir = await tempDir();
    for (const flags of [["--allow-all"], ["--allow-ffi", "--allow-read", "--allow-write=."]]) {
      const outcomes = await runProbe(
        dir.path,
        flags,
        `await using reg = await StateRegistry.connect("r.db", { engine: ${JSON.stringify(engine)} });
try { reg.db.exec("ATTACH 'other.db' AS other"); report("attach", "ran"); } catch (error) { report("attach", error.message); }`,
      );
      assert.deepEqual(outcomes, [{ what: "attach", outcome: "registry error: too many attached databases - max 0" }]);
    }
  });
}
