// Entries, compare-and-set, deleteModule, listing and atomic batches, on both engines, plain and sealed.
import assert from "node:assert/strict";
import {
  ConflictError,
  KeyRequiredError,
  type ModuleMetadata,
  RegistryError,
  SerializationError,
  StateRegistry,
  UnknownModuleError,
} from "@oxide/registry";
import { envelopeKeyId } from "../src/sealing/envelope.ts";
import { engineTest, tempDir } from "./_helpers.ts";
import { SEALED_TEST_KEY, variantTest } from "./_variants.ts";

const ECHO: ModuleMetadata = { id: "echo", name: "Echo", version: "0.1.0", kind: "native" };

/** The registry's whole state, raw: what a failed write must leave exactly as it was. */
function snapshot(reg: StateRegistry): unknown {
  return {
    config: reg.db.prepare("SELECT * FROM config ORDER BY key").all(),
    modules: reg.db.prepare("SELECT * FROM modules ORDER BY id").all(),
    log: reg.db.prepare("SELECT * FROM oxide_changes ORDER BY seq").all(),
  };
}

variantTest("entries carry version, createRevision, modRevision and updatedAt", async (engine, variant) => {
  await using reg = await variant.inMemory({ engine });
  await reg.setConfig("a", 1); // revision 1
  await reg.upsertModule(ECHO, "loaded"); // 2
  await reg.setConfig("a", 2); // 3
  await reg.setModuleState("echo", "running"); // 4
  const a = await reg.getConfigEntry<number>("a");
  assert.deepEqual({ ...a, updatedAt: undefined }, {
    key: "a",
    value: 2,
    version: 2,
    createRevision: 1,
    modRevision: 3,
    updatedAt: undefined,
  });
  assert.ok(a!.updatedAt instanceof Date && !Number.isNaN(a!.updatedAt.getTime()));
  const echo = await reg.getModule("echo");
  assert.deepEqual([echo?.recordVersion, echo?.createRevision, echo?.modRevision], [2, 2, 4]);
  // A delete ends the life; the next write starts again at version 1.
  assert.equal(await reg.deleteConfig("a"), true);
  await reg.setConfig("a", 3);
  assert.deepEqual(
    [(await reg.getConfigEntry("a"))?.version, (await reg.getConfigEntry("a"))?.createRevision],
    [1, 6],
  );
});

variantTest(
  "every write refuses a version mismatch with a ConflictError and writes nothing",
  async (engine, variant) => {
    await using reg = await variant.inMemory({ engine });
    await reg.setConfig("k", "v1");
    await reg.upsertModule(ECHO, "loaded");
    const before = snapshot(reg);
    const cases: [string, () => Promise<unknown>, string, number, number][] = [
      ["setConfig, stale", () => reg.setConfig("k", "v2", { ifVersion: 2 }), "k", 2, 1],
      ["setConfig, must not exist", () => reg.setConfig("k", "v2", { ifVersion: 0 }), "k", 0, 1],
      ["setConfig, missing key", () => reg.setConfig("nope", "v", { ifVersion: 1 }), "nope", 1, 0],
      ["deleteConfig, stale", () => reg.deleteConfig("k", { ifVersion: 3 }), "k", 3, 1],
      ["upsertModule, must not exist", () => reg.upsertModule(ECHO, "running", { ifVersion: 0 }), "echo", 0, 1],
      ["setModuleState, stale", () => reg.setModuleState("echo", "running", { ifVersion: 5 }), "echo", 5, 1],
      ["deleteModule, stale", () => reg.deleteModule("echo", { ifVersion: 2 }), "echo", 2, 1],
    ];
    for (const [name, write, key, expected, actual] of cases) {
      const error = await write().then(() => assert.fail(`${name}: no error`), (e) => e);
      assert.ok(error instanceof ConflictError, `${name}: ${error}`);
      assert.equal(error.kind, "conflict");
      assert.deepEqual([error.key, error.expected, error.actual], [key, expected, actual], name);
      assert.match(error.message, /nothing was written$/);
    }
    assert.deepEqual(snapshot(reg), before, "nothing was written");

    // The matching versions write.
    await reg.setConfig("k", "v2", { ifVersion: 1 });
    await reg.setConfig("new", 1, { ifVersion: 0 });
    await reg.setModuleState("echo", "running", { ifVersion: 1 });
    await reg.upsertModule(ECHO, "stopped", { ifVersion: 2 });
    assert.equal(await reg.deleteModule("echo", { ifVersion: 3 }), true);
    assert.equal(await reg.deleteConfig("k", { ifVersion: 2 }), true);
    assert.deepEqual((await reg.listConfig()).map((e) => [e.key, e.value]), [["new", 1]]);
    // Bad options are argument misuse.
    await assert.rejects(reg.setConfig("k", 1, { ifVersion: -1 }), TypeError);
    await assert.rejects(reg.deleteConfig("k", { ifVersion: 1.5 }), TypeError);
  },
);

variantTest("deleteModule() removes a module and says whether it did", async (engine, variant) => {
  await using reg = await variant.inMemory({ engine });
  await reg.upsertModule(ECHO, "running");
  await reg.upsertModule({ ...ECHO, id: "other" }, "running");
  assert.equal(await reg.deleteModule("echo"), true);
  assert.equal(await reg.deleteModule("echo"), false);
  assert.equal(await reg.getModule("echo"), undefined);
  assert.deepEqual((await reg.listModules()).map((m) => m.id), ["other"]);
  await assert.rejects(reg.setModuleState("echo", "stopped"), UnknownModuleError);
  await assert.rejects(reg.deleteModule(42 as unknown as string), TypeError);
});

variantTest(
  "listConfig() pages by prefix, limit and cursor at one revision, in either order",
  async (engine, variant) => {
    await using reg = await variant.inMemory({ engine });
    const keys = ["app.a", "app.b", "app.c", "app.d", "apq", "b", "app"];
    for (const key of keys) await reg.setConfig(key, key.toUpperCase());
    const all = await reg.listConfig();
    assert.deepEqual(all.map((e) => e.key), [...keys].sort());
    assert.equal(all.cursor, undefined);

    const first = await reg.listConfig({ prefix: "app.", limit: 2 });
    assert.deepEqual(first.map((e) => [e.key, e.value]), [["app.a", "APP.A"], ["app.b", "APP.B"]]);
    assert.notEqual(first.cursor, undefined);
    // Changes after the first page do not show in the next ones: every page is read at the first page's revision.
    await reg.setConfig("app.c", "changed");
    await reg.deleteConfig("app.d");
    await reg.setConfig("app.bb", "new");
    const second = await reg.listConfig({ prefix: "app.", limit: 2, cursor: first.cursor });
    assert.deepEqual(second.map((e) => [e.key, e.value]), [["app.c", "APP.C"], ["app.d", "APP.D"]]);
    assert.equal(second.revision, first.revision);
    assert.equal(second.cursor, undefined);
    // A new listing sees the changes.
    assert.deepEqual((await reg.listConfig({ prefix: "app." })).map((e) => [e.key, e.value]), [
      ["app.a", "APP.A"],
      ["app.b", "APP.B"],
      ["app.bb", "new"],
      ["app.c", "changed"],
    ]);
    const reversed = await reg.listConfig({ reverse: true, limit: 3 });
    assert.deepEqual(reversed.map((e) => e.key), ["b", "apq", "app.c"]);
    const rest = await reg.listConfig({ reverse: true, limit: 3, cursor: reversed.cursor });
    assert.deepEqual(rest.map((e) => e.key), ["app.bb", "app.b", "app.a"]);
    // Bad options.
    await assert.rejects(reg.listConfig({ limit: 0 }), TypeError);
    await assert.rejects(reg.listConfig({ cursor: "not a cursor" }), RegistryError);
    await assert.rejects(reg.listConfig({ reverse: "yes" as unknown as boolean }), TypeError);
  },
);

variantTest("listModules() keeps its no-argument form and pages by prefix", async (engine, variant) => {
  await using reg = await variant.inMemory({ engine });
  for (const id of ["net.b", "net.a", "fs", "net.c"]) await reg.upsertModule({ ...ECHO, id }, "loaded");
  const every = await reg.listModules();
  assert.ok(Array.isArray(every));
  assert.deepEqual(every.map((m) => m.id), ["fs", "net.a", "net.b", "net.c"]);
  const page = await reg.listModules({ prefix: "net.", limit: 2 });
  assert.deepEqual(page.map((m) => m.id), ["net.a", "net.b"]);
  await reg.deleteModule("net.c");
  const next = await reg.listModules({ prefix: "net.", limit: 2, cursor: page.cursor });
  assert.deepEqual(next.map((m) => [m.id, m.state]), [["net.c", "loaded"]], "read at the first page's revision");
  assert.equal(next.cursor, undefined);
});

variantTest("a batch is one revision, all or nothing; a failed check changes nothing", async (engine, variant) => {
  await using reg = await variant.inMemory({ engine });
  await reg.setConfig("a", 1);
  await reg.upsertModule(ECHO, "loaded");
  const a = await reg.getConfigEntry("a");
  const { revision } = await reg.batch()
    .check("a", a!.version)
    .checkModule("echo", 1)
    .setConfig("a", 2)
    .setConfig("b", { nested: [1, 2] })
    .upsertModule({ ...ECHO, id: "mirror" }, "starting")
    .setModuleState("echo", "running")
    .commit();
  assert.equal(revision, 3);
  for (const key of ["a", "b"]) assert.equal((await reg.getConfigEntry(key))?.modRevision, 3);
  assert.equal((await reg.getModule("mirror"))?.modRevision, 3);
  assert.equal((await reg.getModule("echo"))?.state, "running");

  const before = snapshot(reg);
  const failing: [string, () => Promise<unknown>, new (...args: never[]) => Error][] = [
    ["stale check", () => reg.batch().check("a", 1).setConfig("c", 1).deleteConfig("a").commit(), ConflictError],
    ["must not exist", () => reg.batch().setConfig("d", 1).setConfig("b", 0, { ifVersion: 0 }).commit(), ConflictError],
    ["stale module", () => reg.batch().setConfig("e", 1).checkModule("echo", 1).commit(), ConflictError],
    [
      "unknown module",
      () => reg.batch().setConfig("f", 1).setModuleState("ghost", "running").commit(),
      UnknownModuleError,
    ],
    [
      "delete if stale",
      () => reg.batch().deleteModule("echo", { ifVersion: 1 }).setConfig("g", 1).commit(),
      ConflictError,
    ],
  ];
  for (const [name, commit, type] of failing) {
    await assert.rejects(commit(), type, name);
    assert.deepEqual(snapshot(reg), before, `${name}: nothing written`);
  }
  // Bad arguments fail at once, before anything is committed.
  assert.throws(() => reg.batch().setConfig("x", 1).setConfig("x", 2), TypeError);
  assert.throws(() => reg.batch().setConfig("x", NaN), SerializationError);
  const batch = reg.batch().deleteConfig("b");
  await batch.commit();
  await assert.rejects(batch.commit(), TypeError);
  assert.equal(await reg.tryGetConfig("b"), undefined);
});

variantTest("update() reads, applies and compare-and-sets; it gives up after `tries`", async (engine, variant) => {
  await using reg = await variant.inMemory({ engine });
  const created = await reg.update<number>("n", (n) => (n ?? 0) + 1);
  assert.deepEqual([created?.value, created?.version], [1, 1]);
  const unchanged = await reg.update<number>("n", () => undefined);
  assert.deepEqual([unchanged?.value, unchanged?.version], [1, 1]);
  // A writer that always gets in between: every try conflicts.
  let calls = 0;
  const error = await reg.update<number>("n", async (n) => {
    calls++;
    await reg.setConfig("n", 100 + calls);
    return (n ?? 0) + 1;
  }, { tries: 3 }).then(() => assert.fail("no conflict"), (e) => e);
  assert.ok(error instanceof ConflictError);
  assert.equal(calls, 3);
  assert.equal(await reg.getConfig("n"), 103, "the failed update wrote nothing");
  await assert.rejects(reg.update("n", (n) => n, { tries: 0 }), TypeError);
});

Deno.test("a sealed write inside reg.db.transaction() is refused and points to batches", async () => {
  await using reg = await StateRegistry.openEncrypted(":memory:", SEALED_TEST_KEY);
  let pending: Promise<unknown> | undefined;
  assert.throws(() =>
    reg.db.transaction(() => {
      pending = reg.setConfig("token", "s3cr3t");
      throw new Error("roll back");
    }), /roll back/);
  await assert.rejects(pending!, (error: unknown) => {
    assert.ok(error instanceof RegistryError);
    assert.match(error.message, /inside reg\.db\.transaction\(\).*reg\.batch\(\)/);
    return true;
  });
  assert.equal(await reg.tryGetConfig("token"), undefined, "nothing was written after the rollback");
  await reg.batch().setConfig("token", "s3cr3t").commit();
  assert.equal(await reg.getConfig("token"), "s3cr3t");
});

Deno.test("a keyless handle's batch into a sealed registry is refused", async () => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  await using sealed = await StateRegistry.openEncrypted(path, SEALED_TEST_KEY);
  await using plain = await StateRegistry.connect(path);
  await assert.rejects(plain.batch().setConfig("x", 1).commit(), KeyRequiredError);
  await assert.rejects(plain.setConfig("x", 1, { ifVersion: 0 }), KeyRequiredError);
  // A plain handle opened before the registry was sealed meets the guard inside the transaction.
  await using dir2 = await tempDir();
  const path2 = dir2.file("r.db");
  await using early = await StateRegistry.connect(path2);
  await using late = await StateRegistry.openEncrypted(path2, SEALED_TEST_KEY);
  await assert.rejects(early.batch().setConfig("x", 1).commit(), KeyRequiredError);
  await assert.rejects(early.setConfig("x", 1, { ifVersion: 0 }), KeyRequiredError);
  await assert.rejects(early.setConfig("x", 1), KeyRequiredError);
  assert.equal(await late.tryGetConfig("x"), undefined);
  assert.equal(sealed.isOpen, true);
});

engineTest(
  "re-sealing moves the change log's past values too: none stays under a retired data key, or plain",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("r.db");
    const id = crypto.randomUUID();
    {
      await using plain = await StateRegistry.connect(path, { engine });
      await plain.setConfig("token", `plain-old-${id}`);
      await plain.setConfig("token", `plain-new-${id}`);
    }
    await using reg = await StateRegistry.openEncrypted(path, SEALED_TEST_KEY, { engine });
    assert.equal(await reg.sealPlainValues(), 1);
    const logged = () =>
      reg.db.prepare("SELECT key, value FROM oxide_changes WHERE space = 'config' AND type = 'put' ORDER BY seq").all()
        .map((row) => String(row.value));
    for (const value of logged()) assert.match(value, /^\$oxide1\$/, "a past plain value was sealed");
    await reg.setConfig("token", "sealed-1");
    await reg.setConfig("token", "sealed-2");
    await reg.setConfig("other", { n: 1 });
    const before = reg.sealing!.keyId!;
    assert.equal(await reg.rotateDataKey(), 2);
    const after = reg.sealing!.keyId!;
    assert.notEqual(after, before);
    const values = logged();
    assert.equal(values.length, 5);
    for (const value of values) {
      assert.equal(
        envelopeKeyId("token", value),
        after,
        "every past value is under the new key",
      );
    }
    assert.equal((await reg.getConfigEntry("token"))?.version, 4, "re-sealing is no new version");
    // Every past value still opens with the current key: put each back as the live value and read it.
    const past = reg.db.prepare("SELECT value FROM oxide_changes WHERE key = 'token' AND type = 'put' ORDER BY seq")
      .all().map((row) => String(row.value));
    const opened: unknown[] = [];
    for (const value of past) {
      reg.db.prepare("UPDATE config SET value = ?1 WHERE key = 'token'").run(value);
      opened.push(await reg.getConfig("token"));
    }
    assert.deepEqual(opened, [`plain-old-${id}`, `plain-new-${id}`, "sealed-1", "sealed-2"]);
  },
);
