// The change notifier under the SQLite watch: it wakes on commits by this connection, by other connections and by
// other processes, and it holds no timer, file watch or listener once nobody listens (nor once a watch ends).
import assert from "node:assert/strict";
import { StateRegistry } from "@oxide/registry";
import { openEngine } from "../src/sqlite/open.ts";
import { ChangeNotifier } from "../src/store/sqlite/_change_notifier.ts";
import { FeedWatch } from "../src/store/sqlite/watch.ts";
import { ENGINES, runDeno, tempDir } from "./_helpers.ts";
import { within } from "./_watchdog.ts";

/** Resolves on the listener's next call. */
function nextWake(notifier: ChangeNotifier): Promise<void> & Disposable {
  const { promise, resolve } = Promise.withResolvers<void>();
  const subscription = notifier.subscribe(() => resolve());
  return Object.assign(promise.then(() => subscription[Symbol.dispose]()), {
    [Symbol.dispose]: () => subscription[Symbol.dispose](),
  });
}

for (const engine of ENGINES) {
  for (const watchFiles of [true, false]) {
    Deno.test(`ChangeNotifier wakes on a commit by another process [${engine}, watchFiles: ${watchFiles}]`, async () => {
      await using dir = await tempDir();
      const path = dir.file("registry.db");
      using db = openEngine(path, { engine });
      db.exec("CREATE TABLE t (x)");
      const notifier = new ChangeNotifier(db, { watchFiles });
      try {
        const woken = nextWake(notifier);
        assert.equal(notifier.watchingFiles, watchFiles);
        const writer = await runDeno([
          "eval",
          `import { DatabaseSync } from "node:sqlite"; new DatabaseSync(${
            JSON.stringify(path)
          }).exec("INSERT INTO t VALUES (1)")`,
        ]);
        assert.equal(writer.code, 0, writer.stderr);
        await woken;
        assert.equal(notifier.listeners, 0);
        assert.equal(notifier.watchingFiles, false); // The last listener left: the watch stopped.
      } finally {
        await notifier.close();
      }
    });
  }

  Deno.test(`ChangeNotifier wakes on a commit by another connection of this process [${engine}]`, async () => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    using db = openEngine(path, { engine });
    db.exec("CREATE TABLE t (x)");
    using other = openEngine(path, { engine });
    const notifier = new ChangeNotifier(db);
    try {
      const woken = nextWake(notifier);
      other.exec("INSERT INTO t VALUES (1)");
      await woken;
    } finally {
      await notifier.close();
    }
  });
}

Deno.test("ChangeNotifier calls listeners for commits announced on its own connection, in memory too", async () => {
  using db = openEngine(":memory:");
  const notifier = new ChangeNotifier(db);
  let calls = 0;
  const subscription = notifier.subscribe(() => calls++);
  notifier.committed();
  notifier.committed();
  assert.equal(calls, 2);
  subscription[Symbol.dispose]();
  subscription[Symbol.dispose](); // Idempotent.
  notifier.committed();
  assert.equal(calls, 2);
  await notifier.close();
  assert.throws(() => notifier.subscribe(() => {}), /closed/);
});

Deno.test("ChangeNotifier.close() stops the poll and the file watch with listeners still subscribed", async () => {
  await using dir = await tempDir();
  using db = openEngine(dir.file("registry.db"));
  const notifier = new ChangeNotifier(db);
  notifier.subscribe(() => {});
  assert.equal(notifier.watchingFiles, true);
  await notifier.close(); // The op and resource sanitizers fail the test if a timer or watcher outlives this.
  assert.equal(notifier.listeners, 0);
  assert.equal(notifier.watchingFiles, false);
});

Deno.test("a FeedWatch releases its notifier subscription on return(), abort, break and end()", async (t) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.connect(dir.file("registry.db"));
  const notifier = new ChangeNotifier(reg.db);
  let ended = 0;
  const start = (signal?: AbortSignal) =>
    new FeedWatch(reg.db, notifier, { spaces: ["config"], signal }, () => ended++);
  try {
    await t.step("return()", async () => {
      const watch = start();
      const pending = watch.next();
      assert.equal(notifier.listeners, 1);
      assert.equal(notifier.watchingFiles, true);
      await watch.return();
      assert.equal((await within(pending, "the end of next() after return()")).done, true);
      assert.equal(notifier.listeners, 0);
      assert.equal(notifier.watchingFiles, false);
    });
    await t.step("abort", async () => {
      const controller = new AbortController();
      const watch = start(controller.signal);
      const pending = watch.next();
      controller.abort();
      assert.equal((await within(pending, "the end of next() after abort()")).done, true);
      assert.equal(notifier.listeners, 0);
    });
    await t.step("break", async () => {
      const watch = start();
      const looping = (async () => {
        for await (const _ of watch) break;
      })();
      await reg.setConfig("k", 1);
      await within(looping, "an event to break on");
      assert.equal(notifier.listeners, 0);
    });
    await t.step("end() twice", () => {
      const watch = start();
      void watch.next();
      watch.end();
      watch.end();
      assert.equal(notifier.listeners, 0);
    });
    assert.equal(ended, 4); // Each watch told its store once.
  } finally {
    await notifier.close();
  }
});
