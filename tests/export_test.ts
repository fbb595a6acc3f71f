// exportData() / importData(): a round trip into a new file gives the same modules, config and decisions (sealed: the
// same plaintext); a bad document writes nothing; sealed values never leave sealed unless plaintext is asked for.
import assert from "node:assert/strict";
import {
  CryptoError,
  DecisionLog,
  KeyRequiredError,
  newDecision,
  type RegistryExport,
  SerializationError,
  StateRegistry,
} from "@oxide/registry";
import { engineTest, rawSqlite, tempDir } from "./_helpers.ts";
import { SEALED_TEST_KEY } from "./_variants.ts";

const OTHER_KEY = new Uint8Array(32).fill(9);

async function fill(reg: StateRegistry): Promise<void> {
  await reg.upsertModule(
    { id: "echo", name: "Echo", version: "0.1.0", kind: "native", description: "Echoes" },
    "running",
  );
  await reg.upsertModule({ id: "mirror", name: "Mirror", version: "2.0.0", kind: "wasm" }, "stopped");
  await reg.setConfig("kernel.greeting", "Hello, agent.");
  await reg.setConfig("endpoint", { url: "https://example.com", retries: 3 });
  if (reg.sealing === undefined) {
    // An integer a double cannot hold: its text must survive exactly.
    reg.db.prepare("INSERT INTO config (key, value, updated_at) VALUES ('huge', '12345678901234567890', ?)")
      .run("2026-11-28T09:15:02.123456789+00:00");
  } else await reg.setConfig("huge", "12345678901234567890");
  await reg.setConfig("unicode", "héllo \u{1F600}");
  const log = await DecisionLog.open(reg);
  await log.log(newDecision("healer", "restart", "it crashed", { inputs: { pid: 7 }, confidence: 0.85 }));
  await log.log(newDecision("planner", "route", "shortest path"));
}

/** Everything a registry holds, as stored text (sealed values opened when the registry is keyed). */
async function contents(reg: StateRegistry): Promise<unknown> {
  const rows = reg.db.prepare("SELECT key, value, updated_at FROM config ORDER BY key").all();
  const config = [];
  for (const row of rows) {
    const value = reg.sealing === undefined ? row.value : JSON.stringify(await reg.getConfig(String(row.key)));
    config.push([row.key, value, row.updated_at]);
  }
  return {
    modules: reg.db.prepare("SELECT * FROM modules ORDER BY id").all(),
    config,
    decisions: reg.db.prepare(
      "SELECT id, timestamp, actor, action, rationale, inputs, output, confidence FROM xai_decisions ORDER BY id",
    ).all(),
  };
}

engineTest("export then import into a new file gives the same modules, config and decisions", async (engine) => {
  await using dir = await tempDir();
  await using source = await StateRegistry.connect(dir.file("source.db"), { engine });
  await fill(source);
  const text = JSON.stringify(await source.exportData());
  await using target = await StateRegistry.connect(dir.file("target.db"), { engine });
  assert.deepEqual(await target.importData(JSON.parse(text)), { modules: 2, config: 4, decisions: 2 });
  assert.deepEqual(await contents(target), await contents(source));
  assert.equal((await target.verify()).ok, true);
  // Importing the same document again replaces rows with themselves and skips logged decisions.
  assert.deepEqual(await target.importData(JSON.parse(text)), { modules: 2, config: 4, decisions: 0 });
  assert.deepEqual(await contents(target), await contents(source));
});

engineTest(
  "a sealed export keeps values sealed; imported into a new file it opens with the same key",
  async (engine) => {
    await using dir = await tempDir();
    await using source = await StateRegistry.openEncrypted(dir.file("source.db"), SEALED_TEST_KEY, { engine });
    await fill(source);
    const doc = await source.exportData();
    const text = JSON.stringify(doc);
    assert.doesNotMatch(text, /Hello, agent|example\.com/);
    assert.ok(doc.config.every((entry) => entry.sealed !== undefined && entry.json === undefined));
    assert.equal(doc.sealing?.keyId, source.sealing?.keyId);
    {
      // Restore without a key: the new file takes the document's sealing.
      await using keyless = await StateRegistry.connect(dir.file("target.db"), { engine });
      await keyless.importData(JSON.parse(text));
      await assert.rejects(keyless.getConfig("kernel.greeting"), KeyRequiredError);
    }
    await using target = await StateRegistry.openEncrypted(dir.file("target.db"), SEALED_TEST_KEY, { engine });
    assert.deepEqual(await contents(target), await contents(source));
    assert.equal((await target.verify()).ok, true);
    // Another registry's key cannot take those values as they are.
    await using other = await StateRegistry.openEncrypted(dir.file("other.db"), OTHER_KEY, { engine });
    await assert.rejects(
      other.importData(JSON.parse(text)),
      (error: unknown) =>
        error instanceof CryptoError && /sealed under another key.*export them as plaintext/.test(error.message),
    );
    assert.equal(other.db.prepare("SELECT count(*) AS n FROM modules").get()?.n, 0);
  },
);

engineTest(
  "a plaintext export of a keyed registry imports into a registry sealed under another key",
  async (engine) => {
    await using dir = await tempDir();
    await using source = await StateRegistry.openEncrypted(dir.file("source.db"), SEALED_TEST_KEY, { engine });
    await fill(source);
    const doc = await source.exportData({ plaintext: true });
    assert.equal(doc.sealing, null);
    assert.equal(doc.config.find((entry) => entry.key === "kernel.greeting")?.json, '"Hello, agent."');
    await using target = await StateRegistry.openEncrypted(dir.file("target.db"), OTHER_KEY, { engine });
    await target.importData(JSON.parse(JSON.stringify(doc)));
    assert.deepEqual(await contents(target), await contents(source));
    const stored = target.db.prepare("SELECT value FROM config WHERE key = 'kernel.greeting'").get()?.value;
    assert.match(String(stored), /^\$oxide1\$/);
    // Without a key there is nothing to open: plaintext is refused, and a keyless registry refuses plain values.
    await using keyless = await StateRegistry.connect(dir.file("source.db"), { engine });
    await assert.rejects(keyless.exportData({ plaintext: true }), CryptoError);
    await assert.rejects(keyless.importData(doc), KeyRequiredError);
  },
);

engineTest(
  "a keyless importData() refuses plain values into a file a Rust kernel sealed (no oxide_sealing table), as setConfig does",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("rust.db");
    {
      await using sealed = await StateRegistry.openEncrypted(path, "rust-kernel-key", { engine, scheme: "oxide-k" });
      await sealed.setConfig("tok", "secret");
    }
    // The file a Rust kernel leaves: oxide-k sealed values, no oxide_sealing table.
    const raw = rawSqlite(path);
    raw.exec("DROP TABLE oxide_sealing; DELETE FROM oxide_migrations WHERE owner = 'sealing'");
    const before = raw.prepare("SELECT key, value, updated_at FROM config ORDER BY key").all();
    raw.close();
    const doc = {
      format: "oxide-registry-export",
      version: 1,
      exportedAt: "2026-01-01T00:00:00+00:00",
      sealing: null,
      modules: [],
      config: [{ key: "plain", json: '"plaintext-leak"', updatedAt: "2026-01-01T00:00:00+00:00" }],
      decisions: null,
    };
    {
      await using keyless = await StateRegistry.connect(path, { engine });
      await assert.rejects(keyless.setConfig("plain", "leak"), KeyRequiredError);
      await assert.rejects(keyless.importData(doc), (error: unknown) => {
        assert.ok(error instanceof KeyRequiredError);
        assert.match(error.message, /oxide-k/);
        return true;
      });
    }
    const after = rawSqlite(path);
    try {
      assert.deepEqual(after.prepare("SELECT key, value, updated_at FROM config ORDER BY key").all(), before);
    } finally {
      after.close();
    }
  },
);

engineTest("importData() checks the whole document first and writes nothing when any part is wrong", async (engine) => {
  await using dir = await tempDir();
  await using source = await StateRegistry.connect(dir.file("source.db"), { engine });
  await fill(source);
  const good = await source.exportData();
  await using target = await StateRegistry.connect(dir.file("target.db"), { engine });
  const broken: RegistryExport = structuredClone(good);
  broken.modules[1]!.kind = "python" as "wasm";
  broken.config.at(-1)!.json = "{torn";
  broken.decisions![1]!.timestamp = "yesterday";
  await assert.rejects(target.importData(broken), (error: unknown) => {
    assert.ok(error instanceof SerializationError);
    assert.match(error.message, /3 problem\(s\), nothing was imported/);
    assert.match(error.message, /modules\[1\] \('mirror'\): kind 'python'/);
    assert.match(error.message, /config\[3\] \('unicode'\): json is not valid JSON/);
    assert.match(error.message, /decisions\[1\] .*timestamp 'yesterday'/);
    return true;
  });
  for (const table of ["modules", "config"]) {
    assert.equal(target.db.prepare(`SELECT count(*) AS n FROM ${table}`).get()?.n, 0, table);
  }
  await assert.rejects(target.importData({ format: "something else" }), /not an export document/);
  await assert.rejects(target.importData([]), /needs an export document/);
  // A decision logged with other content under the same id fails the whole import.
  const clash = structuredClone(good);
  await target.importData(good);
  clash.decisions![0]!.rationale = "rewritten";
  clash.config[0]!.json = '"changed"';
  await assert.rejects(target.importData(clash), /already logged with other content: nothing was imported/);
  assert.notEqual(await target.getConfig(clash.config[0]!.key), "changed");
});

engineTest(
  "importData() refuses JSON text oxide-k cannot read (1e400, a lone surrogate escape, too deep), naming each row",
  async (engine) => {
    await using reg = await StateRegistry.inMemory({ engine });
    const doc = await reg.exportData();
    const at = doc.exportedAt;
    doc.config.push({ key: "fine", json: "1e-400", updatedAt: at }); // Underflow is 0 to serde_json too: fine.
    doc.config.push({ key: "inf", json: '{"a":[1,-1e400]}', updatedAt: at });
    doc.config.push({ key: "lone", json: '"\\ud800"', updatedAt: at });
    doc.config.push({ key: "deep", json: "[".repeat(128) + "]".repeat(128), updatedAt: at });
    await assert.rejects(reg.importData(doc), (error: unknown) => {
      assert.ok(error instanceof SerializationError);
      assert.match(error.message, /3 problem\(s\), nothing was imported/);
      assert.match(error.message, /config\[1\] \('inf'\): json holds a number out of range at \$\.a\[1\]/);
      assert.match(error.message, /config\[2\] \('lone'\): json holds a string at \$ has a lone surrogate/);
      assert.match(error.message, /config\[3\] \('deep'\): json is nested deeper than 127 levels/);
      return true;
    });
    assert.equal(await reg.tryGetConfig("fine"), undefined);
    doc.config.splice(1);
    await reg.importData(doc);
    assert.equal(await reg.getConfig("fine"), 0);
  },
);

engineTest(
  "exportData() of a plain registry names a row that is not JSON but looks oxide-k-sealed (it is not sealed)",
  async (engine) => {
    await using dir = await tempDir();
    const path = dir.file("registry.db");
    {
      await using reg = await StateRegistry.connect(path, { engine });
      await reg.setConfig("fine", 1);
    }
    const raw = rawSqlite(path);
    try {
      raw.prepare("INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?)")
        .run("hostile", "A".repeat(40), "2026-11-28T09:15:02.123+00:00");
    } finally {
      raw.close();
    }
    await using reg = await StateRegistry.connect(path, { engine });
    await assert.rejects(reg.exportData(), (error: unknown) => {
      assert.ok(error instanceof SerializationError);
      assert.match(
        error.message,
        /cannot export config 'hostile': its value is not JSON and this registry is not sealed/,
      );
      return true;
    });
    // A file a Rust kernel sealed (every value oxide-k text, no oxide_sealing table) still exports them as sealed.
    reg.db.exec("DELETE FROM config WHERE key = 'fine'");
    const doc = await reg.exportData();
    assert.equal(doc.sealing?.scheme, "oxide-k");
    assert.equal(doc.config[0]?.sealed, "A".repeat(40));
  },
);
