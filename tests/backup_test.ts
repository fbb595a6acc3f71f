// reg.backup(): a consistent online copy while other processes keep writing, on both engines, plain and sealed;
// refusal to overwrite; the ffi engine's permission check on the destination.
import assert from "node:assert/strict";
import { type BackupProgress, RegistryError, StateRegistry } from "@oxide/registry";
import { engineTest, tempDir } from "./_helpers.ts";
import { variantTest } from "./_variants.ts";
import { Worker } from "./_subprocess.ts";

interface Ack {
  table: "config" | "modules";
  key: string;
  writer: number;
  seq: number;
}

variantTest("backup() while two writer processes keep writing holds every write acknowledged before it began", async (
  engine,
  variant,
) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await variant.connect(path, { engine });
    await reg.setConfig("seed", "before the writers");
    await reg.setConfig("bulk", "x".repeat(2_000_000)); // Some 500 pages: the copy takes many steps.
  }
  const writes = 100_000; // More than they can write before the test stops them.
  await using first = new Worker("writer.ts", [
    JSON.stringify({ path, engine, variant: variant.name, writer: 0, writes }),
  ], {
    folders: [dir.path],
  });
  await using second = new Worker("writer.ts", [
    JSON.stringify({ path, engine, variant: variant.name, writer: 1, writes }),
  ], {
    folders: [dir.path],
  });
  const workers = [first, second];
  for (const worker of workers) assert.equal(await worker.nextLine(), '"ready"');
  await Promise.all(workers.map((worker) => worker.send("go\n")));

  // Read acks in the background; wait until both writers acknowledged a good number.
  const acks: Ack[][] = [[], []];
  let stop = false;
  const readers = workers.map(async (worker, writer) => {
    while (!stop) {
      const line = await worker.nextLine();
      if (line === undefined) return;
      const parsed = JSON.parse(line);
      assert.equal(parsed.error, undefined, `writer ${writer}: ${line}`);
      if (parsed.ack !== undefined) acks[writer]!.push(parsed.ack);
    }
  });
  while (acks[0]!.length < 40 || acks[1]!.length < 40) await new Promise((resolve) => setTimeout(resolve, 5));

  await using reg = await variant.connect(path, { engine });
  const before = acks.map((list) => [...list]); // Acknowledged before the backup began.
  const progress: BackupProgress[] = [];
  await reg.backup(dir.file("copy.db"), { pagesPerStep: 1, onProgress: (p) => progress.push(p) });
  const after = acks.map((list) => list.length);
  // node:sqlite's backup() runs on the calling thread (this process's event loop waits); ffi's steps let it run.
  if (engine === "ffi") assert.ok(after[0]! + after[1]! > before[0]!.length + before[1]!.length, "acks during it");
  // The writers never paused: both go on acknowledging writes after the backup.
  while (acks[0]!.length <= after[0]! || acks[1]!.length <= after[1]!) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  stop = true;
  for (const worker of workers) worker.child.kill("SIGKILL");
  await Promise.all(readers);
  assert.ok(progress.length > 1, `several steps reported: ${progress.length}`);

  await using copy = await variant.connect(dir.file("copy.db"), { engine });
  const report = await copy.verify();
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  assert.equal(await copy.getConfig("seed"), "before the writers");
  for (const [writer, list] of before.entries()) {
    // Per key, the latest write this writer had acknowledged: the copy holds it or a later one.
    const latest = new Map<string, Ack>();
    for (const ack of list) latest.set(`${ack.table}:${ack.key}`, ack);
    for (const ack of latest.values()) {
      if (ack.table === "config") {
        const value = await copy.getConfig<{ writer: number; seq: number }>(ack.key);
        if (ack.key.startsWith("own.")) {
          assert.equal(value.writer, writer);
          assert.ok(value.seq >= ack.seq, `${ack.key}: copy has seq ${value.seq}, acknowledged ${ack.seq}`);
        }
      } else {
        const record = await copy.getModule(ack.key);
        assert.ok(record !== undefined, `module ${ack.key} is in the copy`);
        if (ack.key.startsWith("own-")) {
          assert.ok(
            Number(record.version) >= ack.seq,
            `${ack.key}: copy has ${record.version}, acknowledged ${ack.seq}`,
          );
        }
      }
    }
  }
});

engineTest("backup() refuses an existing destination unless asked to overwrite, and leaves no temporary file", async (
  engine,
) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.connect(dir.file("registry.db"), { engine });
  await reg.setConfig("generation", 1);
  await Deno.writeTextFile(dir.file("copy.db"), "precious");
  await assert.rejects(
    reg.backup(dir.file("copy.db")),
    (error: unknown) =>
      error instanceof RegistryError &&
      /copy\.db' already exists: choose another path, or overwrite/.test(error.message),
  );
  assert.equal(await Deno.readTextFile(dir.file("copy.db")), "precious");
  await reg.setConfig("generation", 2);
  const result = await reg.backup(dir.file("copy.db"), { overwrite: true });
  assert.equal(result.bytes, (await Deno.stat(dir.file("copy.db"))).size);
  assert.ok(result.pages > 0);
  {
    await using copy = await StateRegistry.connect(dir.file("copy.db"), { engine });
    assert.equal(await copy.getConfig("generation"), 2);
  }
  await assert.rejects(reg.backup(dir.file("registry.db"), { overwrite: true }), /onto itself/);
  const names = [];
  for await (const entry of Deno.readDir(dir.path)) names.push(entry.name);
  assert.deepEqual(names.filter((name) => name.includes(".tmp-")), []);
});

engineTest("backup() of an in-memory registry writes a file registry", async (engine) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.inMemory({ engine });
  await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "running");
  await reg.backup(dir.file("copy.db"));
  await using copy = await StateRegistry.connect(dir.file("copy.db"), { engine });
  assert.equal((await copy.getModule("echo"))?.state, "running");
});

engineTest("backup() into a missing folder fails naming the destination and leaves nothing", async (engine) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.connect(dir.file("registry.db"), { engine });
  await assert.rejects(
    reg.backup(dir.file("no/such/folder/copy.db")),
    (error: unknown) => error instanceof RegistryError && error.message.includes("no/such/folder/copy.db"),
  );
});

const allowed = Deno.makeTempDirSync({ prefix: "oxide_registry_test_" });
const elsewhere = `${allowed}-elsewhere`; // Never created: the permission check comes first.

Deno.test({
  name: "backup() through the ffi engine needs --allow-write for the destination, as for the database",
  permissions: { ffi: true, read: true, write: [allowed] },
  async fn() {
    try {
      await using reg = await StateRegistry.connect(`${allowed}/registry.db`, { engine: "ffi" });
      await assert.rejects(
        reg.backup(`${elsewhere}/copy.db`),
        (error: unknown) =>
          error instanceof RegistryError && error.message.includes(`needs --allow-write for '${elsewhere}/copy.db'`),
      );
      // The engine checks the file it opens itself, too.
      await assert.rejects(reg.db.backup(`${elsewhere}/raw.db`), /the "ffi" engine needs --allow-write for/);
      await reg.backup(`${allowed}/copy.db`);
    } finally {
      Deno.removeSync(allowed, { recursive: true });
    }
  },
});
