// reg.verify(): each hand-broken row is named, on both engines; a healthy registry (plain and sealed) is ok.
import assert from "node:assert/strict";
import { DecisionLog, newDecision, StateRegistry } from "@oxide/registry";
import { engineTest, OXIDE_K_SCHEMA, rawSqlite, tempDir } from "./_helpers.ts";
import { SEALED_TEST_KEY } from "./_variants.ts";

const NOW = "2026-11-28T09:15:02.123+00:00";

engineTest("verify() passes a healthy registry, plain and sealed, and counts what it checked", async (engine) => {
  await using dir = await tempDir();
  {
    await using reg = await StateRegistry.openEncrypted(dir.file("registry.db"), SEALED_TEST_KEY, { engine });
    await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "running");
    await reg.setConfig("api_token", "s3cr3t");
    await reg.setConfig("max_threads", 8);
    const log = await DecisionLog.open(reg);
    await log.log(newDecision("healer", "restart", "it crashed"));
    const report = await reg.verify();
    assert.deepEqual(report, {
      ok: true,
      checked: { modules: 1, config: 2, sealed: 2, decisions: 1 },
      sealedUnchecked: 0,
      problems: [],
    });
  }
  await using keyless = await StateRegistry.connect(dir.file("registry.db"), { engine });
  const report = await keyless.verify();
  assert.equal(report.ok, true);
  assert.equal(report.sealedUnchecked, 2);
});

engineTest("verify() names each hand-broken module, config and decision row", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine });
    await reg.upsertModule({ id: "good", name: "Good", version: "1", kind: "native" }, "loaded");
    await reg.setConfig("fine", { ok: true });
    await DecisionLog.open(reg);
  }
  const raw = rawSqlite(path);
  try {
    const module = raw.prepare(
      "INSERT INTO modules (id, name, version, kind, state, description, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    module.run("capital", "Capital", "1", '"Native"', '"loaded"', null, NOW);
    module.run("bad-time", "Bad time", "1", '"wasm"', '"running"', null, "yesterday");
    module.run(new Uint8Array([7]), "Blob id", "1", '"wasm"', '"running"', null, NOW);
    const config = raw.prepare("INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?)");
    config.run("torn", '{"url": "https://exa', NOW);
    config.run("undated", "1", "soon");
    raw.prepare(
      "INSERT INTO xai_decisions (id, timestamp, actor, action, rationale, inputs, output, confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ).run("d-1", NOW, "healer", "restart", "why", "{broken", "null", 0.5);
  } finally {
    raw.close();
  }
  await using reg = await StateRegistry.connect(path, { engine });
  const report = await reg.verify();
  assert.equal(report.ok, false);
  assert.deepEqual(
    report.problems.map((p) => [p.check, p.table, p.row]),
    [
      ["module", "modules", "bad-time"],
      ["module", "modules", "capital"],
      ["module", "modules", "rowid 4"],
      ["config", "config", "torn"],
      ["config", "config", "undated"],
      ["decision", "xai_decisions", "d-1"],
    ],
  );
  const messages = report.problems.map((p) => p.message).join("\n");
  assert.match(messages, /module 'capital' has kind '"Native"', expected one of/);
  assert.match(messages, /invalid updated_at: module 'bad-time'/);
  assert.match(messages, /updated_at is 'soon', not an RFC 3339 timestamp/);
  assert.match(messages, /inputs is not valid JSON/);
});

engineTest("verify() with the key names a tampered and an unsealed value", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.openEncrypted(path, SEALED_TEST_KEY, { engine });
    await reg.setConfig("api_token", "s3cr3t");
    await reg.setConfig("other", "fine");
  }
  const raw = rawSqlite(path);
  try {
    const stored = String(raw.prepare("SELECT value FROM config WHERE key = 'api_token'").get()!.value);
    const flipped = stored.slice(0, -2) + (stored.at(-2) === "A" ? "B" : "A") + stored.at(-1);
    raw.prepare("UPDATE config SET value = ? WHERE key = 'api_token'").run(flipped);
    raw.prepare("INSERT INTO config (key, value, updated_at) VALUES ('planted', '\"plain\"', ?)").run(NOW);
  } finally {
    raw.close();
  }
  await using reg = await StateRegistry.openEncrypted(path, SEALED_TEST_KEY, { engine });
  const report = await reg.verify();
  assert.deepEqual(report.problems.map((p) => [p.check, p.row]), [["sealed", "api_token"], ["sealed", "planted"]]);
  assert.equal(report.checked.sealed, 2);
});

engineTest("verify() reports an own table of another shape", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  const raw = rawSqlite(path);
  try {
    // oxide-k's modules table, and a config table whose value column lost its type and NOT NULL.
    raw.exec(OXIDE_K_SCHEMA.replace(/CREATE TABLE IF NOT EXISTS config[^;]*;/, ""));
    raw.exec("CREATE TABLE config (key TEXT PRIMARY KEY, value, updated_at TEXT NOT NULL)");
  } finally {
    raw.close();
  }
  await using reg = await StateRegistry.connect(path, { engine });
  const report = await reg.verify();
  assert.deepEqual(report.problems.map((p) => [p.check, p.table, p.message]), [
    ["shape", "config", "column 'config.value' is untyped, expected TEXT NOT NULL"],
  ]);
});

engineTest(
  "verify() names rows oxide-k cannot read: 1e400, a lone surrogate escape, bad JSON; keyed too",
  async (engine) => {
    await using dir = await tempDir();
    const plainPath = dir.file("plain.db");
    const sealedPath = dir.file("sealed.db");
    {
      await using plain = await StateRegistry.connect(plainPath, { engine });
      await plain.setConfig("fine", 1);
      await using sealed = await StateRegistry.openEncrypted(sealedPath, SEALED_TEST_KEY, { engine });
      await sealed.setConfig("fine", 1);
    }
    for (const path of [plainPath, sealedPath]) {
      const raw = rawSqlite(path);
      try {
        const insert = raw.prepare("INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?)");
        insert.run("inf", '{"n":1e400}', NOW);
        insert.run("lone", '"\\ud800"', NOW);
        insert.run("torn", "{oops", NOW);
      } finally {
        raw.close();
      }
    }
    {
      await using plain = await StateRegistry.connect(plainPath, { engine });
      const report = await plain.verify();
      assert.deepEqual(report.problems.map((p) => [p.check, p.row]), [
        ["config", "inf"],
        ["config", "lone"],
        ["config", "torn"],
      ]);
      const [inf, lone, torn] = report.problems.map((p) => p.message);
      assert.match(inf!, /^value: the number at \$\.n is out of range, which oxide-k cannot read$/);
      assert.match(lone!, /lone surrogate/);
      assert.match(torn!, /not valid JSON/);
    }
    await using sealed = await StateRegistry.openEncrypted(sealedPath, SEALED_TEST_KEY, { engine });
    const report = await sealed.verify();
    assert.deepEqual(report.problems.map((p) => [p.check, p.row]), [
      ["sealed", "inf"],
      ["sealed", "lone"],
      ["sealed", "torn"],
    ]);
    const [inf, lone, torn] = report.problems.map((p) => p.message);
    // Keyed: that the value is unsealed, and also what is wrong with its text.
    assert.match(inf!, /unsealed.*; its text: the number at \$\.n is out of range/);
    assert.match(lone!, /unsealed.*lone surrogate/);
    assert.match(torn!, /not valid JSON/);
  },
);

engineTest("verify() names a change-log trigger or index another program dropped", async (engine) => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  await using reg = await StateRegistry.connect(path, { engine });
  await reg.setConfig("fine", 1);
  assert.equal((await reg.verify()).ok, true);
  // As another program would, through the handle's own connection (a second one would race the test's guard).
  reg.db.exec("DROP TRIGGER oxide_config_update; DROP INDEX oxide_changes_key");
  const report = await reg.verify();
  assert.equal(report.ok, false);
  assert.deepEqual(report.problems.map((p) => [p.check, p.table]), [["shape", "config"], ["shape", "oxide_changes"]]);
  assert.match(report.problems[0]!.message, /trigger 'oxide_config_update' is missing/);
  assert.match(report.problems[1]!.message, /index 'oxide_changes_key' is missing/);
});
