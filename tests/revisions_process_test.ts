// Revisions across processes: read-modify-write through reg.update() from four processes (both engines at once) loses
// no increment, plain and sealed; a batch killed with SIGKILL mid-commit is wholly there or not at all.
import assert from "node:assert/strict";
import { ENGINES, tempDir } from "./_helpers.ts";
import { VARIANTS } from "./_variants.ts";
import { Worker } from "./_subprocess.ts";

for (const variant of VARIANTS) {
  Deno.test(`4 processes (2 per engine) doing 200 increments each through update() end at exactly 800 [${variant.name}]`, async () => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    {
      await using reg = await variant.connect(path); // Created and migrated before the race.
      assert.equal(await reg.tryGetConfig("counter"), undefined);
    }
    const engines = ["ffi", "node", "ffi", "node"] as const;
    const workers = engines.map((engine) =>
      new Worker("incrementer.ts", [JSON.stringify({ path, engine, variant: variant.name, increments: 200 })], {
        folders: [dir.path],
      })
    );
    try {
      for (const worker of workers) assert.equal(await worker.nextLine(), '"ready"');
      await Promise.all(workers.map((worker) => worker.send("go\n")));
      const results = await Promise.all(workers.map((worker) => worker.finish()));
      let retried = 0;
      for (const { status, lines, stderr } of results) {
        assert.equal(status.code, 0, `${lines.join("\n")}\n${stderr}`);
        const last = JSON.parse(lines.at(-1)!);
        assert.equal(last.done, 200);
        retried += last.retried;
      }
      await using reg = await variant.connect(path);
      const entry = await reg.getConfigEntry<number>("counter");
      assert.equal(entry?.value, 800);
      assert.equal(entry?.version, 800, "one version per increment: no write was lost or doubled");
      console.log(`  (${retried} tries met a concurrent write and were retried)`);
    } finally {
      for (const worker of workers) await worker[Symbol.asyncDispose]();
    }
  });
}

const KEYS = 20;
const STATES = ["starting", "running", "stopping", "stopped"];

for (const engine of ENGINES) {
  for (const variant of VARIANTS) {
    Deno.test(`a batch killed with SIGKILL mid-commit is wholly there or not at all [${engine}, ${variant.name}]`, async () => {
      await using dir = await tempDir();
      const path = dir.file("registry.db");
      let next = 0;
      for (let round = 0; round < 3; round++) {
        const worker = new Worker(
          "batch_writer.ts",
          [JSON.stringify({ path, engine, variant: variant.name, keys: KEYS, start: next })],
          { folders: [dir.path] },
        );
        let acked = next - 1;
        try {
          // Let it commit a few batches (a different number each round), then kill it while it writes the next.
          for (let i = 0; i < 3 + round * 2; i++) {
            const line = await worker.nextLine();
            if (line === undefined) assert.fail(`the writer stopped: ${(await worker.finish()).stderr}`);
            acked = Number(line);
          }
        } finally {
          worker.child.kill("SIGKILL");
        }
        const { status, lines } = await worker.finish();
        assert.equal(status.signal, "SIGKILL");
        for (const line of lines) acked = Number(line);

        await using reg = await variant.connect(path, { engine });
        assert.deepEqual(reg.db.prepare("PRAGMA integrity_check").all(), [{ integrity_check: "ok" }]);
        // Every key of the last batch holds its value, at one revision: no batch is half there.
        const entries = await reg.listConfig<{ n: number } | number>({ prefix: "k." });
        assert.equal(entries.length, KEYS);
        const n = (entries[0]!.value as { n: number }).n;
        assert.ok(n === acked || n === acked + 1, `batch ${n} after ${acked} acknowledged`);
        for (const entry of entries) {
          assert.equal((entry.value as { n: number }).n, n, `${entry.key} is from batch ${n}`);
          assert.equal(entry.modRevision, entries[0]!.modRevision, `${entry.key} changed in the same revision`);
        }
        assert.deepEqual((await reg.listConfig({ prefix: "gone." })).map((e) => [e.key, e.value]), [[`gone.${n}`, n]]);
        const module = await reg.getModule("m");
        assert.equal(module?.state, n === 0 ? "loaded" : STATES[n % STATES.length]);
        assert.equal(module?.modRevision, entries[0]!.modRevision);
        const revisions = reg.db.prepare(
          "SELECT revision, count(*) AS rows FROM oxide_changes WHERE revision > 0 GROUP BY revision ORDER BY revision",
        ).all();
        for (const { revision, rows } of revisions) {
          assert.equal(rows, KEYS + 3 - (revision === 1 ? 1 : 0), `revision ${revision} holds a whole batch`);
        }
        next = n + 1;
      }
    });
  }
}
