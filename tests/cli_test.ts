// deno-lint-ignore-file no-control-regex -- the terminal tests look for ANSI escapes.
// The operator CLI, run as a real subprocess with the exact permissions of `deno task cli`: a transcript per command
// (plain and sealed registry, --json parsed and checked), usage and key errors (exit code and one line), verify on a
// hand-broken row, backup beside two writer processes, export then import, progress bars and colour on a terminal.
import assert from "node:assert/strict";
import { DecisionLog, newDecision, StateRegistry } from "@oxide/registry";
import { OXIDE_K_SCHEMA, rawSqlite, tempDir } from "./_helpers.ts";
import { CLI, cliCommandLine, cliFlags, type CliResult, runCli, type RunCliOptions } from "./_cli.ts";
import { Worker } from "./_subprocess.ts";
import { COMMANDS } from "../src/cli/commands.ts";
import { relativeTime } from "../src/cli/_format.ts";

const KEY = "correct horse battery staple";

/** Asserts a successful run and returns its stdout. */
function ok(result: CliResult): string {
  assert.equal(result.code, 0, `exit ${result.code}; stderr: ${result.stderr}`);
  assert.equal(result.stderr, "");
  return result.stdout;
}

/** Asserts a failed run: the exit code, nothing on stdout, one line on stderr matching `pattern`. */
function fails(result: CliResult, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, `stdout: ${result.stdout}; stderr: ${result.stderr}`);
  assert.equal(result.stdout, "");
  assert.match(result.stderr, /^oxide-registry: [^\n]+\n$/, "one line on stderr");
  assert.match(result.stderr, pattern);
}

async function writeManifest(folder: string): Promise<void> {
  await Deno.mkdir(`${folder}/echo`);
  await Deno.writeTextFile(
    `${folder}/echo/module.json`,
    JSON.stringify({ id: "echo", name: "Echo", version: "0.1.0", kind: "native", description: "Echoes pings." }),
  );
}

Deno.test("CLI transcript of every command on a plain registry, human and --json", async (t) => {
  await using dir = await tempDir();
  const cli = (...args: string[]) => runCli(dir.path, ["--db", "r.db", ...args]);
  await writeManifest(dir.path);

  await t.step("config set creates the registry", async () => {
    assert.equal(ok(await cli("config", "set", "kernel.greeting", '"Hello, agent."')), "set kernel.greeting\n");
    assert.deepEqual(
      JSON.parse(ok(await cli("config", "set", "endpoint", '{"url":"https://x","retries":3}', "--json"))),
      {
        key: "endpoint",
        set: true,
      },
    );
    ok(await cli("config", "set", "huge", "12345678901234567890"));
  });
  await t.step("config get", async () => {
    assert.equal(ok(await cli("config", "get", "kernel.greeting")), '"Hello, agent."\n');
    assert.equal(ok(await cli("config", "get", "huge")), "12345678901234567890\n"); // Exactly, beyond 2^53.
    assert.deepEqual(JSON.parse(ok(await cli("config", "get", "endpoint", "--json"))), {
      key: "endpoint",
      value: { url: "https://x", retries: 3 },
    });
  });
  await t.step("config list", async () => {
    const text = ok(await cli("config", "list"));
    assert.match(text, /^KEY +VALUE +UPDATED\n/);
    assert.match(text, /\nendpoint +\{"url":"https:\/\/x","retries":3\} +(?:just now|\d+ s ago|\d+ min ago)\n/);
    assert.match(text, /\nkernel\.greeting +"Hello, agent\." +(?:just now|\d+ s ago|\d+ min ago)\n/);
    assert.equal(ok(await cli("config", "list", "kernel.")).split("\n").length, 3); // Header, one row, end.
    const listed = JSON.parse(ok(await cli("config", "list", "--json")));
    assert.deepEqual(listed.map((e: { key: string }) => e.key), ["endpoint", "huge", "kernel.greeting"]);
    assert.deepEqual(listed[0].value, { url: "https://x", retries: 3 });
    assert.ok(!Number.isNaN(Date.parse(listed[0].updatedAt)));
  });
  await t.step("config delete", async () => {
    assert.equal(ok(await cli("config", "delete", "endpoint")), "deleted endpoint\n");
    fails(await cli("config", "delete", "endpoint"), 1, /configuration key not found: endpoint/);
    fails(await cli("config", "get", "endpoint"), 1, /configuration key not found: endpoint \(list keys with/);
  });
  await t.step("modules register, list, get, set-state, remove", async () => {
    assert.equal(ok(await cli("modules", "register", "echo")), "registered echo 0.1.0 (native), state loaded\n");
    assert.match(
      ok(await cli("modules", "list")),
      /^ID +NAME +VERSION +KIND +STATE +UPDATED\necho +Echo +0\.1\.0 +native +loaded +(?:just now|\d+ s ago|\d+ min ago)\n$/,
    );
    assert.equal(ok(await cli("modules", "set-state", "echo", "running")), "echo: running\n");
    assert.deepEqual(JSON.parse(ok(await cli("modules", "set-state", "echo", "stopped", "--json"))), {
      id: "echo",
      state: "stopped",
    });
    assert.match(
      ok(await cli("modules", "get", "echo")),
      /^id +echo\n.*\nstate +stopped\ndescription +Echoes pings\.\n/s,
    );
    const record = JSON.parse(ok(await cli("modules", "get", "echo", "--json")));
    // The record's revision data (recordVersion, createRevision, modRevision) depends on the writes before.
    const { recordVersion, createRevision, modRevision, ...fields } = record;
    assert.ok([recordVersion, createRevision, modRevision].every(Number.isSafeInteger));
    assert.deepEqual({ ...fields, updatedAt: undefined }, {
      id: "echo",
      name: "Echo",
      version: "0.1.0",
      kind: "native",
      state: "stopped",
      description: "Echoes pings.",
      updatedAt: undefined,
    });
    const listed = JSON.parse(ok(await cli("modules", "list", "--json")));
    assert.deepEqual(listed.map((m: { id: string; state: string }) => [m.id, m.state]), [["echo", "stopped"]]);
    fails(await cli("modules", "set-state", "ghost", "running"), 1, /unknown module: ghost/);
    assert.deepEqual(JSON.parse(ok(await cli("modules", "remove", "echo", "--json"))), { id: "echo", removed: true });
    fails(await cli("modules", "remove", "echo"), 1, /unknown module: echo/);
    fails(await cli("modules", "get", "echo"), 1, /unknown module: echo/);
    assert.equal(ok(await cli("modules", "list")), "no modules\n");
    ok(await cli("modules", "register", "echo/module.json"));
  });
  await t.step("info", async () => {
    const text = ok(await cli("info"));
    // The task grants no --allow-ffi: auto picks node:sqlite.
    assert.match(text, /^path +r\.db\nengine +node \(SQLite 3\.\d+\.\d+\)\nsealing +none \(plain\)\nrevision +\d+\n/);
    assert.match(text, /\nmodules +1\nconfig +2\n/);
    const info = JSON.parse(ok(await cli("info", "--json")));
    assert.equal(info.sealing, null);
    assert.equal(info.modules, 1);
    assert.equal(info.config, 2);
    assert.equal(info.fileBytes, (await Deno.stat(dir.file("r.db"))).size);
    assert.equal(JSON.parse(ok(await cli("info", "--json", "--engine", "node"))).engine, "node");
  });
  await t.step("verify", async () => {
    assert.equal(ok(await cli("verify")), "ok: 1 module(s), 2 config value(s) (0 sealed), 0 decision(s) checked\n");
    const report = JSON.parse(ok(await cli("verify", "--json")));
    assert.equal(report.ok, true);
    assert.deepEqual(report.problems, []);
  });
  await t.step("backup", async () => {
    assert.match(ok(await cli("backup", "copy.db")), /^backed up r\.db to copy\.db \(\d+ pages, [\d.]+ KiB\)\n$/);
    fails(await cli("backup", "copy.db"), 1, /copy\.db' already exists: choose another path, or overwrite it/);
    const result = JSON.parse(ok(await cli("backup", "copy.db", "--force", "--json")));
    assert.equal(result.path, "copy.db");
    assert.equal(
      ok(await runCli(dir.path, ["--db", "copy.db", "config", "get", "kernel.greeting"])),
      '"Hello, agent."\n',
    );
  });
  await t.step("export and import", async () => {
    const doc = JSON.parse(ok(await cli("export")));
    assert.equal(doc.format, "oxide-registry-export");
    assert.deepEqual(doc.config.map((c: { key: string; json: string }) => [c.key, c.json]), [
      ["huge", "12345678901234567890"],
      ["kernel.greeting", '"Hello, agent."'],
    ]);
    assert.equal(
      ok(await cli("export", "out.json")),
      "exported 1 module(s), 2 config value(s), 0 decision(s) to out.json\n",
    );
    assert.equal((await Deno.stat(dir.file("out.json"))).mode! & 0o777, 0o600);
    fails(await cli("export", "out.json"), 1, /'out\.json' already exists \(choose another file, or pass --force\)/);
    assert.deepEqual(JSON.parse(ok(await cli("export", "out.json", "--force", "--json"))), {
      path: "out.json",
      modules: 1,
      config: 2,
      decisions: 0,
    });
    const imported = await runCli(dir.path, ["--db", "new.db", "import", "out.json"]);
    assert.equal(
      ok(imported),
      "imported 1 module(s), 2 config value(s), 0 decision(s) into new.db, revisions restored\n",
    );
    const again = await runCli(dir.path, ["--db", "new.db", "import", "-", "--json"], { stdin: JSON.stringify(doc) });
    assert.deepEqual(JSON.parse(ok(again)), {
      modules: 1,
      config: 2,
      decisions: 0,
      revisionsRestored: false,
      revisionsSkipped: "this registry is not new and empty",
    });
    const short = JSON.parse(ok(await cli("export", "--no-history")));
    assert.equal(short.changes, null);
    assert.equal(short.config[0].revisions.version, 1);
    assert.match(
      ok(await runCli(dir.path, ["--db", "short.db", "import", "-"], { stdin: JSON.stringify(short) })),
      /into short\.db \(revisions not restored: the document has no change log\)\n$/,
    );
    assert.equal(ok(await runCli(dir.path, ["--db", "new.db", "config", "get", "huge"])), "12345678901234567890\n");
    await Deno.writeTextFile(dir.file("bad.json"), "{not json");
    fails(await cli("import", "bad.json"), 1, /'bad\.json' is not JSON/);
  });
  await t.step("commands that only read open the file read-only: a file oxide-k made is left as it was", async () => {
    const raw = rawSqlite(dir.file("oxide-k.db"));
    try {
      raw.exec(OXIDE_K_SCHEMA);
      raw.prepare("INSERT INTO config (key, value, updated_at) VALUES ('k', '1', '2026-01-01T00:00:00+00:00')").run();
    } finally {
      raw.close();
    }
    const digest = async () =>
      new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(dir.file("oxide-k.db")))).toHex();
    const before = await digest();
    const reads = [["info"], ["modules", "list"], ["config", "list"], ["config", "get", "k"], ["verify"], ["export"]];
    for (const args of reads) ok(await runCli(dir.path, ["--db", "oxide-k.db", ...args]));
    assert.equal(await digest(), before); // Not even migrated.
  });
  await t.step("rekey and rotate need a sealed registry", async () => {
    fails(await cli("rotate"), 1, /'r\.db' is not sealed: there is no data key to rotate/);
    fails(
      await runCli(dir.path, ["--db", "r.db", "rekey"], { env: { OXIDE_REGISTRY_NEW_KEY: "x" } }),
      1,
      /is not sealed/,
    );
  });
});

Deno.test("CLI transcript on a sealed registry: keys from the environment only, values sealed at rest", async (t) => {
  await using dir = await tempDir();
  const keyed: RunCliOptions = { env: { OXIDE_REGISTRY_KEY: KEY } };
  const cli = (args: string[], options: RunCliOptions = keyed) => runCli(dir.path, ["--db", "s.db", ...args], options);

  await t.step("config set with a key creates a sealed registry", async () => {
    ok(await cli(["config", "set", "api.token", '"s3cr3t"']));
    ok(await cli(["config", "set", "max_threads", "8"]));
    const raw = rawSqlite(dir.file("s.db"));
    try {
      const stored = raw.prepare("SELECT value FROM config WHERE key = 'api.token'").get()!.value;
      assert.match(String(stored), /^\$oxide1\$/);
    } finally {
      raw.close();
    }
  });
  await t.step("config get and list with the key", async () => {
    assert.equal(ok(await cli(["config", "get", "api.token"])), '"s3cr3t"\n');
    assert.match(ok(await cli(["config", "list"])), /\napi\.token +"s3cr3t" +(?:just now|\d+ s ago|\d+ min ago)\n/);
  });
  await t.step("config list and info without the key show it sealed", async () => {
    assert.match(
      ok(await cli(["config", "list"], { env: {} })),
      /\napi\.token +\(sealed\) +(?:just now|\d+ s ago|\d+ min ago)\n/,
    );
    const listed = JSON.parse(ok(await cli(["config", "list", "--json"], { env: {} })));
    assert.deepEqual(listed.map((e: { key: string; sealed?: boolean }) => [e.key, e.sealed]), [
      ["api.token", true],
      ["max_threads", true],
    ]);
    assert.match(
      ok(await cli(["info"], { env: {} })),
      /\nsealing +envelope, data key [\w-]+, pbkdf2-sha256 \(600000 iterations\)\n/,
    );
    const info = JSON.parse(ok(await cli(["info", "--json"], { env: {} })));
    assert.equal(info.sealing.scheme, "envelope");
    assert.equal(info.sealedValues, 2);
  });
  await t.step("verify opens every value with the key, counts them without", async () => {
    assert.equal(ok(await cli(["verify"])), "ok: 0 module(s), 2 config value(s) (2 sealed), 0 decision(s) checked\n");
    assert.match(ok(await cli(["verify"], { env: {} })), /2 sealed value\(s\) not opened: set OXIDE_REGISTRY_KEY/);
    assert.equal(JSON.parse(ok(await cli(["verify", "--json"], { env: {} }))).sealedUnchecked, 2);
  });
  await t.step("export keeps values sealed unless --plaintext", async () => {
    const sealedText = ok(await cli(["export"], { env: {} }));
    assert.doesNotMatch(sealedText, /s3cr3t/);
    assert.match(ok(await cli(["export", "--plaintext"])), /"json": "\\"s3cr3t\\""/);
    fails(await cli(["export", "--plaintext"], { env: {} }), 2, /is sealed \(envelope scheme\) and no key was given/);
    await Deno.writeTextFile(dir.file("sealed.json"), sealedText);
    ok(await runCli(dir.path, ["--db", "restored.db", "import", "sealed.json"]));
    assert.equal(
      ok(await runCli(dir.path, ["--db", "restored.db", "config", "get", "api.token"], keyed)),
      '"s3cr3t"\n',
    );
  });
  await t.step("backup copy opens with the same key", async () => {
    ok(await cli(["backup", "copy.db"], { env: {} }));
    assert.equal(ok(await runCli(dir.path, ["--db", "copy.db", "config", "get", "api.token"], keyed)), '"s3cr3t"\n');
  });
  await t.step("rotate", async () => {
    assert.match(ok(await cli(["rotate"])), /^re-sealed 2 value\(s\) under data key [\w-]+\n$/);
    assert.equal(JSON.parse(ok(await cli(["rotate", "--json"]))).resealed, 2);
  });
  await t.step("rekey: the new key from OXIDE_REGISTRY_NEW_KEY; the old one stops working", async () => {
    const env = { OXIDE_REGISTRY_KEY: KEY, OXIDE_REGISTRY_NEW_KEY: "new passphrase" };
    assert.equal(ok(await cli(["rekey"], { env })), "rekeyed s.db: open it with the new key from now on\n");
    fails(await cli(["config", "get", "api.token"]), 1, /wrong key: .* \(check OXIDE_REGISTRY_KEY\)/);
    const next = { env: { OXIDE_REGISTRY_KEY: "new passphrase" } };
    assert.equal(ok(await cli(["config", "get", "api.token"], next)), '"s3cr3t"\n');
    fails(await cli(["rekey"], next), 2, /no new key was given \(set OXIDE_REGISTRY_NEW_KEY/);
  });
});

Deno.test("CLI usage errors, unknown commands, missing and wrong keys: exit code and one line on stderr", async (t) => {
  await using dir = await tempDir();
  ok(await runCli(dir.path, ["--db", "s.db", "config", "set", "k", "1"], { env: { OXIDE_REGISTRY_KEY: KEY } }));
  ok(await runCli(dir.path, ["--db", "p.db", "config", "set", "k", "1"]));
  const cases: [string, string[], Record<string, string>, number, RegExp][] = [
    ["unknown command", ["frobnicate"], {}, 2, /unknown command 'frobnicate' \(`oxide-registry --help` lists the/],
    ["unknown verb", ["config", "frob"], {}, 2, /unknown command 'config frob' \(`oxide-registry config --help` lists/],
    [
      "a value that starts with '-'",
      ["config", "set", "n", "-5"],
      {},
      2,
      /unknown option '-5' \(to pass a value starting with '-', put `--` before it: .*-- -5`\)/,
    ],
    // Every value the registry refuses is a usage error, found before the file is opened.
    ["a number out of range", ["config", "set", "n", "1e400"], {}, 2, /"1e400" cannot be stored: Infinity/],
    [
      "an integer oxide-k cannot read",
      ["config", "set", "n", "123456789012345678901234567890"],
      {},
      2,
      /cannot be stored: bigint .* outside i64::MIN to u64::MAX/,
    ],
    ["a lone surrogate", ["config", "set", "n", '"\\ud800"'], {}, 2, /cannot be stored: .*lone surrogate/],
    ["missing argument", ["config", "get"], {}, 2, /'config get' needs KEY \(see `oxide-registry config get --help`\)/],
    ["too many arguments", ["info", "extra"], {}, 2, /'info' takes no arguments, got 1/],
    ["unknown option", ["config", "list", "--nope"], {}, 2, /unknown option '--nope'/],
    ["option of another command", ["info", "--force"], {}, 2, /unknown option '--force'/],
    ["bad engine", ["info", "--engine", "sqlite"], {}, 2, /--engine must be auto, ffi or node, got 'sqlite'/],
    [
      "value that is not JSON",
      ["config", "set", "k", "hello"],
      {},
      2,
      /is not JSON.*quote text as JSON, e\.g\. '"hello"'/,
    ],
    [
      "bad state",
      ["modules", "set-state", "x", "jumping"],
      {},
      2,
      /'jumping' is not a module state \(use one of loaded/,
    ],
    ["missing registry", ["--db", "none.db", "info"], {}, 1, /no registry at 'none\.db' \(pass --db PATH/],
    [
      "missing key",
      ["--db", "s.db", "config", "get", "k"],
      {},
      2,
      /'s\.db' is sealed \(envelope scheme\) and no key was given \(set OXIDE_REGISTRY_KEY/,
    ],
    ["wrong key", ["--db", "s.db", "config", "get", "k"], { OXIDE_REGISTRY_KEY: "wrong" }, 1, /wrong key/],
    ["bad scheme", ["info", "--scheme", "rot13"], {}, 2, /--scheme must be envelope or oxide-k, got 'rot13'/],
    ["missing config key", ["--db", "p.db", "config", "get", "nope"], {}, 1, /configuration key not found: nope/],
  ];
  for (const [name, args, env, code, pattern] of cases) {
    await t.step(name, async () => fails(await runCli(dir.path, ["--db", "p.db", ...args], { env }), code, pattern));
  }
  await t.step("--json errors are one JSON line on stderr", async () => {
    const result = await runCli(dir.path, ["--db", "p.db", "config", "get", "nope", "--json"]);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    const line = result.stderr.trimEnd();
    assert.ok(!line.includes("\n"));
    assert.deepEqual(JSON.parse(line).error.kind, "config_not_found");
  });
  await t.step("no command prints the overview and exits 2", async () => {
    const result = await runCli(dir.path, []);
    assert.equal(result.code, 2);
    assert.match(result.stdout, /^oxide-registry \d+\.\d+\.\d+: inspect and repair/);
  });
  await t.step("a noun alone lists its commands and exits 2", async () => {
    const result = await runCli(dir.path, ["config"]);
    assert.equal(result.code, 2);
    const commands = [...result.stdout.matchAll(/^ {2}(\w+ [\w-]+)/gm)].map((m) => m[1]);
    assert.deepEqual(commands, ["config list", "config get", "config history", "config set", "config delete"]);
  });
  await t.step("--db without a value is one usage line", async () => {
    for (const args of [["--db"], ["info", "--db"], ["--db", "--engine", "node", "info"]]) {
      fails(await runCli(dir.path, args), 2, /option '--db' needs a value/);
    }
  });
  await t.step("nothing was written for a refused value", async () => {
    fails(await runCli(dir.path, ["--db", "new.db", "config", "set", "n", "1e400"]), 2, /cannot be stored/);
    await assert.rejects(Deno.stat(dir.file("new.db")), Deno.errors.NotFound);
  });
});

Deno.test("CLI --help on every command, and --version", async (t) => {
  await using dir = await tempDir();
  for (const command of COMMANDS) {
    await t.step(command.name.join(" "), async () => {
      const text = ok(await runCli(dir.path, [...command.name, "--help"]));
      assert.ok(text.startsWith(`Usage: oxide-registry ${[...command.name, ...command.args].join(" ")} [options]\n`));
      assert.match(text, /--json +machine-readable output/);
    });
  }
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert.equal(ok(await runCli(dir.path, ["--version"])), `oxide-registry ${denoJson.version}\n`);
  assert.match(ok(await runCli(dir.path, ["--help"])), /\n {2}rotate /);
});

Deno.test("CLI verify on a hand-broken row names the row and exits 1", async () => {
  await using dir = await tempDir();
  ok(await runCli(dir.path, ["--db", "r.db", "config", "set", "fine", "1"]));
  const raw = rawSqlite(dir.file("r.db"));
  try {
    raw.prepare(
      "INSERT INTO modules (id, name, version, kind, state, description, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
      .run("broken", "Broken", "1", '"Native"', '"loaded"', null, "2026-01-01T00:00:00+00:00");
  } finally {
    raw.close();
  }
  const result = await runCli(dir.path, ["--db", "r.db", "verify"]);
  assert.equal(result.code, 1);
  assert.match(
    result.stdout,
    /^CHECK +TABLE +ROW +PROBLEM\nmodule +modules +broken +serialization error: module 'broken' has kind '"Native"'/,
  );
  assert.match(result.stdout, /\n1 problem\(s\) in 1 module\(s\), 1 config value\(s\)/);
  const report = JSON.parse((await runCli(dir.path, ["--db", "r.db", "verify", "--json"])).stdout);
  assert.deepEqual(report.problems.map((p: { table: string; row: string }) => [p.table, p.row]), [[
    "modules",
    "broken",
  ]]);
  // And modules list, which cannot read it, marks it and says what to run.
  const list = await runCli(dir.path, ["--db", "r.db", "modules", "list"]);
  assert.equal(list.code, 1);
  assert.match(list.stdout, /\nbroken +\(unreadable: .*module 'broken' has kind/);
  assert.match(list.stderr, /^oxide-registry: 1 module row\(s\) cannot be read \(`oxide-registry verify` lists/);
});

Deno.test("CLI backup while two writer processes keep writing: the copy opens, verifies, holds every acknowledged write", async () => {
  await using dir = await tempDir();
  const path = dir.file("registry.db");
  {
    await using reg = await StateRegistry.connect(path, { engine: "ffi" });
    await reg.setConfig("bulk", "x".repeat(2_000_000));
  }
  const spawn = (writer: number) =>
    new Worker("writer.ts", [JSON.stringify({ path, engine: "ffi", variant: "plain", writer, writes: 100_000 })], {
      folders: [dir.path],
    });
  await using first = spawn(0);
  await using second = spawn(1);
  const workers = [first, second];
  for (const worker of workers) assert.equal(await worker.nextLine(), '"ready"');
  await Promise.all(workers.map((worker) => worker.send("go\n")));
  const acks: { table: string; key: string; seq: number }[][] = [[], []];
  let stop = false;
  const readers = workers.map(async (worker, writer) => {
    while (!stop) {
      const line = await worker.nextLine();
      if (line === undefined) return;
      const parsed = JSON.parse(line);
      assert.equal(parsed.error, undefined, line);
      if (parsed.ack !== undefined) acks[writer]!.push(parsed.ack);
    }
  });
  while (acks[0]!.length < 30 || acks[1]!.length < 30) await new Promise((resolve) => setTimeout(resolve, 5));
  const before = acks.map((list) => [...list]);
  const backup = await runCli(dir.path, ["--db", path, "backup", dir.file("copy.db"), "--json"]);
  const counts = acks.map((list) => list.length);
  while (acks[0]!.length <= counts[0]! || acks[1]!.length <= counts[1]!) {
    await new Promise((resolve) => setTimeout(resolve, 5)); // Both still writing after the backup.
  }
  stop = true;
  for (const worker of workers) worker.child.kill("SIGKILL");
  await Promise.all(readers);
  assert.equal(JSON.parse(ok(backup)).path, dir.file("copy.db"));

  assert.match(ok(await runCli(dir.path, ["--db", "copy.db", "verify"])), /^ok: /);
  await using copy = await StateRegistry.connect(dir.file("copy.db"));
  for (const [writer, list] of before.entries()) {
    const latest = new Map(list.map((ack) => [`${ack.table}:${ack.key}`, ack]));
    for (const ack of latest.values()) {
      if (ack.table === "config" && ack.key.startsWith("own.")) {
        const value = await copy.getConfig<{ writer: number; seq: number }>(ack.key);
        assert.equal(value.writer, writer);
        assert.ok(value.seq >= ack.seq, `${ack.key}: copy has ${value.seq}, acknowledged ${ack.seq}`);
      } else if (ack.table === "config") {
        assert.notEqual(await copy.tryGetConfig(ack.key), undefined, ack.key);
      } else {
        const record = await copy.getModule(ack.key);
        assert.ok(record !== undefined, ack.key);
        if (ack.key.startsWith("own-")) assert.ok(Number(record.version) >= ack.seq, ack.key);
      }
    }
  }
});

Deno.test("CLI export then import into a new file gives the same modules, config and decisions (sealed: same plaintext)", async () => {
  await using dir = await tempDir();
  {
    await using reg = await StateRegistry.openEncrypted(dir.file("source.db"), KEY);
    await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "running");
    await reg.setConfig("api.token", "s3cr3t");
    await reg.setConfig("endpoint", { url: "https://example.com" });
    const log = await DecisionLog.open(reg);
    await log.log(newDecision("healer", "restart", "it crashed", { confidence: 0.85 }));
  }
  const keyed = { env: { OXIDE_REGISTRY_KEY: KEY } };
  for (const [file, flags] of [["sealed.json", []], ["plain.json", ["--plaintext"]]] as const) {
    ok(await runCli(dir.path, ["--db", "source.db", "export", file, ...flags], keyed));
    const target = `from-${file}.db`;
    assert.match(
      ok(await runCli(dir.path, ["--db", target, "import", file], keyed)),
      file === "sealed.json" ? /1 decision\(s\) into .*, revisions restored/ : /not restored: plain values are sealed/,
    );
    await using source = await StateRegistry.openEncrypted(dir.file("source.db"), KEY);
    await using copy = await StateRegistry.openEncrypted(dir.file(target), KEY);
    assert.deepEqual(await copy.listModules(), await source.listModules());
    for (const key of ["api.token", "endpoint"]) {
      assert.deepEqual(await copy.getConfig(key), await source.getConfig(key));
      // Restored from a sealed export: versions and revisions too.
      if (file === "sealed.json") assert.deepEqual(await copy.getConfigEntry(key), await source.getConfigEntry(key));
    }
    assert.deepEqual(
      await (await DecisionLog.open(copy)).recent(10),
      await (await DecisionLog.open(source)).recent(10),
    );
  }
});

/** `script` (util-linux) gives the CLI a pseudo-terminal; without it the terminal tests cannot run. */
async function haveScript(): Promise<boolean> {
  try {
    return (await new Deno.Command("script", { args: ["--version"], stdout: "null", stderr: "null" }).output()).success;
  } catch {
    if (Deno.env.get("CI") === "true") throw new Error("`script` (util-linux) is needed on CI for the terminal tests");
    return false;
  }
}

async function onTerminal(folder: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const output = await new Deno.Command("script", {
    // The colour checks decide NO_COLOR themselves: an inherited one (CI sets it) is removed unless asked for.
    args: ["-qec", `${"NO_COLOR" in env ? "" : "env -u NO_COLOR "}${cliCommandLine(folder, args)}`, "/dev/null"],
    cwd: folder,
    env: { TERM: "xterm", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, text);
  return text;
}

Deno.test("CLI progress bars are drawn on a terminal and absent when piped; colour only on a terminal without NO_COLOR", async (t) => {
  if (!await haveScript()) {
    console.log("skipped: `script` (util-linux) is not installed");
    return;
  }
  await using dir = await tempDir();
  {
    await using reg = await StateRegistry.connect(dir.file("r.db"));
    await reg.setConfig("bulk", "x".repeat(3_000_000)); // Several backup steps.
    for (let i = 0; i < 50; i++) await reg.setConfig(`k.${i}`, i);
    await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "running");
  }
  await t.step("backup", async () => {
    const shown = await onTerminal(dir.path, ["--db", "r.db", "backup", "tty.db"]);
    assert.match(shown, /backup [█░]{30} \d+% \(\d+\/\d+ pages\)/);
    assert.match(shown, /backup █{30} 100% /);
    const piped = await runCli(dir.path, ["--db", "r.db", "backup", "piped.db"]);
    assert.doesNotMatch(piped.stdout + piped.stderr, /█|░|\x1b/);
  });
  await t.step("export", async () => {
    assert.match(
      await onTerminal(dir.path, ["--db", "r.db", "export", "tty.json"]),
      /export █{30} 100% \(\d+\/\d+ rows\)/,
    );
    const piped = await runCli(dir.path, ["--db", "r.db", "export", "piped.json"]);
    assert.doesNotMatch(piped.stderr, /█/);
  });
  await t.step("import", async () => {
    assert.match(await onTerminal(dir.path, ["--db", "new.db", "import", "tty.json"]), /import █{30} 100%/);
  });
  await t.step("colour", async () => {
    assert.match(
      await onTerminal(dir.path, ["--db", "r.db", "modules", "list"]),
      /\x1b\[1mID +NAME.*\x1b\[32mrunning\x1b\[39m/s,
    );
    assert.doesNotMatch(await onTerminal(dir.path, ["--db", "r.db", "modules", "list"], { NO_COLOR: "1" }), /\x1b\[/);
    assert.doesNotMatch(ok(await runCli(dir.path, ["--db", "r.db", "modules", "list"])), /\x1b\[/);
  });
});

Deno.test("CLI rotate and rekey draw a progress bar on a terminal and none when piped", async (t) => {
  if (!await haveScript()) {
    console.log("skipped: `script` (util-linux) is not installed");
    return;
  }
  await using dir = await tempDir();
  {
    await using envelope = await StateRegistry.openEncrypted(dir.file("e.db"), KEY);
    await using oxideK = await StateRegistry.openEncrypted(dir.file("k.db"), KEY, { scheme: "oxide-k" });
    for (let i = 0; i < 30; i++) {
      await envelope.setConfig(`k.${i}`, i);
      await oxideK.setConfig(`k.${i}`, i);
    }
  }
  const keyed = { OXIDE_REGISTRY_KEY: KEY };
  await t.step("rotate", async () => {
    const shown = await onTerminal(dir.path, ["--db", "e.db", "rotate"], keyed);
    assert.match(shown, /rotate ░{30} 0% \(0\/60 values\)/);
    assert.match(shown, /rotate █{30} 100% \(60\/60 values\)/);
    assert.match(shown, /re-sealed 30 value\(s\) under data key/);
    const piped = await runCli(dir.path, ["--db", "e.db", "rotate"], { env: keyed });
    assert.match(ok(piped), /^re-sealed 30 value\(s\)/);
    assert.doesNotMatch(piped.stdout + piped.stderr, /█|░|\x1b/);
  });
  await t.step("rekey (oxide-k scheme: every value re-sealed)", async () => {
    const opened = ["--db", "k.db", "--scheme", "oxide-k", "rekey"];
    const shown = await onTerminal(dir.path, opened, { ...keyed, OXIDE_REGISTRY_NEW_KEY: "second key" });
    assert.match(shown, /rekey █{30} 100% \(60\/60 values\)/);
    assert.match(shown, /rekeyed k\.db: open it with the new key/);
    const piped = await runCli(dir.path, opened, {
      env: { OXIDE_REGISTRY_KEY: "second key", OXIDE_REGISTRY_NEW_KEY: "third key" },
    });
    assert.match(ok(piped), /^rekeyed k\.db/);
    assert.doesNotMatch(piped.stdout + piped.stderr, /█|░|\x1b/);
  });
});

Deno.test("relative times read as people say them", () => {
  const now = new Date("2026-12-01T12:00:00Z");
  const ago = (seconds: number) => relativeTime(new Date(now.getTime() - seconds * 1000), now);
  assert.deepEqual([ago(2), ago(42), ago(180), ago(5 * 3600), ago(86_400), ago(2 * 86_400), ago(-180)], [
    "just now",
    "42 s ago",
    "3 min ago",
    "5 h ago",
    "1 day ago",
    "2 days ago",
    "in 3 min",
  ]);
  assert.equal(ago(400 * 86_400), "2025-10-27");
});

Deno.test("config history: a table newest first, --json, --limit, a missing key", async () => {
  await using dir = await tempDir();
  const cli = (...args: string[]) => runCli(dir.path, ["--db", "r.db", ...args]);
  ok(await cli("config", "set", "log.level", '"info"'));
  ok(await cli("config", "set", "log.level", '"debug"'));
  ok(await cli("config", "set", "other", "1"));
  ok(await cli("config", "set", "log.level", '"trace"'));
  const text = ok(await cli("config", "history", "log.level"));
  assert.match(
    text,
    /^VERSION +REVISION +UPDATED +VALUE\n3 +4 +(?:just now|\d+ s ago|\d+ min ago) +"trace"\n2 +2 +\S.* +"debug"\n1 +1 +\S.* +"info"\n$/,
  );
  const versions = JSON.parse(ok(await cli("config", "history", "log.level", "--json")));
  assert.deepEqual(
    versions.map((v: { version: number; revision: number; value: unknown }) => [v.version, v.revision, v.value]),
    [[3, 4, "trace"], [2, 2, "debug"], [1, 1, "info"]],
  );
  assert.ok(
    versions.every((v: { key: string; updatedAt: string }) =>
      v.key === "log.level" && !Number.isNaN(Date.parse(v.updatedAt))
    ),
  );
  const limited = JSON.parse(ok(await cli("config", "history", "log.level", "--limit", "1", "--json")));
  assert.deepEqual(limited.map((v: { value: unknown }) => v.value), ["trace"]);
  fails(await cli("config", "history", "ghost"), 1, /configuration key not found: ghost/);
  fails(await cli("config", "history", "log.level", "--limit", "x"), 2, /--limit must be a non-negative integer/);
});

/** Starts `watch` as a subprocess with the task's permissions; reads its stdout line by line. */
/**
 * How long a watch test waits for a line or an exit before it kills the watch and fails: a hang fails the test
 * instead of hanging CI. Generous: it only bounds a bug, it measures nothing.
 */
const WATCHDOG_MS = 60_000;

function startWatch(folder: string, args: string[], env: Record<string, string> = {}, watchdogMs = WATCHDOG_MS) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...cliFlags(folder), CLI, "--db", "r.db", "watch", ...args],
    cwd: folder,
    env: {
      ...env,
      ...Object.fromEntries(["HOME", "DENO_DIR", "PATH"].flatMap((name) => {
        const value = Deno.env.get(name);
        return value === undefined ? [] : [[name, value]];
      })),
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = new Response(child.stderr).text();
  let buffered = "";
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  };
  const guarded = async <T>(what: string, promise: Promise<T>): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        kill();
        reject(new Error(`watchdog: the watch ${what} within ${watchdogMs / 1000} s; it was killed`));
      }, watchdogMs);
    });
    try {
      return await Promise.race([promise, watchdog]);
    } finally {
      clearTimeout(timer);
    }
  };
  const read = async (): Promise<string | undefined> => {
    while (!buffered.includes("\n")) {
      const next = await reader.read();
      if (next.done) return undefined;
      buffered += next.value;
    }
    const end = buffered.indexOf("\n");
    const text = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    return text;
  };
  const line = (): Promise<string | undefined> => guarded("printed no line", read());
  return {
    child,
    line,
    /** Kills the watch (a test that failed midway); safe when it already ended. */
    kill,
    /** Waits for the exit; returns the code, stderr and the lines not read yet. */
    finish(): Promise<{ code: number; stderr: string; rest: string[] }> {
      return guarded(
        "did not exit",
        (async () => {
          const rest: string[] = [];
          for (let text = await read(); text !== undefined; text = await read()) rest.push(text);
          return { code: (await child.status).code, stderr: await stderr, rest };
        })(),
      );
    },
  };
}

/** Runs `body` on a started watch, then ends it with SIGINT and checks it exits cleanly; kills it if `body` throws. */
async function watching(watch: ReturnType<typeof startWatch>, body: () => Promise<void>): Promise<void> {
  let ended = false;
  try {
    await body();
    watch.child.kill("SIGINT");
    const end = await watch.finish();
    ended = true;
    assert.deepEqual(end, { code: 0, stderr: "", rest: [] });
  } finally {
    if (!ended) {
      watch.kill();
      await watch.finish().catch(() => {});
    }
  }
}

Deno.test("watch: a subprocess prints each write as one JSON line, resumes with --from, ends cleanly on SIGINT", async () => {
  await using dir = await tempDir();
  const cli = (...args: string[]) => runCli(dir.path, ["--db", "r.db", ...args]);
  ok(await cli("config", "set", "kernel.greeting", '"Hello"'));
  const watch = startWatch(dir.path, ["kernel.", "--json", "--from", "1"]);
  await watching(watch, async () => {
    // --from 1 replays the first write; then the watch follows writes made here, in this process.
    const first = JSON.parse((await watch.line())!);
    assert.deepEqual({ ...first, updatedAt: undefined }, {
      space: "config",
      type: "put",
      key: "kernel.greeting",
      revision: 1,
      version: 1,
      value: "Hello",
      updatedAt: undefined,
    });
    assert.ok(!Number.isNaN(Date.parse(first.updatedAt)));
    {
      await using reg = await StateRegistry.connect(`${dir.path}/r.db`);
      await reg.setConfig("other", 1); // Not under the prefix.
      await reg.setConfig("kernel.greeting", "Hello, agent.");
      await reg.deleteConfig("kernel.greeting");
    }
    const put = JSON.parse((await watch.line())!);
    assert.deepEqual([put.type, put.key, put.revision, put.version, put.value], [
      "put",
      "kernel.greeting",
      3,
      2,
      "Hello, agent.",
    ]);
    assert.deepEqual(JSON.parse((await watch.line())!), {
      space: "config",
      type: "delete",
      key: "kernel.greeting",
      revision: 4,
      version: 0,
      updatedAt: null,
    });
  });
});

Deno.test("watch: human lines, and a compacted --from exits 1 with the CompactedError message", async () => {
  await using dir = await tempDir();
  const cli = (...args: string[]) => runCli(dir.path, ["--db", "r.db", ...args]);
  for (const n of [1, 2, 3, 4]) ok(await cli("config", "set", "n", String(n)));
  {
    await using reg = await StateRegistry.connect(`${dir.path}/r.db`);
    await reg.compact(3);
  }
  const compacted = await cli("watch", "--from", "2");
  fails(compacted, 1, /^oxide-registry: required revision 2 has been compacted: the oldest available revision is 3\n$/);
  fails(await cli("watch", "--from", "0"), 2, /--from must be a positive integer revision/);

  const watch = startWatch(dir.path, ["--from", "3"]);
  await watching(watch, async () => {
    assert.equal(await watch.line(), "3 put config n 3");
    assert.equal(await watch.line(), "4 put config n 4");
  });
});

Deno.test("CLI permissions: the cli task has no --allow-ffi and runs every command on node:sqlite; cli:ffi opts in", async (t) => {
  await using dir = await tempDir();
  await t.step("the task's exact flags", () => {
    assert.deepEqual(cliFlags("./data"), [
      "--allow-read=./data",
      "--allow-write=./data",
      "--allow-env=OXIDE_REGISTRY_KEY,OXIDE_REGISTRY_NEW_KEY,OXIDE_REGISTRY_PATH,NO_COLOR",
    ]);
  });
  ok(await runCli(dir.path, ["--db", "r.db", "config", "set", "k", "1"]));
  await t.step("auto picks node; backup, export and verify need nothing more", async () => {
    assert.equal(JSON.parse(ok(await runCli(dir.path, ["--db", "r.db", "info", "--json"]))).engine, "node");
    assert.match(ok(await runCli(dir.path, ["--db", "r.db", "backup", "copy.db"])), /^backed up r\.db to copy\.db/);
    assert.equal(JSON.parse(ok(await runCli(dir.path, ["--db", "copy.db", "verify", "--json"]))).ok, true);
  });
  await t.step("--engine ffi without --allow-ffi fails naming the flag", async () => {
    fails(await runCli(dir.path, ["--db", "r.db", "--engine", "ffi", "info"]), 1, /--allow-ffi/);
  });
  await t.step("cli:ffi grants it and runs the ffi engine", async () => {
    const info = JSON.parse(ok(await runCli(dir.path, ["--db", "r.db", "info", "--json"], { task: "cli:ffi" })));
    assert.equal(info.engine, "ffi");
  });
  await t.step("a file outside the granted folder is refused with the flag named", async () => {
    const outside = await Deno.makeTempDir();
    try {
      fails(await runCli(dir.path, ["--db", `${outside}/x.db`, "config", "set", "k", "1"]), 1, /--allow-(read|write)/);
    } finally {
      await Deno.remove(outside, { recursive: true });
    }
  });
});

/** Every control character in `text` but newlines (what a terminal would act on). */
function controls(text: string): string[] {
  return [...text.matchAll(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g)].map((m) => m[0]);
}

Deno.test("CLI escapes control characters from the file in every human line (no terminal escape injection)", async (t) => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  const evil = "evil\x1b[31mRED\x1b]0;pwned\x07\u009b2J\u202e";
  {
    await using reg = await StateRegistry.connect(path);
    await reg.upsertModule({ id: evil, name: `x${evil}`, version: evil, kind: "native", description: evil }, "loaded");
    await reg.setConfig(evil, `value ${evil}`);
    await reg.setConfig(evil, { nested: evil });
  }
  const raw = rawSqlite(path);
  try {
    raw.prepare("INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?)")
      .run(`bad${evil}`, `{oops${evil}`, "2026-11-28T09:15:02.123+00:00");
  } finally {
    raw.close();
  }
  const runs: [string, string[]][] = [
    ["modules list", ["modules", "list"]],
    ["modules get", ["modules", "get", evil]],
    ["config list", ["config", "list"]],
    ["config history", ["config", "history", evil]],
    ["config get", ["config", "get", evil]],
    ["verify", ["verify"]],
    ["an error naming the key", ["config", "get", `bad${evil}`]],
    ["an error quoting the argument", ["modules", "get", `no${evil}`]],
  ];
  for (const [name, args] of runs) {
    await t.step(name, async () => {
      const result = await runCli(dir.path, ["--db", "r.db", ...args]);
      assert.deepEqual(controls(result.stdout), [], result.stdout);
      assert.deepEqual(controls(result.stderr), [], result.stderr);
      assert.match(result.stdout + result.stderr, /\\x1b|\\u001b/, "shown escaped");
    });
  }
  await t.step("--json output means the same value, escaped", async () => {
    const result = await runCli(dir.path, ["--db", "r.db", "config", "get", evil, "--json"]);
    assert.deepEqual(controls(result.stdout), []);
    assert.deepEqual(JSON.parse(result.stdout), { key: evil, value: { nested: evil } });
  });
});

Deno.test("CLI config list and modules list mark rows that cannot be read, list the rest, and exit 1 with the verify hint", async () => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  {
    await using reg = await StateRegistry.connect(path);
    await reg.setConfig("a.good", 1);
    await reg.setConfig("z.good", 2);
    await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "loaded");
  }
  const raw = rawSqlite(path);
  try {
    raw.prepare("INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?)")
      .run("m.bad", "{oops", "2026-11-28T09:15:02.123+00:00");
    raw.prepare(
      "INSERT INTO modules (id, name, version, kind, state, description, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    ).run("broken", "Broken", "1", '"Native"', '"loaded"', null, "2026-11-28T09:15:02.123+00:00");
  } finally {
    raw.close();
  }
  const list = await runCli(dir.path, ["--db", "r.db", "config", "list"]);
  assert.equal(list.code, 1);
  assert.match(
    list.stdout,
    /^KEY +VALUE +UPDATED\na\.good +1 .*\nm\.bad +\(unreadable: .*not valid JSON.*\) +\d+ days ago\nz\.good +2 /,
  );
  assert.equal(
    list.stderr,
    "oxide-registry: 1 config value(s) cannot be read (`oxide-registry verify` lists every bad row)\n",
  );
  const json = await runCli(dir.path, ["--db", "r.db", "config", "list", "--json"]);
  assert.equal(json.code, 1);
  const entries = JSON.parse(json.stdout);
  assert.deepEqual(entries.map((e: { key: string }) => e.key), ["a.good", "m.bad", "z.good"]);
  assert.match(entries[1].error, /not valid JSON/);
  assert.equal(JSON.parse(json.stderr).error.kind, "serde");
  const modules = await runCli(dir.path, ["--db", "r.db", "modules", "list"]);
  assert.equal(modules.code, 1);
  assert.match(modules.stdout, /\nbroken +\(unreadable: .*Native.*\)\s*\necho +Echo +0\.1\.0 +native +loaded/);
  assert.match(modules.stderr, /1 module row\(s\) cannot be read \(`oxide-registry verify` lists every bad row\)/);
});

Deno.test("CLI verify on a file whose change-log trigger was dropped names it and exits 1", async () => {
  await using dir = await tempDir();
  const path = dir.file("r.db");
  {
    await using reg = await StateRegistry.connect(path);
    await reg.setConfig("k", 1);
  }
  const raw = rawSqlite(path);
  try {
    raw.exec("DROP TRIGGER oxide_config_update");
  } finally {
    raw.close();
  }
  fails(await runCli(dir.path, ["--db", "r.db", "verify"]), 1, /trigger\(s\) or index oxide_config_update are missing/);
});

Deno.test("watch on a sealed registry: values opened with the key, (sealed) without it", async () => {
  await using dir = await tempDir();
  {
    await using reg = await StateRegistry.openEncrypted(dir.file("r.db"), KEY);
    await reg.setConfig("api.token", "s3cr3t");
  }
  for (const keyed of [true, false]) {
    const watch = startWatch(
      dir.path,
      ["--from", "1", ...(keyed ? ["--json"] : [])],
      keyed ? { OXIDE_REGISTRY_KEY: KEY } : {},
    );
    await watching(watch, async () => {
      const first = await watch.line();
      if (keyed) {
        const event = JSON.parse(first!);
        assert.deepEqual([event.type, event.key, event.value], ["put", "api.token", "s3cr3t"]);
      } else {
        assert.equal(first, "1 put config api.token (sealed)");
        assert.equal(await watch.line(), "2 put config api.token (sealed)"); // The keyed round's write.
      }
      {
        await using reg = await StateRegistry.openEncrypted(dir.file("r.db"), KEY);
        await reg.setConfig("api.token", keyed ? "rotated" : "again");
      }
      const second = await watch.line();
      if (keyed) assert.equal(JSON.parse(second!).value, "rotated");
      else assert.equal(second, "3 put config api.token (sealed)");
    });
  }
});

Deno.test("the watch tests' watchdog kills a watch that prints nothing and fails instead of hanging", async () => {
  await using dir = await tempDir();
  ok(await runCli(dir.path, ["--db", "r.db", "config", "set", "k", "1"]));
  // Nothing will ever be printed; a short watchdog (no timing is asserted: only that the guard ends the wait).
  const watch = startWatch(dir.path, ["nothing.under.this."], {}, 1_000);
  await assert.rejects(watch.line(), /watchdog: the watch printed no line within 1 s; it was killed/);
  const end = await watch.finish();
  assert.notEqual(end.code, 0, "killed");
});

Deno.test("CLI --scheme oxide-k opens a registry shared with a Rust kernel; without it the CLI refuses, naming the option", async () => {
  await using dir = await tempDir();
  {
    await using reg = await StateRegistry.openEncrypted(dir.file("r.db"), KEY, { scheme: "oxide-k" });
    await reg.setConfig("api.token", "s3cr3t");
  }
  const env = { env: { OXIDE_REGISTRY_KEY: KEY } };
  fails(
    await runCli(dir.path, ["--db", "r.db", "config", "get", "api.token"], env),
    1,
    /oxide-k scheme.*\(a registry shared with a Rust oxide-k kernel is opened with --scheme oxide-k\)/,
  );
  const opened = ["--db", "r.db", "--scheme", "oxide-k"];
  assert.equal(ok(await runCli(dir.path, [...opened, "config", "get", "api.token"], env)), '"s3cr3t"\n');
  const rekeyed = await runCli(dir.path, [...opened, "rekey"], {
    env: { OXIDE_REGISTRY_KEY: KEY, OXIDE_REGISTRY_NEW_KEY: "another passphrase" },
  });
  assert.equal(ok(rekeyed), "rekeyed r.db: open it with the new key from now on\n");
  const next = { env: { OXIDE_REGISTRY_KEY: "another passphrase" } };
  assert.equal(ok(await runCli(dir.path, [...opened, "config", "get", "api.token"], next)), '"s3cr3t"\n');
});
