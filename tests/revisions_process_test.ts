// Revisions across processes: read-modify-write through reg.update() from four processes (both engines at once) loses
// no increment, plain and sealed; a batch killed with SIGKILL mid-commit is wholly there or not at all.
import assert from "node:assert/strict";
import { tempDir } from "./_helpers.ts";
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
