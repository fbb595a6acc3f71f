// The two engines against each other: files one writes the other reads, both open on one file at once, locks and
// their result codes, and which engine `auto` picks.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  type EngineName,
  MODULE_KINDS,
  MODULE_STATES,
  type ModuleRecord,
  RegistryError,
  StateRegistry,
} from "@oxide/registry";
import { REGISTRY_MIGRATIONS } from "../src/schema.ts";
import { openEngine } from "../src/sqlite/open.ts";
import { ENGINES, tempDir } from "./_helpers.ts";

/** Config values covering every JSON type and the text encodings that can go wrong between engines. */
const VALUES: Record<string, unknown> = {
  "null": null,
  "bool": true,
  "int": -42,
  "big safe int": Number.MAX_SAFE_INTEGER,
  "float": 0.1,
  "exponent": 1e21,
  "empty": "",
  "unicode": "Grüße, агент 🦕",
  "escapes": 'nul \u0000, quote ", backslash \\, line\nbreak, \u2028',
  "integers beyond 2^53": { u64Max: 18446744073709551615n, i64Min: -9223372036854775808n, list: [9007199254740993n] },
  "long": "x".repeat(100_000),
  "nested": { url: "https://example.com", retries: 3, tags: ["a", "ü", []], deep: { a: { b: [null, false] } } },
  "ключ 🦕": [1, "two", { three: 3 }],
};

/** Writes modules of every kind and state and every value in VALUES, then deletes one key. */
async function fill(reg: StateRegistry, tag: string): Promise<void> {
  for (const [i, kind] of MODULE_KINDS.entries()) {
    for (const [j, state] of MODULE_STATES.entries()) {
      await reg.upsertModule({
        id: `${tag}-${kind}-${state}`,
        name: `Module ${i}.${j} ü🦕`,
        version: `${i}.${j}.0`,
        kind,
        ...(j % 2 === 0 ? { description: `written by ${tag}` } : {}),
      }, state);
    }
  }
  await reg.setModuleState(`${tag}-native-loaded`, "running");
  for (const [key, value] of Object.entries(VALUES)) await reg.setConfig(`${tag}.${key}`, value);
  await reg.setConfig(`${tag}.deleted`, "gone");
  assert.equal(await reg.deleteConfig(`${tag}.deleted`), true);
}

/** Everything the API can read: every module, and every config key's value. */
async function snapshot(reg: StateRegistry): Promise<{ modules: ModuleRecord[]; config: Record<string, unknown> }> {
  const config: Record<string, unknown> = {};
  for (const { key } of reg.db.prepare("SELECT key FROM config ORDER BY key").all()) {
    config[key as string] = await reg.getConfig(key as string);
  }
  return { modules: await reg.listModules(), config };
}

function otherEngine(engine: EngineName): EngineName {
  return engine === "ffi" ? "node" : "ffi";
}

for (const writer of ENGINES) {
  const reader = otherEngine(writer);
  Deno.test(`a file the ${writer} engine wrote reads back identically with the ${reader} engine, and back`, async () => {
    await using dir = await tempDir();
    const path = dir.file("shared.db");
    let written;
    {
      await using reg = await StateRegistry.connect(path, { engine: writer });
      await fill(reg, writer);
      written = await snapshot(reg);
    }
    assert.equal(written.modules.length, MODULE_KINDS.length * MODULE_STATES.length);
    assert.deepEqual(written.config, Object.fromEntries(Object.entries(VALUES).map(([k, v]) => [`${writer}.${k}`, v])));

    let both;
    {
      await using reg = await StateRegistry.connect(path, { engine: reader });
      assert.equal(reg.engine, reader);
      assert.deepStrictEqual(await snapshot(reg), written, "timestamps included: the same stored text");
      await fill(reg, reader);
      both = await snapshot(reg);
    }
    await using reg = await StateRegistry.connect(path, { engine: writer });
    assert.deepStrictEqual(await snapshot(reg), both);
    assert.equal(both.modules.length, 2 * MODULE_KINDS.length * MODULE_STATES.length);
    assert.deepEqual(
      reg.db.prepare("SELECT owner, version FROM oxide_migrations WHERE owner = 'registry'").all(),
      REGISTRY_MIGRATIONS.map(({ version }) => ({ owner: "registry", version })),
      "migrations ran once, not again under the other engine",
    );
  });
}

/** Runs tests/_hold_lock.ts: another process that holds the write lock on `path` until `release()`. */
async function holdLock(path: string, engine: EngineName): Promise<{ release(): Promise<void> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-write",
      `--config=${new URL("../deno.json", import.meta.url).pathname}`,
      new URL("./_hold_lock.ts", import.meta.url).pathname,
      path,
      engine,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  while (!stdout.includes("locked\n")) {
    const { value, done } = await lines.read();
    if (done) {
      await child.stdin.close();
      await child.status;
      throw new Error(`the lock holder exited early: ${stdout}${await stderr}`);
    }
    stdout += value;
  }
  return {
    async release() {
      await child.stdin.close();
      while (!(await lines.read()).done) { /* drain */ }
      const status = await child.status;
      assert.equal(status.code, 0, await stderr);
    },
  };
}

for (const holder of ENGINES) {
  for (const waiter of ENGINES) {
    Deno.test(`the ${waiter} engine and another process on the ${holder} engine share a file: SQLITE_BUSY under its lock, then its commit`, async () => {
      await using dir = await tempDir();
      const path = dir.file("shared.db");
      await using reg = await StateRegistry.connect(path, { engine: waiter, busyTimeoutMs: 0 });
      await reg.setConfig("key", "before");
      const lock = await holdLock(path, holder);
      try {
        const error = await reg.setConfig("key", "after").catch((e) => e);
        assert.ok(error instanceof RegistryError, `expected a RegistryError, got ${String(error)}`);
        // The node engine infers the code from the message: node:sqlite does not report it.
        assert.equal(error.codeName, "SQLITE_BUSY");
        assert.equal(error.code, 5);
        assert.match(error.message, /database is locked/);
        assert.equal(error.path, path);
        assert.equal(await reg.getConfig("key"), "before", "reads go on under the lock (WAL)");
        assert.equal(await reg.tryGetConfig("holder"), undefined, "the other process has not committed yet");
      } finally {
        await lock.release();
      }
      assert.equal(await reg.getConfig("holder"), holder, "the other process's commit is visible");
      await reg.setConfig("key", "after");
      assert.equal(await reg.getConfig("key"), "after");
    });
  }
}

Deno.test("auto uses the ffi engine when --allow-ffi is granted and the library loads", async () => {
  await using reg = await StateRegistry.inMemory();
  assert.equal(reg.engine, "ffi");
  await using dir = await tempDir();
  await using file = await StateRegistry.connect(dir.file("auto.db"));
  assert.equal(file.engine, "ffi");
});

Deno.test({
  name: "without --allow-ffi, auto uses the node engine and ffi is refused naming the flag",
  permissions: { ffi: false, read: true, write: true },
  async fn() {
    await using dir = await tempDir();
    const path = dir.file("node.db");
    {
      await using reg = await StateRegistry.connect(path);
      assert.equal(reg.engine, "node");
      await reg.setConfig("written", "without ffi");
    }
    for (
      const open of [
        () => StateRegistry.connect(path, { engine: "ffi" }),
        () => StateRegistry.inMemory({ engine: "ffi" }),
      ]
    ) {
      await assert.rejects(open(), (error: unknown) => {
        assert.ok(error instanceof RegistryError);
        assert.match(error.message, /the "ffi" engine needs --allow-ffi/);
        assert.match(error.message, /engine: "node"/, "says what to do instead");
        return true;
      });
    }
    await using reg = await StateRegistry.connect(path, { engine: "node" });
    assert.equal(await reg.getConfig("written"), "without ffi", "the refused open changed nothing");
  },
});

Deno.test("the node engine runs the SQLite bundled in Deno, the ffi engine the system library", () => {
  const bundled = new DatabaseSync(":memory:");
  const version = bundled.prepare("SELECT sqlite_version() AS v").get()!.v;
  bundled.close();
  using node = openEngine(":memory:", { engine: "node" });
  assert.equal(node.sqliteVersion, version);
  using ffi = openEngine(":memory:", { engine: "ffi" });
  assert.match(ffi.sqliteVersion, /^3\.\d+\.\d+$/);
  assert.equal(ffi.prepare("SELECT sqlite_version() AS v").get()?.v, ffi.sqliteVersion);
});

Deno.test("node:sqlite cuts text at an embedded NUL, which is why the registry refuses such text", async () => {
  // If this starts failing, node:sqlite reads NUL back and the registry's NUL check can be relaxed for it.
  using node = openEngine(":memory:", { engine: "node" });
  const row = node.prepare("SELECT ? AS v, length(CAST(? AS BLOB)) AS bytes").get("a\0b", "a\0b");
  assert.equal(row?.bytes, 3, "stored whole");
  assert.equal(row?.v, "a", "read back cut");
  for (const engine of ENGINES) {
    await using reg = await StateRegistry.inMemory({ engine });
    await assert.rejects(reg.setConfig("a\0b", 1), /config key must not contain a NUL character/);
    await assert.rejects(
      reg.upsertModule({ id: "m", name: "a\0b", version: "1", kind: "native" }, "loaded"),
      /module name must not contain a NUL character/,
    );
    // In a value, JSON escapes NUL as \u0000, so it round-trips on both engines.
    await reg.setConfig("k", "a\0b");
    assert.equal(await reg.getConfig("k"), "a\0b");
  }
});
