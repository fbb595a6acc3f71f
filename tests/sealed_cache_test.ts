// The sealed read cache (src/sealing/sealing.ts, Sealing.cached): a handle remembers, per config key, the stored
// text it last opened and its plaintext. These tests prove it never answers with a value the file no longer holds:
// not after another process wrote the key, not after the stored text was tampered with or moved, and that it is
// bounded and emptied when this handle re-seals or closes.
import assert from "node:assert/strict";
import { SealedValueError, StateRegistry } from "@oxide/registry";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import { openSealing, Sealing } from "../src/sealing/sealing.ts";
import { openEngine } from "../src/sqlite/open.ts";
import { migrateRegistry } from "../src/schema.ts";
import { engineTest, runDeno, tempDir } from "./_helpers.ts";

const RAW_KEY = new Uint8Array(32).fill(0x3c);

function rawValue(reg: StateRegistry, key: string): string {
  return String(reg.db.prepare("SELECT value FROM config WHERE key = ?").get(key)?.value);
}

engineTest("a sealed read after another process wrote the key returns the new value", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("shared.db");
  await using reg = await StateRegistry.openEncrypted(path, RAW_KEY, { engine });
  await reg.setConfig("endpoint", { url: "https://one.example", retries: 1 });
  assert.deepEqual(await reg.getConfig("endpoint"), { url: "https://one.example", retries: 1 });
  assert.deepEqual(await reg.getConfig("endpoint"), { url: "https://one.example", retries: 1 }, "a cached read");
  const script = dir.file("writer.ts");
  await Deno.writeTextFile(
    script,
    `import { StateRegistry } from ${JSON.stringify(import.meta.resolve("../mod.ts"))};
const reg = await StateRegistry.openEncrypted(Deno.args[0], new Uint8Array(32).fill(0x3c), { engine: ${
      JSON.stringify(engine)
    } });
await reg.setConfig("endpoint", { url: "https://two.example", retries: 2 });
await reg.close();`,
  );
  const run = await runDeno([
    "run",
    "--allow-ffi",
    `--allow-read=${dir.path}`,
    `--allow-write=${dir.path}`,
    script,
    path,
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(await reg.getConfig("endpoint"), { url: "https://two.example", retries: 2 });
  assert.deepEqual(await reg.getConfig("endpoint"), { url: "https://two.example", retries: 2 }, "cached again");
});

engineTest("a cached sealed value that was moved or altered in the file fails to open", async (engine) => {
  await using reg = await StateRegistry.openEncrypted(":memory:", RAW_KEY, { engine });
  await reg.setConfig("api_token", "s3cr3t");
  await reg.setConfig("greeting", "hello");
  assert.equal(await reg.getConfig("api_token"), "s3cr3t");
  assert.equal(await reg.getConfig("greeting"), "hello"); // Both cached now.
  const token = rawValue(reg, "api_token");
  // Copied to another key: the cache is keyed by config key, and greeting's entry holds another text.
  reg.db.prepare("UPDATE config SET value = ? WHERE key = 'greeting'").run(token);
  await assert.rejects(reg.getConfig("greeting"), (error: unknown) => {
    assert.ok(error instanceof SealedValueError, String(error));
    assert.equal(error.reason, "moved");
    return true;
  });
  // One character of the body changed.
  const last = token.at(-1) === "A" ? "B" : "A";
  reg.db.prepare("UPDATE config SET value = ? WHERE key = 'api_token'").run(token.slice(0, -1) + last);
  await assert.rejects(reg.getConfig("api_token"), SealedValueError);
  // Put back exactly as it was: the same text opens to the same value again.
  reg.db.prepare("UPDATE config SET value = ? WHERE key = 'api_token'").run(token);
  assert.equal(await reg.getConfig("api_token"), "s3cr3t");
});

engineTest("the read cache is bounded and emptied when this handle re-seals", async (engine) => {
  using db = openEngine(":memory:", { engine });
  migrateRegistry(db);
  const sealing = await openSealing(new SqliteStore(db), RAW_KEY, { readCache: 2 });
  const stored = new Map<string, string>();
  for (const key of ["a", "b", "c"]) {
    await sealing.write(key, JSON.stringify(key), "2026-01-01T00:00:00+00:00");
    stored.set(key, String(db.prepare("SELECT value FROM config WHERE key = ?").get(key)?.value));
  }
  assert.equal(sealing.cached("a", stored.get("a")!), undefined, "the oldest entry went first");
  assert.equal(sealing.cached("b", stored.get("b")!), '"b"');
  assert.equal(sealing.cached("c", stored.get("c")!), '"c"');
  assert.equal(sealing.cached("c", stored.get("b")!), undefined, "another stored text never answers");
  assert.equal(await sealing.open("a", stored.get("a")!), '"a"');
  assert.equal(sealing.cached("a", stored.get("a")!), '"a"', "opening remembers");
  assert.equal(sealing.cached("b", stored.get("b")!), undefined, "and pushes out the oldest");
  await sealing.rotateDataKey();
  for (const key of ["a", "b", "c"]) assert.equal(sealing.cached(key, stored.get(key)!), undefined, key);
});

engineTest("readCache: 0 keeps no plaintext; a readCache that is not a count is refused", async (engine) => {
  using db = openEngine(":memory:", { engine });
  migrateRegistry(db);
  const sealing = await openSealing(new SqliteStore(db), RAW_KEY, { readCache: 0 });
  await sealing.write("a", '"a"', "2026-01-01T00:00:00+00:00");
  const stored = String(db.prepare("SELECT value FROM config WHERE key = 'a'").get()?.value);
  assert.equal(await sealing.open("a", stored), '"a"');
  assert.equal(sealing.cached("a", stored), undefined);
  for (const bad of [-1, 1.5, Number.NaN, "10" as unknown as number]) {
    await assert.rejects(StateRegistry.openEncrypted(":memory:", RAW_KEY, { engine, readCache: bad }), RangeError);
  }
});

engineTest("closing a sealed registry empties its read cache", async (engine) => {
  const forgotten: Sealing[] = [];
  const forget = Sealing.prototype.forget;
  Sealing.prototype.forget = function (this: Sealing) {
    forgotten.push(this);
    forget.call(this);
  };
  try {
    for (const close of ["close", "dispose"] as const) {
      forgotten.length = 0;
      const reg = await StateRegistry.openEncrypted(":memory:", RAW_KEY, { engine });
      await reg.setConfig("k", 1);
      assert.equal(await reg.getConfig("k"), 1);
      if (close === "close") await reg.close();
      else reg[Symbol.dispose]();
      assert.equal(forgotten.length, 1, `${close}: the cache was emptied`);
    }
  } finally {
    Sealing.prototype.forget = forget;
  }
});
