// The permission-scoped examples: each `deno task` runs with exactly the flags deno.json gives it, in a fresh folder,
// and does its job; with one of those flags removed it fails with an error naming the missing permission, before
// writing its registry file.
import assert from "node:assert/strict";
import { runDeno, tempDir } from "./_helpers.ts";

const ROOT = new URL("../", import.meta.url);
const TASKS: Record<string, string> = Object.fromEntries(
  Object.entries(
    JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks as Record<string, { command: string }>,
  ).map(([name, task]) => [name, task.command]),
);

/** What one example task must do. */
interface ExampleSpec {
  /** The task's name in deno.json. */
  task: string;
  /** Its permission flags, exactly: the test fails when deno.json grants more or less. */
  flags: string[];
  /** The registry file it writes, relative to its working folder. */
  file: string;
  /** Environment variables it is given (besides what Deno itself needs). */
  env?: Record<string, string>;
  /** What the first run prints. */
  output: RegExp[];
  /** What a second run in the same folder prints: it found the first run's state. */
  again: RegExp[];
  /** Flags whose removal must fail, and the error each must give. */
  required: Record<string, RegExp>;
  /** Flags whose removal must not fail, and what the run prints instead (e.g. auto picks the node engine). */
  optional?: Record<string, RegExp>;
}

/** The ffi engine's message for a permission it checks itself (libsqlite3 opens files outside Deno's checks). */
function ffiNeeds(access: "read" | "write", path: string): RegExp {
  return new RegExp(`the "ffi" engine needs --allow-${access} for '${RegExp.escape(path)}'`);
}

/** Deno's own message for a missing permission. */
function notCapable(access: "read" | "write" | "env", what: string): RegExp {
  return new RegExp(`Requires ${access} access to "${RegExp.escape(what)}", run again with the --allow-${access} flag`);
}

const EXAMPLES: ExampleSpec[] = [
  {
    // The README's main command.
    task: "demo",
    flags: ["--allow-ffi", "--allow-read=./data", "--allow-write=./data"],
    file: "data/registry.db",
    output: [
      /^registry: \.\/data\/registry\.db \(engine: ffi, previous runs: 0\)$/m,
      /^kernel\.greeting = "Hello, agent\."$/m,
      /^echo is running$/m,
      /echo .*Echo .*0\.1\.0 .*native .*stopped/,
      /^demo\.runs +1$/m,
    ],
    again: [/previous runs: 1\)/, /^demo\.runs +2$/m],
    required: {
      "--allow-read=./data": ffiNeeds("read", "./data/registry.db"),
      "--allow-write=./data": notCapable("write", "./data"),
    },
    // Without --allow-ffi, engine "auto" runs the demo on the node engine.
    optional: { "--allow-ffi": /^registry: \.\/data\/registry\.db \(engine: node, previous runs: 0\)$/m },
  },
  {
    task: "example:least-privilege",
    flags: ["--allow-read=./data", "--allow-write=./data"],
    file: "data/least_privilege.db",
    output: [
      /^engine: node \(SQLite 3\.\d+\.\d+, bundled in Deno; chosen by "auto", --allow-ffi is not granted\)$/m,
      /^other permissions: ffi: no, env: no, net: no, run: no, sys: no$/m,
      /^module sandbox: wasm, running$/m,
      /^config sandbox\.limits = \{"memoryMb":64,"cpuMs":500\}$/m,
      /^runs: 1$/m,
    ],
    again: [/^runs: 2$/m],
    required: {
      "--allow-read=./data": notCapable("read", "./data/least_privilege.db"),
      "--allow-write=./data": notCapable("write", "./data"),
    },
  },
  {
    task: "example:ffi",
    flags: ["--allow-ffi", "--allow-read=./data", "--allow-write=./data", "--allow-env=OXIDE_SQLITE_PATH"],
    file: "data/ffi.db",
    output: [
      /^engine: ffi \(SQLite 3\.\d+\.\d+ from the system libsqlite3\)$/m,
      /^module compress: native, running$/m,
      /^config compress\.level = 9$/m,
      /^runs: 1$/m,
    ],
    again: [/^runs: 2$/m],
    required: {
      "--allow-ffi":
        /^error: registry error: the "ffi" engine needs --allow-ffi: grant it, or open with \{ engine: "node" \}$/m,
      "--allow-write=./data": notCapable("write", "./data"),
      "--allow-env=OXIDE_SQLITE_PATH": notCapable("env", "OXIDE_SQLITE_PATH"),
      "--allow-read=./data": ffiNeeds("read", "./data/ffi.db"),
    },
  },
  {
    // Owned by the sealing work (issue 3); checked here like the others.
    task: "example:encrypted",
    flags: ["--allow-ffi", "--allow-read=./data", "--allow-write=./data", "--allow-env=OXIDE_REGISTRY_KEY"],
    file: "data/encrypted.db",
    env: { OXIDE_REGISTRY_KEY: "correct horse battery staple" },
    output: [
      /^registry: \.\/data\/encrypted\.db \(engine: ffi, scheme: envelope, .*previous runs: 0\)$/m,
      /^vault\.api_token opens to a \d+-character token$/m,
      /^modules: vault \(running\)$/m,
    ],
    again: [/previous runs: 1\)$/m],
    required: {
      "--allow-env=OXIDE_REGISTRY_KEY": /OXIDE_REGISTRY_KEY .*not permitted.*--allow-env=OXIDE_REGISTRY_KEY/,
      "--allow-read=./data": ffiNeeds("read", "./data/encrypted.db"),
      "--allow-write=./data": notCapable("write", "./data"),
    },
    optional: { "--allow-ffi": /\(engine: node, scheme: envelope, .*previous runs: 0\)$/m },
  },
];

/** The task's command line, split: `deno run <flags> examples/<name>.ts`. */
function parseTask(task: string): { flags: string[]; script: string } {
  const command = TASKS[task];
  assert.ok(command !== undefined, `deno.json has no task '${task}'`);
  const words = command.trim().split(/\s+/);
  const script = words.at(-1)!;
  assert.deepEqual(words.slice(0, 2), ["deno", "run"], `task '${task}' is not 'deno run ...': ${command}`);
  assert.match(script, /^examples\/\w+\.ts$/, `task '${task}' does not end with its example: ${command}`);
  const flags = words.slice(2, -1);
  for (const flag of flags) {
    assert.match(flag, /^--allow-\w+(=\S+)?$/, `task '${task}' has an unexpected word: ${flag}`);
  }
  return { flags, script };
}

/** Runs the example with `flags` in `cwd`: the script by absolute path, so `./data` is the fresh folder's. */
function runExample(spec: ExampleSpec, flags: string[], cwd: string) {
  const script = new URL(parseTask(spec.task).script, ROOT).pathname;
  const env: Record<string, string> = { NO_COLOR: "1", ...spec.env };
  for (const name of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return runDeno(["run", ...flags, script], { cwd, env, clearEnv: true });
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, (error) => {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  });
}

for (const spec of EXAMPLES) {
  Deno.test({
    name: `deno task ${spec.task} runs with exactly its flags, and names any flag it is denied`,
    // The encrypted example belongs to the sealing work; it is checked as soon as deno.json has its task.
    ignore: spec.task === "example:encrypted" && TASKS[spec.task] === undefined,
    async fn(t) {
      const { flags } = parseTask(spec.task);
      assert.deepEqual(flags, spec.flags, `the flags of task '${spec.task}'`);

      await t.step("runs, and a second run finds the first run's state", async () => {
        await using dir = await tempDir();
        for (const [run, expected] of [["first", spec.output], ["second", spec.again]] as const) {
          const { code, stdout, stderr } = await runExample(spec, flags, dir.path);
          assert.equal(code, 0, `${run} run failed:\n${stdout}${stderr}`);
          for (const pattern of expected) assert.match(stdout, pattern, `${run} run printed:\n${stdout}`);
        }
        assert.ok(await exists(`${dir.path}/${spec.file}`), `it wrote ${spec.file}`);
      });

      for (const [flag, error] of Object.entries(spec.required)) {
        await t.step(`without ${flag} it fails naming the permission, before writing its registry`, async () => {
          assert.ok(flags.includes(flag), `task '${spec.task}' has no flag ${flag}`);
          await using dir = await tempDir();
          const { code, stdout, stderr } = await runExample(spec, flags.filter((f) => f !== flag), dir.path);
          assert.notEqual(code, 0, `it ran without ${flag}:\n${stdout}`);
          assert.match(stderr, error, `it printed:\n${stderr}`);
          assert.equal(await exists(`${dir.path}/${spec.file}`), false, `${spec.file} was written`);
        });
      }

      for (const [flag, output] of Object.entries(spec.optional ?? {})) {
        await t.step(`without ${flag} it still runs`, async () => {
          assert.ok(flags.includes(flag), `task '${spec.task}' has no flag ${flag}`);
          await using dir = await tempDir();
          const { code, stdout, stderr } = await runExample(spec, flags.filter((f) => f !== flag), dir.path);
          assert.equal(code, 0, `${stdout}${stderr}`);
          assert.match(stdout, output, `it printed:\n${stdout}`);
        });
      }
    },
  });
}

Deno.test({
  name: "deno task example:ffi uses the library OXIDE_SQLITE_PATH names, and names a library that does not load",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const ffi = EXAMPLES.find((spec) => spec.task === "example:ffi")!;
    const { flags } = parseTask(ffi.task);
    const library = await systemLibrary();
    {
      await using dir = await tempDir();
      const { code, stdout, stderr } = await runExample(
        { ...ffi, env: { OXIDE_SQLITE_PATH: library } },
        flags,
        dir.path,
      );
      assert.equal(code, 0, stderr);
      assert.match(
        stdout,
        new RegExp(`^engine: ffi \\(SQLite 3\\.\\d+\\.\\d+ from ${RegExp.escape(library)}\\)$`, "m"),
      );
    }
    await using dir = await tempDir();
    const missing = `${dir.path}/no-such-libsqlite3.so`;
    const { code, stderr } = await runExample({ ...ffi, env: { OXIDE_SQLITE_PATH: missing } }, flags, dir.path);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`could not load the SQLite library: tried '${RegExp.escape(missing)}'`));
    assert.equal(await exists(`${dir.path}/${ffi.file}`), false);
  },
});

/** The absolute path of the libsqlite3 the ffi engine loads by default, as the dynamic loader finds it. */
async function systemLibrary(): Promise<string> {
  for (const dir of ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib"]) {
    const path = `${dir}/libsqlite3.so.0`;
    if (await exists(path)) return path;
  }
  throw new Error("no libsqlite3.so.0 found in the usual folders");
}

Deno.test("the examples read the registry through its API, never with SQL on its own tables", async () => {
  for await (const entry of Deno.readDir(new URL("examples/", ROOT))) {
    if (!entry.name.endsWith(".ts")) continue;
    const source = await Deno.readTextFile(new URL(`examples/${entry.name}`, ROOT));
    assert.doesNotMatch(source, /\b(FROM|INTO|UPDATE)\s+(config|modules|oxide_\w+)\b/i, entry.name);
  }
});
