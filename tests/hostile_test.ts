// Hostile files and rows: files that are not registries, or that this process may not write, are refused at open
// with an error naming the path, and are left exactly as they were (no byte, no mtime, no -wal/-shm/-journal file);
// rows another program damaged fail their own reads, naming the row, and never make the registry unusable.
// Both engines, plain and sealed. Permission cases run in a subprocess as an unprivileged user: we run as root.
import assert from "node:assert/strict";
import { OtherError, RegistryError, SealedValueError, SerializationError, StateRegistry } from "@oxide/registry";
import { ENGINES, engineTest, rawSqlite, tempDir } from "./_helpers.ts";
import { variantNamed, VARIANTS } from "./_variants.ts";
import { unprivilegedRunner, Worker } from "./_subprocess.ts";

/** Every entry of a folder: name, mode, size, mtime and a SHA-256 of the content. */
async function folderState(folder: string): Promise<Record<string, string>> {
  const state: Record<string, string> = {};
  for await (const entry of Deno.readDir(folder)) {
    const path = `${folder}/${entry.name}`;
    const info = await Deno.lstat(path);
    const digest = entry.isFile
      ? new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(path))).toHex()
      : "-";
    state[entry.name] = `mode ${info.mode?.toString(8)} size ${info.size} mtime ${info.mtime?.getTime()} ${digest}`;
  }
  return state;
}

/** A registry with a few rows, closed (its WAL checkpointed away), as a program would leave it. */
async function writeRegistry(path: string): Promise<void> {
  await using reg = await StateRegistry.connect(path, { engine: "node" });
  for (let i = 0; i < 200; i++) await reg.setConfig(`key.${i}`, { i, body: "z".repeat(400) });
  await reg.upsertModule({ id: "echo", name: "Echo", version: "1", kind: "native" }, "running");
}

/** Opens `path` with every engine and variant, expecting each to fail naming the path, and the folder unchanged. */
async function assertRefused(
  path: string,
  folder: string,
  expected: { codeName?: string; message: RegExp },
): Promise<void> {
  for (const engine of ENGINES) {
    for (const variant of VARIANTS) {
      const before = await folderState(folder);
      const error = await variant.connect(path, { engine }).then(
        async (reg) => {
          await reg.close();
          return undefined;
        },
        (error) => error,
      );
      const where = `[${engine}, ${variant.name}]`;
      assert.ok(error instanceof RegistryError, `${where} refused with a RegistryError, got ${error}`);
      assert.ok(error.message.startsWith(`registry error: cannot open '${path}': `), `${where} ${error.message}`);
      assert.equal(error.path, path, where);
      assert.match(error.message, expected.message, where);
      if (expected.codeName !== undefined) assert.equal(error.codeName, expected.codeName, where);
      assert.deepEqual(await folderState(folder), before, `${where} left every file as it was`);
    }
  }
}

// --- files this process may write --------------------------------------------------------------------------------

Deno.test("a file that is not SQLite is refused at open, naming it, and left as it was", async () => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  await Deno.writeTextFile(path, "module: echo\nstate: running\n".repeat(200));
  await assertRefused(path, dir.path, { codeName: "SQLITE_NOTADB", message: /file is not a database/ });
});

Deno.test("a truncated registry (cut in half) is refused at open, naming it, and left as it was", async () => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  await writeRegistry(path);
  const bytes = await Deno.readFile(path);
  assert.ok(bytes.length > 16 * 4096, "large enough that half of it misses tables");
  await Deno.writeFile(path, bytes.subarray(0, bytes.length / 2));
  await assertRefused(path, dir.path, { codeName: "SQLITE_CORRUPT", message: /database disk image is malformed/ });
});

Deno.test("a database whose tables have the wrong shape is refused before anything is written to it", async (t) => {
  const cases: [string, string, RegExp][] = [
    [
      "config without its columns",
      "CREATE TABLE config (k TEXT, v TEXT)",
      /'config' table without the column\(s\) key, value, updated_at/,
    ],
    [
      "modules without updated_at",
      "CREATE TABLE modules (id TEXT PRIMARY KEY, name TEXT, version TEXT, kind TEXT, state TEXT, description TEXT)",
      /'modules' table without the column\(s\) updated_at/,
    ],
    ["modules as a view", "CREATE TABLE t (a); CREATE VIEW modules AS SELECT a AS id FROM t", /'modules' is a view/],
    ["config as an index", "CREATE TABLE t (a); CREATE INDEX config ON t (a)", /'config' is a index, not a table/],
    ["CONFIG in capitals without its columns", "CREATE TABLE CONFIG (k TEXT)", /'config' table without the column/],
    [
      "a change log without its columns",
      "CREATE TABLE oxide_changes (seq INTEGER PRIMARY KEY, revision INTEGER)",
      /'oxide_changes' table without the column\(s\) space, key, type, version, create_revision, value, updated_at/,
    ],
    [
      "a foreign oxide_migrations",
      "CREATE TABLE oxide_migrations (id INTEGER PRIMARY KEY, sql TEXT)",
      /'oxide_migrations' table without the column\(s\) owner, version, name, applied_at/,
    ],
  ];
  for (const [what, sql, message] of cases) {
    await t.step(what, async () => {
      await using dir = await tempDir();
      const path = dir.file("other.db");
      const raw = rawSqlite(path); // Rollback journal: switching it to WAL would rewrite its header.
      raw.exec(sql);
      raw.close();
      await assertRefused(path, dir.path, { message });
    });
  }
});

Deno.test("a folder where the file should be is refused at open, naming it", async () => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  await Deno.mkdir(path);
  await assertRefused(path, dir.path, { message: /unable to open database file/ });
});

// --- files this process may not write ------------------------------------------------------------------------------

/**
 * Runs `open_probe.ts` as an unprivileged user on each path with every engine and variant, and checks each attempt
 * was refused naming the path with `message`, and that `folder` is unchanged. Skips (with the reason) where no
 * unprivileged user can be had.
 */
async function assertRefusedUnprivileged(
  t: Deno.TestContext,
  setup: (dir: string, user: { uid: number; gid: number } | undefined) => Promise<{ path: string; folder: string }>,
  message: RegExp,
): Promise<void> {
  const runner = await unprivilegedRunner();
  if (typeof runner === "string") {
    await t.step({ name: `skipped: ${runner}`, ignore: true, fn: () => {} });
    return;
  }
  await using dir = await tempDir();
  await Deno.chmod(dir.path, 0o755); // Let the unprivileged user in.
  const denoDir = `${dir.path}/deno_dir`;
  await Deno.mkdir(denoDir);
  if (runner !== undefined) await Deno.chown(denoDir, runner.uid, runner.gid);
  const { path, folder } = await setup(dir.path, runner);
  const before = await folderState(folder);
  const attempts = ENGINES.flatMap((engine) => VARIANTS.map((variant) => ({ path, engine, variant: variant.name })));
  const worker = new Worker("open_probe.ts", [JSON.stringify(attempts)], {
    folders: [dir.path],
    runAs: runner === undefined ? undefined : { ...runner, denoDir },
  });
  const { status, lines, stderr } = await worker.finish();
  assert.equal(status.code, 0, stderr);
  assert.equal(lines.length, attempts.length, stderr);
  for (const [i, line] of lines.entries()) {
    const where = `[${attempts[i]!.engine}, ${attempts[i]!.variant}]`;
    const { error } = JSON.parse(line);
    assert.ok(error !== undefined, `${where} the open was refused`);
    assert.equal(error.name, "RegistryError", where);
    assert.equal(error.path, path, where);
    assert.ok(error.message.startsWith(`registry error: cannot open '${path}': `), `${where} ${error.message}`);
    assert.match(error.message, message, where);
  }
  assert.deepEqual(await folderState(folder), before, "every file left as it was");
}

Deno.test("a read-only registry file is refused at open, naming it, and no -wal/-shm file appears", async (t) => {
  await assertRefusedUnprivileged(t, async (root, user) => {
    const folder = `${root}/data`; // Writable by the user: only the file is protected.
    await Deno.mkdir(folder);
    if (user !== undefined) await Deno.chown(folder, user.uid, user.gid);
    const path = `${folder}/registry.db`;
    await writeRegistry(path);
    await Deno.chmod(path, 0o444);
    return { path, folder };
  }, /the file is read-only/);
});

Deno.test("a read-only file oxide-k made (rollback journal) is refused at open, naming it", async (t) => {
  await assertRefusedUnprivileged(t, async (root, user) => {
    const folder = `${root}/data`;
    await Deno.mkdir(folder);
    if (user !== undefined) await Deno.chown(folder, user.uid, user.gid);
    const path = `${folder}/oxide-k.db`;
    const raw = rawSqlite(path);
    raw.exec(`CREATE TABLE modules (id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL,
      kind TEXT NOT NULL, state TEXT NOT NULL, description TEXT, updated_at TEXT NOT NULL);
      CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);
      INSERT INTO config VALUES ('max_threads', '16', '2026-11-28T09:15:02+00:00')`);
    raw.close();
    await Deno.chmod(path, 0o444);
    return { path, folder };
  }, /the file is read-only/);
});

Deno.test("a registry in a folder without write permission is refused at open, naming it", async (t) => {
  await assertRefusedUnprivileged(t, async (root, user) => {
    const folder = `${root}/data`; // Owned by root, mode 755: the user cannot create the -wal and -shm files.
    await Deno.mkdir(folder);
    const path = `${folder}/registry.db`;
    await writeRegistry(path);
    if (user !== undefined) await Deno.chown(path, user.uid, user.gid); // The file itself is writable.
    await Deno.chmod(folder, 0o555);
    return { path, folder };
  }, /attempt to write a readonly database.*needs write access to the file and to its folder/);
});

Deno.test("a new registry in a folder without write permission is refused at open, naming it", async (t) => {
  await assertRefusedUnprivileged(t, async (root) => {
    const folder = `${root}/data`;
    await Deno.mkdir(folder);
    await Deno.chmod(folder, 0o555);
    return { path: `${folder}/registry.db`, folder };
  }, /unable to open database file.*may create files in it/);
});

// --- rows another program wrote ------------------------------------------------------------------------------------

/** Opens `path` with raw node:sqlite and runs `sql`, as another program would. */
function damage(path: string, sql: string): void {
  const raw = rawSqlite(path);
  raw.exec(sql);
  raw.close();
}

engineTest("listModules() names every bad row at once, and { invalid: 'skip' } returns the rest", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    for (const id of ["a-good", "b-kind", "c-time", "d-null-id", "e-good", "f-state"]) {
      await reg.upsertModule({ id, name: id, version: "1", kind: "native" }, "running");
    }
  }
  damage(
    path,
    `UPDATE modules SET kind = '"python"' WHERE id = 'b-kind';
     UPDATE modules SET updated_at = '2026-13-45T99:00:00+00:00' WHERE id = 'c-time';
     UPDATE modules SET id = NULL WHERE id = 'd-null-id';
     UPDATE modules SET state = '{"running":1}' WHERE id = 'f-state';`,
  );
  await using reg = await StateRegistry.connect(path, { engine });
  const error = await reg.listModules().catch((e) => e);
  assert.ok(error instanceof SerializationError);
  assert.match(error.message, /^serialization error: 4 module row\(s\) cannot be read/);
  for (const bad of [/module 'b-kind' has kind/, /invalid updated_at: module 'c-time'/, /id that is not text: null/]) {
    assert.match(error.message, bad);
  }
  assert.match(error.message, /module 'f-state' has state/);
  assert.deepEqual((await reg.listModules({ invalid: "skip" })).map((m) => m.id), ["a-good", "e-good"]);
  // Each bad row fails its own read; the good ones read, and the registry keeps writing.
  await assert.rejects(reg.getModule("b-kind"), SerializationError);
  await assert.rejects(reg.getModule("c-time"), OtherError);
  assert.equal((await reg.getModule("a-good"))?.state, "running");
  await reg.upsertModule({ id: "b-kind", name: "fixed", version: "2", kind: "wasm" }, "loaded");
  assert.equal((await reg.getModule("b-kind"))?.kind, "wasm", "rewriting a bad row repairs it");
});

engineTest("a module row whose id is NULL or a blob is a bad row, not a module called 'null'", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    await reg.upsertModule({ id: "m", name: "M", version: "1", kind: "native" }, "running");
  }
  damage(
    path,
    `INSERT INTO modules SELECT NULL, name, version, kind, state, description, updated_at FROM modules;
     INSERT INTO modules SELECT x'00', name, version, kind, state, description, updated_at FROM modules WHERE id = 'm'`,
  );
  await using reg = await StateRegistry.connect(path, { engine });
  const error = await reg.listModules().catch((e) => e);
  assert.ok(error instanceof SerializationError);
  assert.match(error.message, /2 module row\(s\)/);
  assert.match(error.message, /id that is not text: null/);
  assert.match(error.message, /id that is not text: a 1-byte blob/);
  assert.deepEqual((await reg.listModules({ invalid: "skip" })).map((m) => m.id), ["m"]);
  assert.equal(await reg.getModule("null"), undefined, "a NULL id is not the text 'null'");
});

for (const engine of ENGINES) {
  Deno.test(`a truncated or altered sealed value fails its own read, naming the key [${engine}, sealed]`, async () => {
    const variant = variantNamed("sealed");
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    {
      await using reg = await variant.connect(path, { engine });
      for (const key of ["good", "half", "short", "flipped"]) {
        await reg.setConfig(key, { key, secret: "s".repeat(100) });
      }
    }
    damage(
      path,
      `UPDATE config SET value = substr(value, 1, length(value) / 2) WHERE key = 'half';
     UPDATE config SET value = substr(value, 1, 12) WHERE key = 'short';
     UPDATE config SET value = substr(value, 1, length(value) - 6) ||
       CASE substr(value, -6, 1) WHEN 'A' THEN 'B' ELSE 'A' END || substr(value, -5) WHERE key = 'flipped';`,
    );
    await using reg = await variant.connect(path, { engine });
    for (const key of ["half", "short", "flipped"]) {
      const error = await reg.getConfig(key).catch((e) => e);
      assert.ok(error instanceof SealedValueError, `${key}: ${error}`);
      assert.equal(error.key, key);
      assert.ok(error.message.includes(`config key '${key}'`), error.message);
      assert.ok(["malformed", "tampered", "wrong_key_or_tampered"].includes(error.reason), `${key}: ${error.reason}`);
    }
    assert.deepEqual(await reg.getConfig("good"), { key: "good", secret: "s".repeat(100) });
    await reg.setConfig("half", "rewritten");
    assert.equal(await reg.getConfig("half"), "rewritten", "rewriting a damaged value repairs it");
  });
}
