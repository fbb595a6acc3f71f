// listConfig() / listModules() with invalid: "skip": rows that cannot be read are left out and named in the page's
// `skipped`, the rest listed (the CLI's config list and modules list mark them); the default still throws.
import assert from "node:assert/strict";
import { KeyRequiredError, SerializationError, StateRegistry } from "@oxide/registry";
import { engineTest, rawSqlite, tempDir } from "./_helpers.ts";
import { SEALED_TEST_KEY } from "./_variants.ts";

const NOW = "2026-11-28T09:15:02.123+00:00";

engineTest("listConfig({ invalid: 'skip' }) lists the readable values and names the others", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    await reg.setConfig("a", 1);
    await reg.setConfig("c", 3);
  }
  const raw = rawSqlite(path);
  try {
    raw.prepare("INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?)").run("b", "{oops", NOW);
  } finally {
    raw.close();
  }
  await using reg = await StateRegistry.connect(path, { engine });
  await assert.rejects(reg.listConfig(), SerializationError);
  const page = await reg.listConfig({ invalid: "skip" });
  assert.deepEqual(page.map((e) => [e.key, e.value]), [["a", 1], ["c", 3]]);
  assert.deepEqual(page.skipped?.map((row) => row.key), ["b"]);
  assert.ok(page.skipped?.[0]?.error instanceof SerializationError);
  assert.equal(page.skipped?.[0]?.updatedAt?.toISOString(), "2026-11-28T09:15:02.123Z");
  assert.equal((await reg.listConfig({ prefix: "a" })).skipped, undefined, "only with invalid: 'skip'");
  await assert.rejects(reg.listConfig({ invalid: "ignore" as "skip" }), TypeError);
  const modules = await reg.listModules({ invalid: "skip" });
  assert.deepEqual(modules.skipped, []);
});

engineTest(
  "listConfig({ invalid: 'skip' }) on a keyless handle of a sealed registry names every sealed value",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    {
      await using reg = await StateRegistry.openEncrypted(path, SEALED_TEST_KEY, { engine });
      await reg.setConfig("token", "s3cr3t");
    }
    await using keyless = await StateRegistry.connect(path, { engine });
    const page = await keyless.listConfig({ invalid: "skip" });
    assert.equal(page.length, 0);
    assert.deepEqual(page.skipped?.map((row) => [row.key, row.error instanceof KeyRequiredError]), [["token", true]]);
  },
);
