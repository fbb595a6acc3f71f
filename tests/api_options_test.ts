// Option objects and cursors: a misspelt option (`ifVersoin`) must not silently turn compare-and-set into a plain write,
// and a cursor passed to another listing (other prefix, order or space) must not give a wrong page.
import assert from "node:assert/strict";
import { type ModuleMetadata, RegistryError, SerializationError, StateRegistry } from "@oxide/registry";
import { engineTest } from "./_helpers.ts";

const ECHO: ModuleMetadata = { id: "echo", name: "Echo", version: "0.1.0", kind: "native" };

/** Rejects with a TypeError whose message names `option`. */
async function rejectsNaming(work: () => Promise<unknown>, option: string, what: string): Promise<void> {
  await assert.rejects(work, (error: unknown) => {
    assert.ok(error instanceof TypeError, `${what}: ${error}`);
    assert.match(
      error.message,
      new RegExp(`unknown option '${option}' in the options of ${what.replace(/[().]/g, "\\$&")}`),
    );
    return true;
  });
}

engineTest(
  "an unknown option of a compare-and-set write is a TypeError naming it, and nothing is written",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    await reg.setConfig("k", 1);
    await reg.upsertModule(ECHO, "loaded");
    // deno-lint-ignore no-explicit-any
    const typo = { ifVersoin: 0 } as any;
    await rejectsNaming(() => reg.setConfig("k", 2, typo), "ifVersoin", "setConfig()");
    await rejectsNaming(() => reg.deleteConfig("k", typo), "ifVersoin", "deleteConfig()");
    await rejectsNaming(() => reg.upsertModule(ECHO, "running", typo), "ifVersoin", "upsertModule()");
    await rejectsNaming(() => reg.setModuleState("echo", "running", typo), "ifVersoin", "setModuleState()");
    await rejectsNaming(() => reg.deleteModule("echo", typo), "ifVersoin", "deleteModule()");
    await rejectsNaming(() => reg.update("k", () => 3, { retries: 2 } as never), "retries", "update()");
    assert.throws(
      () => reg.batch().setConfig("a", 1, typo),
      /unknown option 'ifVersoin' in the options of batch\(\)\.setConfig\(\)/,
    );
    assert.throws(() => reg.batch().deleteConfig("a", typo), TypeError);
    assert.throws(() => reg.batch().upsertModule(ECHO, "running", typo), TypeError);
    assert.throws(() => reg.batch().setModuleState("echo", "running", typo), TypeError);
    assert.throws(() => reg.batch().deleteModule("echo", typo), TypeError);
    assert.equal(await reg.getConfig("k"), 1);
    assert.equal((await reg.getConfigEntry("k"))?.version, 1);
    assert.equal((await reg.getModule("echo"))?.state, "loaded");
    // The known option still works, also spelled out with an undefined value.
    await reg.setConfig("k", 2, { ifVersion: 1 });
    await reg.setConfig("k", 3, { ifVersion: undefined });
    assert.equal(await reg.getConfig("k"), 3);
  },
);

engineTest(
  "a batch write refused for its options, value or state leaves its key free for a later write",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    await reg.upsertModule(ECHO, "loaded");
    const batch = reg.batch();
    // deno-lint-ignore no-explicit-any
    const typo = { ifVersoin: 0 } as any;
    assert.throws(() => batch.setConfig("a", 1, typo), TypeError);
    assert.throws(() => batch.setConfig("b", () => 0), SerializationError);
    assert.throws(() => batch.deleteConfig("c", typo), TypeError);
    assert.throws(() => batch.setModuleState("echo", "dancing" as never), SerializationError);
    assert.throws(() => batch.upsertModule({ ...ECHO, id: "other" }, "running", typo), TypeError);
    assert.throws(() => batch.deleteModule("gone", typo), TypeError);
    // Each refused write left nothing behind: its key is still free in this batch.
    batch.setConfig("a", 1).setConfig("b", 2).deleteConfig("c").setModuleState("echo", "running")
      .upsertModule({ ...ECHO, id: "other" }, "running").deleteModule("gone");
    assert.throws(() => batch.setConfig("a", 3), /a batch writes each config key once: 'a' is already in it/);
    await batch.commit();
    assert.deepEqual([await reg.getConfig("a"), await reg.getConfig("b")], [1, 2]);
    assert.deepEqual((await reg.listModules()).map((m) => `${m.id}:${m.state}`), ["echo:running", "other:running"]);
  },
);

engineTest("an unknown option of listConfig and listModules is a TypeError naming it", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  await rejectsNaming(() => reg.listConfig({ prefx: "a" } as never), "prefx", "listConfig()");
  await rejectsNaming(() => reg.listConfig({ invalid: "skip", skip: true } as never), "skip", "listConfig()");
  await rejectsNaming(() => reg.listModules({ reverse: true } as never), "reverse", "listModules()");
  await rejectsNaming(() => reg.listModules({ limt: 1 } as never), "limt", "listModules()");
  assert.deepEqual(await reg.listModules({ invalid: "skip", prefix: "x", limit: 1 }), []);
});

engineTest("a cursor passed to another listing is a RegistryError, not a wrong page", async (engine) => {
  await using reg = await StateRegistry.inMemory({ engine });
  for (const key of ["a.1", "a.2", "a.3", "b.1", "b.2"]) await reg.setConfig(key, key);
  for (const id of ["a.1", "a.2", "a.3"]) await reg.upsertModule({ ...ECHO, id }, "loaded");
  const forward = await reg.listConfig({ limit: 2 });
  const backward = await reg.listConfig({ limit: 2, reverse: true });
  const prefixed = await reg.listConfig({ prefix: "a.", limit: 1 });
  const modules = await reg.listModules({ limit: 1 });
  const refused = async (work: () => Promise<unknown>, pattern: RegExp) =>
    await assert.rejects(work, (error: unknown) => error instanceof RegistryError && pattern.test(error.message));
  await refused(
    () => reg.listConfig({ limit: 2, cursor: backward.cursor }),
    /continues a listing of config in descending order, not of config in ascending order: pass the same prefix/,
  );
  await refused(() => reg.listConfig({ limit: 2, reverse: true, cursor: forward.cursor }), /in ascending order, not/);
  await refused(
    () => reg.listConfig({ prefix: "b.", cursor: prefixed.cursor }),
    /listing of config with prefix 'a\.' in ascending order, not of config with prefix 'b\.'/,
  );
  await refused(() => reg.listConfig({ cursor: prefixed.cursor }), /with prefix 'a\.'/);
  await refused(() => reg.listConfig({ prefix: "a.", cursor: forward.cursor }), /not of config with prefix 'a\.'/);
  await refused(
    () => reg.listModules({ cursor: forward.cursor }),
    /listing of config in ascending order, not of modules/,
  );
  await refused(() => reg.listConfig({ cursor: modules.cursor }), /listing of modules .*, not of config/);
  // The same listing goes on as before.
  assert.deepEqual((await reg.listConfig({ limit: 2, cursor: forward.cursor })).map((e) => e.key), ["a.3", "b.1"]);
  assert.deepEqual((await reg.listConfig({ limit: 2, reverse: true, cursor: backward.cursor })).map((e) => e.key), [
    "a.3",
    "a.2",
  ]);
  assert.deepEqual((await reg.listConfig({ prefix: "a.", cursor: prefixed.cursor })).map((e) => e.key), ["a.2", "a.3"]);
  assert.deepEqual((await reg.listModules({ cursor: modules.cursor })).map((m) => m.id), ["a.2", "a.3"]);
  // Not a cursor at all: still its own message.
  await refused(() => reg.listConfig({ cursor: "garbage" }), /is not one a listing returned/);
});
