// Crashes and a full disk: a writer killed with SIGKILL mid-run, over and over, loses no acknowledged write and
// leaves a file that passes integrity_check; a database that cannot grow fails the write that does not fit with
// SQLITE_FULL and keeps working. Both engines, plain and sealed.
import assert from "node:assert/strict";
import { type Durability, type EngineName, RegistryError, type StateRegistry } from "@oxide/registry";
import { tempDir } from "./_helpers.ts";
import { type RegistryVariant, variantNamed, variantTest } from "./_variants.ts";
import { Worker } from "./_subprocess.ts";
import { type CrashModel, crashModel } from "./fixtures/_crash_ops.ts";

// --- SIGKILL -------------------------------------------------------------------------------------------------------

/**
 * Runs the crash writer from op `start` until it has acknowledged `acks` more ops, then kills it with SIGKILL.
 *
 * @returns How many ops were acknowledged in all (the number of the first op not acknowledged).
 */
async function runAndKill(
  options: { path: string; folder: string; engine: EngineName; variant: string; durability: Durability },
  start: number,
  acks: number,
): Promise<number> {
  const { folder, ...rest } = options;
  const worker = new Worker("crash_writer.ts", [JSON.stringify({ ...rest, start })], { folders: [folder] });
  let acked = start;
  try {
    while (acked < start + acks) {
      const line = await worker.nextLine();
      if (line === undefined) {
        const { status, stderr } = await worker.finish();
        assert.fail(`the writer stopped by itself after op ${acked - 1} (exit ${status.code}): ${stderr}`);
      }
      assert.equal(Number(line), acked, "ops are acknowledged in order");
      acked++;
    }
  } finally {
    worker.child.kill("SIGKILL"); // Mid-op: it never waits between ops.
  }
  const { status, lines } = await worker.finish();
  assert.equal(status.signal, "SIGKILL");
  for (const line of lines) assert.equal(Number(line), acked++, "ops are acknowledged in order"); // Still in the pipe.
  return acked;
}

/** What the registry file holds, in the model's form. */
async function readState(reg: StateRegistry): Promise<CrashModel> {
  const config: CrashModel["config"] = {};
  for (const { key } of reg.db.prepare("SELECT key FROM config ORDER BY key").all()) {
    config[key as string] = await reg.getConfig(key as string);
  }
  const modules: CrashModel["modules"] = {};
  for (const record of await reg.listModules()) {
    modules[record.id] = { state: record.state, version: record.version };
  }
  const pairs = reg.db.prepare("SELECT seq, count(*) AS halves FROM crash_pairs GROUP BY seq ORDER BY seq").all();
  for (const { seq, halves } of pairs) assert.equal(halves, 2, `transaction ${seq} is whole: both rows or neither`);
  return { config, modules, pairs: pairs.map((row) => row.seq as number) };
}

function sameState(a: CrashModel, b: CrashModel): boolean {
  try {
    assert.deepEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

async function killRepeatedly(
  engine: EngineName,
  variant: RegistryVariant,
  durability: Durability,
  kills: readonly number[],
): Promise<void> {
  await using dir = await tempDir();
  const options = { path: dir.file("registry.db"), folder: dir.path, engine, variant: variant.name, durability };
  let next = 0;
  for (const [round, acks] of kills.entries()) {
    const acked = await runAndKill(options, next, acks);
    await using reg = await variant.connect(options.path, { engine });
    assert.deepEqual(reg.db.prepare("PRAGMA integrity_check").all(), [{ integrity_check: "ok" }], `round ${round}`);
    const state = await readState(reg);
    // Every acknowledged op is there; the op in flight at the kill is there whole or not at all.
    if (sameState(state, crashModel(acked))) next = acked;
    else if (sameState(state, crashModel(acked + 1))) next = acked + 1;
    else assert.deepEqual(state, crashModel(acked), `round ${round}: after ${acked} acknowledged ops`);
  }
}

variantTest(
  "a writer killed with SIGKILL mid-run, again and again, loses no acknowledged write and leaves an intact file",
  (engine, variant) => killRepeatedly(engine, variant, "full", [40, 7, 25, 60, 1]),
);

Deno.test(
  'durability "normal" also loses no acknowledged write when the process is killed [ffi, plain] [node, sealed]',
  async () => {
    await killRepeatedly("ffi", variantNamed("plain"), "normal", [30, 12]);
    await killRepeatedly("node", variantNamed("sealed"), "normal", [30, 12]);
  },
);

// --- full disk -----------------------------------------------------------------------------------------------------

function isFull(error: unknown, path: string): boolean {
  assert.ok(error instanceof RegistryError, `a RegistryError, got ${error}`);
  assert.equal(error.codeName, "SQLITE_FULL");
  assert.equal(error.path, path);
  assert.match(error.message, /^registry error: database or disk is full/);
  return true;
}

variantTest(
  "when the database cannot grow, the write that does not fit fails with SQLITE_FULL and the registry keeps working",
  async (engine, variant) => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    const value = (i: number, size = 3000) => ({ i, body: "b".repeat(size) });
    await using reg = await variant.connect(path, { engine });
    reg.db.exec("CREATE TABLE ext_log (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
    // Room an extension gives back later (the change log keeps replaced and deleted values, so deleting config
    // frees nothing until compaction).
    reg.db.exec("CREATE TABLE ext_cache (body TEXT NOT NULL)");
    reg.db.prepare("INSERT INTO ext_cache (body) VALUES (?)").run("c".repeat(60_000));
    for (let i = 0; i < 20; i++) await reg.setConfig(`before.${i}`, value(i));
    await reg.upsertModule({ id: "m", name: "M", version: "1", kind: "native" }, "loaded");
    const pages = reg.db.prepare("PRAGMA page_count").get()!.page_count as number;
    reg.db.exec(`PRAGMA max_page_count = ${pages + 6}`); // This connection cannot grow the file past it.

    let written = 0;
    let failure: unknown;
    for (; written < 100 && failure === undefined; written++) {
      failure = await reg.setConfig(`grow.${written}`, value(written)).then(() => undefined, (error) => error);
    }
    assert.ok(isFull(failure, path));
    const failed = written - 1;
    assert.ok(failed > 0, "some writes fitted before the disk was full");
    assert.equal(await reg.tryGetConfig(`grow.${failed}`), undefined, "the failed write left nothing");

    // Everything written before is intact and readable.
    for (let i = 0; i < 20; i++) assert.deepEqual(await reg.getConfig(`before.${i}`), value(i));
    for (let i = 0; i < failed; i++) assert.deepEqual(await reg.getConfig(`grow.${i}`), value(i));
    // Other writes that do not fit fail the same way and leave nothing half-done.
    await assert.rejects(
      reg.upsertModule({ id: "big", name: "B", version: "1", kind: "wasm", description: "d".repeat(20_000) }, "loaded"),
      (error) => isFull(error, path),
    );
    assert.equal(await reg.getModule("big"), undefined);
    assert.throws(() =>
      reg.db.transaction(() => {
        reg.db.prepare("INSERT INTO ext_log (body) VALUES (?)").run("first half");
        reg.db.prepare("INSERT INTO ext_log (body) VALUES (?)").run("x".repeat(40_000));
      }), (error) => isFull(error, path));
    assert.equal(reg.db.prepare("SELECT count(*) AS n FROM ext_log").get()!.n, 0, "the transaction rolled back whole");
    assert.equal(reg.db.inTransaction, false);

    // Writes that fit keep working: new ones once pages were freed, and deletes.
    reg.db.exec("DELETE FROM ext_cache");
    await reg.setModuleState("m", "running");
    assert.equal((await reg.getModule("m"))?.state, "running");
    await reg.setConfig("before.0", { i: 0, body: "c".repeat(3000) });
    assert.deepEqual(await reg.getConfig("before.0"), { i: 0, body: "c".repeat(3000) });
    for (let i = 1; i < 6; i++) assert.equal(await reg.deleteConfig(`before.${i}`), true);
    await reg.setConfig(`grow.${failed}`, value(failed));
    assert.deepEqual(await reg.getConfig(`grow.${failed}`), value(failed));
    await reg.close();

    // A fresh connection has no limit; the file is intact.
    await using again = await variant.connect(path, { engine });
    assert.deepEqual(again.db.prepare("PRAGMA integrity_check").all(), [{ integrity_check: "ok" }]);
    for (let i = 0; i <= failed; i++) assert.deepEqual(await again.getConfig(`grow.${i}`), value(i));
    await again.setConfig("after", value(-1, 200_000));
    assert.deepEqual(await again.getConfig("after"), value(-1, 200_000));
  },
);
