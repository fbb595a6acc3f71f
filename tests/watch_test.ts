// reg.watch() in one process, on real files and both engines: what events say, filters, resuming, and how a watch
// ends (break, return(), an AbortSignal, close()) without leaking a timer, file watch or listener (the sanitizers are
// on). The cross-process guarantees are in watch_process_test.ts.
import assert from "node:assert/strict";
import { type ConfigChange, type ModuleChange, RegistryError, StateRegistry, type WatchEvent } from "@oxide/registry";
import { engineTest, tempDir } from "./_helpers.ts";
import { SEALED_TEST_KEY } from "./_variants.ts";
import { take, within } from "./_watchdog.ts";

function brief(event: WatchEvent): string {
  return event.space === "config"
    ? `${event.type} ${event.key}=${JSON.stringify(event.value)} v${event.version}`
    : `${event.type} module ${event.id} ${event.module?.state ?? "-"} v${event.version}`;
}

engineTest(
  "watch() delivers puts and deletes of config and modules with revision, version and value",
  async (engine) => {
    await using dir = await tempDir();
    await using reg = await StateRegistry.connect(dir.file("registry.db"), { engine });
    await reg.setConfig("before", 0); // Before the watch: not delivered.
    const watch = reg.watch({ spaces: ["config", "modules"] });
    await reg.setConfig("a", { n: 1 });
    await reg.setConfig("a", { n: 2 });
    await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
    await reg.setModuleState("echo", "running");
    await reg.deleteConfig("a");
    const events = await take(watch, 5);
    assert.deepEqual(events.map(brief), [
      `put a={"n":1} v1`,
      `put a={"n":2} v2`,
      "put module echo loaded v1",
      "put module echo running v2",
      "delete a=undefined v0",
    ]);
    const revisions = events.map((e) => e.revision);
    assert.deepEqual(revisions, revisions.map((_, i) => revisions[0]! + i)); // One revision per write.
    const put = events[0] as ConfigChange;
    assert.equal(put.sealed, false);
    assert.ok(put.updatedAt instanceof Date);
    assert.equal((events[2] as ModuleChange).module?.name, "Echo");
    await watch.return();
  },
);

engineTest("watch() follows exact keys, a prefix, or modules only", async (engine, t) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.connect(dir.file("registry.db"), { engine });
  const cases: [string, Parameters<StateRegistry["watch"]>[0], string[]][] = [
    ["keys", { keys: ["net.port", "log.level"] }, ["net.port", "log.level"]],
    ["prefix", { prefix: "net." }, ["net.port", "net.host"]],
    ["modules", { spaces: ["modules"] }, ["echo"]],
    ["modules by prefix", { spaces: ["modules"], prefix: "ec" }, ["echo"]],
  ];
  for (const [name, options, expected] of cases) {
    await t.step(name, async () => {
      const watch = reg.watch(options);
      await reg.setConfig("net.port", 8080);
      await reg.setConfig("netx", 1);
      await reg.setConfig("log.level", "debug");
      await reg.setConfig("net.host", "example");
      await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
      await reg.upsertModule({ id: "other", name: "Other", version: "0.1.0", kind: "wasm" }, "loaded");
      await reg.setConfig("end", 0); // Every watch above stops before this.
      const events = await take(watch, expected.length);
      assert.deepEqual(events.map((e) => (e.space === "config" ? e.key : e.id)), expected);
      await watch.return();
    });
  }
});

engineTest("watch({ fromRevision }) resumes: the same events again, from that revision on", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  let resumeAt: number;
  let rest: string[];
  {
    await using reg = await StateRegistry.connect(path, { engine });
    const watch = reg.watch();
    for (let i = 1; i <= 6; i++) await reg.setConfig(`k${i}`, i);
    const events = await take(watch, 6);
    await watch.return();
    resumeAt = events[2]!.revision + 1; // As if the process stopped after its third event.
    rest = events.slice(3).map(brief);
  }
  await using again = await StateRegistry.connect(path, { engine });
  const watch = again.watch({ fromRevision: resumeAt });
  assert.deepEqual((await take(watch, 3)).map(brief), rest);
  await again.setConfig("k7", 7);
  assert.deepEqual((await take(watch, 1)).map(brief), ["put k7=7 v1"]);
  await watch.return();
});

engineTest("a watch opens sealed values on a keyed registry and marks them sealed on a keyless one", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  await using sealed = await StateRegistry.openEncrypted(path, SEALED_TEST_KEY, { engine });
  await using keyless = await StateRegistry.connect(path, { engine });
  const keyed = sealed.watch();
  const plain = keyless.watch();
  await sealed.setConfig("api_token", "s3cr3t");
  const [opened] = await take(keyed, 1) as ConfigChange[];
  assert.deepEqual([opened!.value, opened!.sealed], ["s3cr3t", true]);
  const [hidden] = await take(plain, 1) as ConfigChange[];
  assert.deepEqual([hidden!.value, hidden!.sealed, hidden!.error], [undefined, true, undefined]);
  await keyed.return();
  await plain.return();
});

engineTest("a watch never delivers a write that another caller's transaction rolls back", async (engine) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.connect(dir.file("registry.db"), { engine });
  const watch = reg.watch();
  const pending = watch.next();
  reg.db.exec("BEGIN");
  reg.db.prepare("INSERT INTO config (key, value, updated_at) VALUES ('phantom', '1', '2026-01-01T00:00:00+00:00')")
    .run();
  await new Promise((resolve) => setTimeout(resolve, 300)); // The watch's poll runs meanwhile.
  reg.db.exec("ROLLBACK");
  await reg.setConfig("real", 1);
  const { value } = await within(pending, "the event of 'real'");
  assert.equal((value as ConfigChange).key, "real");
  await watch.return();
});

engineTest("a watch ends on break, return(), an AbortSignal and close(), releasing everything", async (engine, t) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  await t.step("break out of for await", async () => {
    await using reg = await StateRegistry.connect(path, { engine });
    const writing = (async () => {
      for (let i = 0; i < 3; i++) await reg.setConfig("k", i);
    })();
    let seen = 0;
    await within(
      (async () => {
        for await (const _ of reg.watch({ fromRevision: 1 })) {
          if (++seen === 2) break;
        }
      })(),
      "2 events in a for await loop",
    );
    await writing;
    assert.equal(seen, 2);
  });
  await t.step("return() while next() waits", async () => {
    await using reg = await StateRegistry.connect(path, { engine });
    const watch = reg.watch();
    const pending = watch.next();
    assert.deepEqual(await watch.return(), { done: true, value: undefined });
    assert.deepEqual(await within(pending, "the end of next() after return()"), { done: true, value: undefined });
    assert.deepEqual(await watch.next(), { done: true, value: undefined });
  });
  await t.step("an AbortSignal, before and during", async () => {
    await using reg = await StateRegistry.connect(path, { engine });
    const controller = new AbortController();
    const watch = reg.watch({ signal: controller.signal });
    const pending = watch.next();
    controller.abort();
    assert.equal((await within(pending, "the end of next() after abort()")).done, true);
    assert.equal((await reg.watch({ signal: AbortSignal.abort() }).next()).done, true);
  });
  await t.step("close() ends every watch, then the registry refuses new ones", async () => {
    const reg = await StateRegistry.connect(path, { engine });
    const watches = [reg.watch(), reg.watch({ spaces: ["modules"] })];
    const pending = watches.map((watch) => watch.next());
    await reg.close();
    for (const result of await within(Promise.all(pending), "the end of both watches at close()")) {
      assert.equal(result.done, true);
    }
    assert.throws(() => reg.watch(), RegistryError);
  });
});

Deno.test("watch() refuses options of the wrong shape", async (t) => {
  await using reg = await StateRegistry.inMemory();
  const cases: [string, unknown, ErrorConstructor][] = [
    ["keys and prefix", { keys: ["a"], prefix: "a" }, TypeError],
    ["empty keys", { keys: [] }, RangeError],
    ["a key that is not a string", { keys: [1] }, TypeError],
    ["fromRevision 0", { fromRevision: 0 }, RangeError],
    ["fromRevision 1.5", { fromRevision: 1.5 }, RangeError],
    ["an unknown space", { spaces: ["meta"] }, TypeError],
    ["no space", { spaces: [] }, TypeError],
    ["a signal that is not one", { signal: {} }, TypeError],
  ];
  for (const [name, options, type] of cases) {
    await t.step(name, () => {
      assert.throws(() => reg.watch(options as Parameters<StateRegistry["watch"]>[0]), type);
    });
  }
});
