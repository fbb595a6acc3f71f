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
  assert.deepEqual(await target.importData(JSON.parse(text)), {
    modules: 2,
    config: 4,
    decisions: 2,
    revisionsRestored: true,
  });
  assert.deepEqual(await contents(target), await contents(source));
  assert.equal((await target.verify()).ok, true);
  // Importing the same document again replaces rows with themselves and skips logged decisions.
  assert.deepEqual(await target.importData(JSON.parse(text)), {
    modules: 2,
    config: 4,
    decisions: 0,
    revisionsRestored: false,
    revisionsSkipped: "this registry is not new and empty",
  });
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
      assert.match(
        error.message,
        /config\[1\] \('inf'\): json: the number at \$\.a\[1\] is out of range, which oxide-k cannot read/,
      );
      assert.match(error.message, /config\[2\] \('lone'\): json: the string at \$ has a lone surrogate/);
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

/** Every key's revisions and every kept version of `keys`, as the API reads them. */
async function revisionState(reg: StateRegistry, keys: string[]): Promise<unknown> {
  const entries = [];
  for (const key of keys) {
    const entry = await reg.getConfigEntry(key);
    const history = await reg.configHistory(key);
    entries.push({
      key,
      entry: entry === undefined
        ? undefined
        : { value: entry.value, version: entry.version, create: entry.createRevision, mod: entry.modRevision },
      history: history.map((v) => [v.version, v.revision, v.createRevision, v.value]),
    });
  }
  return { entries, compacted: await reg.compactedRevision() };
}

async function writeHistory(reg: StateRegistry): Promise<void> {
  await reg.setConfig("a", 1);
  await reg.setConfig("a", 2);
  await reg.setConfig("b", "gone soon");
  await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
  await reg.deleteConfig("b");
  await reg.setConfig("b", "born again");
  await reg.setModuleState("echo", "running");
  await reg.setConfig("a", 3);
  await reg.compact(3); // History below revision 3 goes; each live key keeps its current entry.
  await reg.setConfig("c", { n: 1 });
}

for (const sealed of [false, true]) {
  engineTest(
    `export carries revisions and the change log; an import into a new file restores them exactly${
      sealed ? " (sealed)" : ""
    }`,
    async (engine) => {
      await using dir = await tempDir();
      const open = (name: string) =>
        sealed
          ? StateRegistry.openEncrypted(dir.file(name), SEALED_TEST_KEY, { engine })
          : StateRegistry.connect(dir.file(name), { engine });
      const keys = ["a", "b", "c"];
      let doc: RegistryExport;
      let before: unknown;
      {
        await using source = await open("source.db");
        await writeHistory(source);
        doc = await source.exportData();
        before = await revisionState(source, keys);
        const a = await source.getConfigEntry("a");
        const row = doc.config.find((c) => c.key === "a")!;
        assert.deepEqual(row.revisions, {
          version: a!.version,
          createRevision: a!.createRevision,
          modRevision: a!.modRevision,
        });
        assert.equal(doc.modules[0]!.revisions?.version, 2);
        assert.equal(doc.revision, (await source.getConfigEntry("c"))!.modRevision);
        assert.equal(doc.compactedRevision, 3);
        assert.ok(doc.changes!.some((c) => c.type === "delete" && c.key === "b"), "deletes are kept");
        if (sealed) assert.ok(doc.changes!.every((c) => c.json === undefined), "history stays sealed");
      }
      {
        // A sealed export goes into a new file keyless; the file takes its sealing.
        await using target = await StateRegistry.connect(dir.file("target.db"), { engine });
        const result = await target.importData(JSON.parse(JSON.stringify(doc)));
        assert.equal(result.revisionsRestored, true);
      }
      await using target = await open("target.db");
      assert.deepEqual(await revisionState(target, keys), before);
      assert.equal((await target.getModule("echo"))?.state, "running");
      assert.equal((await target.verify()).ok, true);
      // The next write continues from the document's revision, as it would have on the source.
      await target.setConfig("d", true);
      assert.equal((await target.getConfigEntry("d"))?.modRevision, doc.revision! + 1);
      // A compare-and-set a client saved before the export means the same after the restore.
      await target.setConfig("a", 4, { ifVersion: (await target.getConfigEntry("a"))!.version });
    },
  );
}

engineTest(
  "an import into a registry that holds data writes rows as new changes (revisions not restored)",
  async (engine) => {
    await using source = await StateRegistry.inMemory({ engine });
    await writeHistory(source);
    const doc = await source.exportData();
    await using target = await StateRegistry.inMemory({ engine });
    await target.setConfig("already", 1);
    const result = await target.importData(doc);
    assert.equal(result.revisionsRestored, false);
    assert.equal((await target.getConfigEntry("a"))?.version, 1);
    assert.equal((await target.configHistory("a")).length, 1);
    // Without the change log (history: false) rows still carry revisions, but none can be restored.
    const short = await source.exportData({ history: false });
    assert.equal(short.changes, null);
    assert.equal(short.config.find((c) => c.key === "a")?.revisions?.version, 3);
    await using empty = await StateRegistry.inMemory({ engine });
    assert.equal((await empty.importData(short)).revisionsRestored, false);
    assert.equal(await empty.getConfig("a"), 3);
  },
);

engineTest(
  "importData() restores no change log that does not end in the document's rows; a malformed one fails the import",
  async (engine) => {
    await using source = await StateRegistry.inMemory({ engine });
    await writeHistory(source);
    const good = await source.exportData();
    const disordered = structuredClone(good);
    disordered.changes!.reverse();
    await using target = await StateRegistry.inMemory({ engine });
    await assert.rejects(target.importData(disordered), /changes\[1\] .*comes after/);
    assert.equal(await target.tryGetConfig("a"), undefined);
    // Edited by hand: the row says 99, its history does not. The rows go in as new changes, and the result says why.
    const edited = structuredClone(good);
    edited.config.find((c) => c.key === "a")!.json = "99";
    const result = await target.importData(edited);
    assert.equal(result.revisionsRestored, false);
    assert.match(result.revisionsSkipped!, /config 'a' differs from its newest change \(revision \d+\)/);
    assert.equal(await target.getConfig("a"), 99);
    assert.equal((await target.getConfigEntry("a"))?.version, 1);
    assert.equal(edited.changes?.length, good.changes?.length, "the caller's document is left as it was");
    for (
      const [cut, reason] of [
        [(doc: RegistryExport) => doc.changes!.pop(), /ends at revision \d+, not the document's/],
        [(doc: RegistryExport) => doc.config.pop(), /is live in it but has no row/],
      ] as const
    ) {
      const doc = structuredClone(good);
      cut(doc);
      await using empty = await StateRegistry.inMemory({ engine });
      assert.match((await empty.importData(doc)).revisionsSkipped!, reason);
    }
  },
);

engineTest(
  "a plaintext export opens old values in the change log too; a plain registry restores that history",
  async (engine) => {
    await using dir = await tempDir();
    await using source = await StateRegistry.openEncrypted(dir.file("source.db"), SEALED_TEST_KEY, { engine });
    await source.setConfig("token", "first secret");
    await source.setConfig("token", "second secret");
    const doc = await source.exportData({ plaintext: true });
    assert.deepEqual(doc.changes!.filter((c) => c.space === "config").map((c) => c.json), [
      '"first secret"',
      '"second secret"',
    ]);
    assert.equal(doc.sealing, null);
    {
      await using keyless = await StateRegistry.connect(dir.file("source.db"), { engine });
      await assert.rejects(keyless.exportData({ plaintext: true }), CryptoError);
    }
    await using target = await StateRegistry.connect(dir.file("plain.db"), { engine });
    assert.equal((await target.importData(doc)).revisionsRestored, true);
    assert.deepEqual((await target.configHistory("token")).map((v) => [v.version, v.value]), [
      [2, "second secret"],
      [1, "first secret"],
    ]);
  },
);
