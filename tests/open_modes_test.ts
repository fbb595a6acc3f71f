// Open modes: readonly (nothing written, the file untouched), create: false (a mistyped path is an error), no silent
// takeover of another application's database (adopt: true to take it), and failed opens that leave nothing behind:
// the constraints the registry relies on are checked before anything is written, and every failed open closes its
// connection and releases the file.
import assert from "node:assert/strict";
import { RegistryError, StateRegistry } from "@oxide/registry";
import { ENGINES, engineTest, rawSqlite, runDeno, tempDir } from "./_helpers.ts";
import { variantTest } from "./_variants.ts";

/** A file's size, mtime and SHA-256, or "missing". */
async function fileState(path: string): Promise<string> {
  try {
    const info = await Deno.stat(path);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(path))).toHex();
    return `size ${info.size} mtime ${info.mtime?.getTime()} ${digest}`;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    throw error;
  }
}

/** Every name in a folder. */
async function names(folder: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(folder)) found.push(entry.name);
  return found.sort();
}

/** Expects `open` to fail with a RegistryError that starts `cannot open '<path>': ` and matches `message`. */
async function assertOpenRefused(open: Promise<StateRegistry>, path: string, message: RegExp): Promise<RegistryError> {
  const error = await open.then(async (reg) => {
    await reg.close();
    return undefined;
  }, (e) => e);
  assert.ok(error instanceof RegistryError, `refused with a RegistryError, got ${error}`);
  assert.ok(error.message.startsWith(`registry error: cannot open '${path}': `), error.message);
  assert.equal(error.path, path);
  assert.match(error.message, message);
  return error;
}

// --- readonly ----------------------------------------------------------------------------------------------------

variantTest(
  "readonly: reads work, every write is refused, and the file keeps its bytes and mtime",
  async (engine, variant) => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    {
      await using reg = await variant.connect(path, { engine });
      await reg.upsertModule({ id: "echo", name: "Echo", version: "1", kind: "native" }, "running");
      await reg.setConfig("kernel.greeting", "Hello, agent.");
    }
    const before = await fileState(path);
    {
      await using reg = await variant.connect(path, { engine, readonly: true });
      assert.equal(await reg.getConfig("kernel.greeting"), "Hello, agent.");
      assert.equal((await reg.getModule("echo"))?.state, "running");
      assert.equal((await reg.listModules()).length, 1);
      const writes: [string, () => Promise<unknown>][] = [
        ["setConfig", () => reg.setConfig("kernel.greeting", "changed")],
        ["deleteConfig", () => reg.deleteConfig("kernel.greeting")],
        ["upsertModule", () => reg.upsertModule({ id: "new", name: "N", version: "1", kind: "wasm" }, "loaded")],
        ["setModuleState", () => reg.setModuleState("echo", "stopped")],
        ["reg.db.exec", () => Promise.resolve().then(() => reg.db.exec("CREATE TABLE acme_x (a)"))],
      ];
      for (const [what, write] of writes) {
        await assert.rejects(write(), (error: Error) => {
          assert.ok(error instanceof RegistryError, `${what}: ${error}`);
          assert.equal(error.codeName, "SQLITE_READONLY", what);
          return true;
        });
      }
      assert.equal(await reg.getConfig("kernel.greeting"), "Hello, agent.");
    }
    assert.equal(await fileState(path), before, "the database file was not written");
    // SQLite keeps a WAL reader's shared-memory index beside the file; the WAL itself stays empty.
    assert.equal(await fileState(`${path}-wal`).then((s) => s === "missing" || s.startsWith("size 0 ")), true);
  },
);

engineTest("readonly: an oxide-k file (no oxide_migrations) is read without being migrated", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("oxide-k.db");
  const raw = rawSqlite(path);
  raw.exec(`CREATE TABLE modules (id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL,
    state TEXT NOT NULL, description TEXT, updated_at TEXT NOT NULL);
    CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);
    INSERT INTO config VALUES ('max_threads', '8', '2026-11-28T09:15:02+00:00');`);
  raw.close();
  const before = await fileState(path);
  {
    await using reg = await StateRegistry.connect(path, { engine, readonly: true });
    assert.equal(await reg.getConfig("max_threads"), 8);
  }
  assert.equal(await fileState(path), before);
  const check = rawSqlite(path);
  const tables = check.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all();
  check.close();
  assert.deepEqual(tables.map((t) => t.name), ["config", "modules"]);
});

engineTest("readonly and create: false never create a file: a mistyped path is an error", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registy.db"); // sic
  await assertOpenRefused(StateRegistry.connect(path, { engine, readonly: true }), path, /no such file \(a readonly/);
  await assertOpenRefused(StateRegistry.connect(path, { engine, create: false }), path, /no such file \(create: false/);
  await assertOpenRefused(
    StateRegistry.openEncrypted(path, new Uint8Array(32), { engine, create: false }),
    path,
    /no such file/,
  );
  assert.deepEqual(await names(dir.path), []);
});

engineTest(
  "create: false opens an existing registry, and refuses an empty database without writing it",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    {
      await using reg = await StateRegistry.connect(path, { engine });
      await reg.setConfig("a", 1);
    }
    {
      await using reg = await StateRegistry.connect(path, { engine, create: false });
      assert.equal(await reg.getConfig("a"), 1);
    }
    const empty = dir.file("empty.db");
    await Deno.writeFile(empty, new Uint8Array());
    const before = await fileState(empty);
    for (const options of [{ create: false }, { readonly: true }]) {
      await assertOpenRefused(
        StateRegistry.connect(empty, { engine, ...options }),
        empty,
        /empty database, not a registry/,
      );
    }
    assert.equal(await fileState(empty), before);
    assert.deepEqual(await names(dir.path), ["empty.db", "registry.db"]);
  },
);

Deno.test("open options of the wrong type are a TypeError, before any file is touched", async () => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  for (const options of [{ readonly: "yes" }, { create: 0 }, { adopt: "true" }]) {
    await assert.rejects(StateRegistry.connect(path, options as never), TypeError);
  }
  await assert.rejects(StateRegistry.inMemory({ readonly: true }), TypeError);
  assert.deepEqual(await names(dir.path), []);
});

// --- no silent takeover ------------------------------------------------------------------------------------------

variantTest(
  "another application's database is refused, unchanged, unless the caller adopts it",
  async (engine, variant) => {
    await using dir = await tempDir();
    const path = dir.file("app.db");
    const raw = rawSqlite(path);
    raw.exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE orders (id INTEGER, user_id INTEGER);
    CREATE TABLE sessions (token TEXT); INSERT INTO users (name) VALUES ('ada')`);
    raw.close();
    const before = await fileState(path);
    await assertOpenRefused(
      variant.connect(path, { engine }),
      path,
      /holds 3 table\(s\) of another application \('orders', 'sessions', 'users'\) and none of the registry's: .*adopt: true/,
    );
    await assertOpenRefused(variant.connect(path, { engine, readonly: true, adopt: true }), path, /not a registry/);
    assert.equal(await fileState(path), before, "no byte, no mtime changed");
    assert.deepEqual(await names(dir.path), ["app.db"], "no -wal, -shm or -journal file");
    {
      await using reg = await variant.connect(path, { engine, adopt: true });
      await reg.setConfig("owner", "kernel");
      assert.equal(await reg.getConfig("owner"), "kernel");
      assert.equal(reg.db.prepare("SELECT name FROM users").get()?.name, "ada");
    }
    // Adopted once, it is a registry: no option needed any more.
    await using again = await variant.connect(path, { engine });
    assert.equal(await again.getConfig("owner"), "kernel");
  },
);

// --- constraints, checked before anything is written (issue 13, item 9) -----------------------------------------

/** Files whose registry tables have the right columns but lack a key the registry's writes rely on. */
const KEYLESS: Record<string, string> = {
  "modules without a primary key": `CREATE TABLE modules (id TEXT, name TEXT NOT NULL, version TEXT NOT NULL,
    kind TEXT NOT NULL, state TEXT NOT NULL, description TEXT, updated_at TEXT NOT NULL);
    CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)`,
  "config without a primary key": `CREATE TABLE modules (id TEXT PRIMARY KEY, name TEXT NOT NULL,
    version TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, description TEXT, updated_at TEXT NOT NULL);
    CREATE TABLE config (key TEXT, value TEXT NOT NULL, updated_at TEXT NOT NULL)`,
  "config keyed on (key, value)": `CREATE TABLE modules (id TEXT PRIMARY KEY, name TEXT NOT NULL,
    version TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, description TEXT, updated_at TEXT NOT NULL);
    CREATE TABLE config (key TEXT, value TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (key, value))`,
  "config with only a partial unique index": `CREATE TABLE modules (id TEXT PRIMARY KEY, name TEXT NOT NULL,
    version TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, description TEXT, updated_at TEXT NOT NULL);
    CREATE TABLE config (key TEXT, value TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE UNIQUE INDEX config_key ON config (key) WHERE key <> ''`,
  "oxide_migrations without its key": `CREATE TABLE modules (id TEXT PRIMARY KEY, name TEXT NOT NULL,
    version TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, description TEXT, updated_at TEXT NOT NULL);
    CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE oxide_migrations (owner TEXT, version INTEGER, name TEXT, applied_at TEXT)`,
};

engineTest(
  "registry tables without the keys the registry relies on are refused before anything is written",
  async (engine, t) => {
    for (const [what, sql] of Object.entries(KEYLESS)) {
      await t.step(what, async () => {
        await using dir = await tempDir();
        const path = dir.file("registry.db");
        const raw = rawSqlite(path);
        raw.exec(sql);
        raw.close();
        const before = await fileState(path);
        await assertOpenRefused(StateRegistry.connect(path, { engine }), path, /has no primary key or unique index on/);
        assert.equal(await fileState(path), before, "no WAL switch, no oxide_migrations");
        assert.deepEqual(await names(dir.path), ["registry.db"]);
      });
    }
    await t.step("a unique index in place of the primary key is enough", async () => {
      await using dir = await tempDir();
      const path = dir.file("registry.db");
      const raw = rawSqlite(path);
      raw.exec(KEYLESS["config without a primary key"]! + "; CREATE UNIQUE INDEX config_key ON config (key)");
      raw.close();
      await using reg = await StateRegistry.connect(path, { engine });
      await reg.setConfig("a", 1);
      await reg.setConfig("a", 2);
      assert.equal(await reg.getConfig("a"), 2);
    });
  },
);

Deno.test({
  name: "200 failed opens of each kind leave no file descriptor open and the file claimed by no engine",
  ignore: Deno.build.os !== "linux",
  fn: async (t) => {
    await using dir = await tempDir();
    const keyless = dir.file("keyless.db");
    const foreign = dir.file("foreign.db");
    const raw = rawSqlite(keyless);
    raw.exec(KEYLESS["modules without a primary key"]!);
    raw.close();
    const raw2 = rawSqlite(foreign);
    raw2.exec("CREATE TABLE users (id INTEGER PRIMARY KEY)");
    raw2.close();
    const cases: [string, string, RegExp][] = [
      ["registry tables without their keys", keyless, /no primary key/],
      ["another application's database", foreign, /another application/],
    ];
    const fixture = new URL("./fixtures/failed_opens.ts", import.meta.url).pathname;
    for (const [what, path, message] of cases) {
      for (const engine of ENGINES) {
        await t.step(`${what} [${engine}]`, async () => {
          // In a process of its own: /proc/self/fd needs --allow-all, and other tests' files must not be counted.
          const run = await runDeno(["run", "-A", fixture, path, engine, "200"]);
          assert.equal(run.code, 0, run.stderr);
          const result = JSON.parse(run.stdout);
          assert.ok(
            result.message.startsWith(`RegistryError: registry error: cannot open '${path}': `),
            result.message,
          );
          assert.match(result.message, message);
          assert.equal(result.gained, 0, "every failed open closed its connection");
          assert.equal(result.owner, null, "the file is claimed by no engine");
        });
      }
      // In this process too: not claimed, so the other engine gets the same refusal, not "... has it open with ...".
      await assertOpenRefused(StateRegistry.connect(path, { engine: "node" }), path, message);
      await assertOpenRefused(StateRegistry.connect(path, { engine: "ffi" }), path, message);
    }
  },
});

Deno.test("readonly, create: false and adopt are refused for an etcd address rather than ignored", async () => {
  const address = "etcd://127.0.0.1:9/oxide-test"; // Nothing is contacted: the refusal comes first.
  for (
    const [options, named] of [[{ readonly: true }, "readonly: true"], [{ create: false }, "create: false"], [{
      adopt: true,
    }, "adopt: true"]] as const
  ) {
    await assertOpenRefused(
      StateRegistry.connect(address, options),
      address,
      new RegExp(`${named} apply to SQLite files only; fleet mode \\(etcd\\) does not support them yet`),
    );
  }
});

Deno.test("readonly with only --allow-read: SQLite adds an empty -wal and a -shm beside a WAL file, the file keeps every byte, a writer's close removes them", async () => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine: "node" });
    await reg.setConfig("a", 1);
  }
  assert.deepEqual(await names(dir.path), ["registry.db"], "a clean close leaves the file alone");
  const before = await fileState(path);
  const script = dir.file("read.ts");
  await Deno.writeTextFile(
    script,
    `import { StateRegistry } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
await using reg = await StateRegistry.connect(${JSON.stringify(path)}, { readonly: true });
console.log(JSON.stringify({ engine: reg.engine, a: await reg.getConfig("a") }));`,
  );
  const run = await runDeno(["run", "--no-prompt", `--allow-read=${dir.path}`, script]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), { engine: "node", a: 1 });
  assert.equal(await fileState(path), before, "the registry file keeps its bytes and mtime");
  // SQLite reads a WAL file only through its WAL index (-shm), which it creates, outside Deno's permission checks, and
  // a read-only connection may not remove: documented in docs/api.md (readonly). The WAL is empty.
  assert.deepEqual(await names(dir.path), ["read.ts", "registry.db", "registry.db-shm", "registry.db-wal"]);
  assert.equal((await Deno.stat(`${path}-wal`)).size, 0);
  {
    await using reg = await StateRegistry.connect(path, { engine: "node" });
    assert.equal(await reg.getConfig("a"), 1);
  }
  assert.deepEqual(await names(dir.path), ["read.ts", "registry.db"], "the next writer's close removes both");
});
