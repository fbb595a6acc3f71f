// Module manifests: parsing and validation as oxide-k reads module.json, path resolution, registration, and every
// way a manifest can be malformed (each names the file and the field, and writes nothing).
import assert from "node:assert/strict";
import {
  loadManifest,
  ManifestError,
  manifestMetadata,
  manifestToJson,
  OtherError,
  parseManifest,
  registerModuleFromManifest,
  SerializationError,
  StateRegistry,
} from "@oxide/registry";
import { engineTest, runDeno, tempDir } from "./_helpers.ts";

/** oxide-k's own sample manifest (its manifest.rs test), plus capabilities. */
const SAMPLE = {
  id: "petstore",
  name: "Pet Store",
  version: "1.0.0",
  kind: "native",
  description: "Generated client for the Pet Store API.",
  spec_kind: "openapi",
  binary: "petstore-cli",
  skill: "SKILL.md",
  mcp: "mcp.json",
  base_url: "https://petstore.example.com/v1",
  operations: ["list_pets", "create_pet", "get_pet"],
  capabilities: ["net.fetch"],
};

const MINIMAL = { id: "echo", name: "Echo", version: "0.1.0", kind: "wasm" };

Deno.test("parseManifest() reads every oxide-k field into camelCase", () => {
  assert.deepEqual(parseManifest(JSON.stringify(SAMPLE)), {
    id: "petstore",
    name: "Pet Store",
    version: "1.0.0",
    kind: "native",
    description: "Generated client for the Pet Store API.",
    specKind: "openapi",
    binary: "petstore-cli",
    skill: "SKILL.md",
    mcp: "mcp.json",
    baseUrl: "https://petstore.example.com/v1",
    operations: ["list_pets", "create_pet", "get_pet"],
    capabilities: ["net.fetch"],
  });
});

Deno.test("parseManifest() defaults the lists to empty and leaves absent or null optionals out", () => {
  assert.deepEqual(parseManifest(JSON.stringify(MINIMAL)), { ...MINIMAL, operations: [], capabilities: [] });
  const withNulls = { ...MINIMAL, description: null, spec_kind: null, binary: null, skill: null, mcp: null };
  const parsed = parseManifest(JSON.stringify({ ...withNulls, base_url: null }));
  assert.deepEqual(parsed, { ...MINIMAL, operations: [], capabilities: [] });
  assert.equal(Object.hasOwn(parsed, "description"), false);
});

Deno.test("parseManifest() ignores unknown keys, as oxide-k does", () => {
  const text = JSON.stringify({ ...MINIMAL, future_field: { x: 1 } }).replace(/}$/, ',"__proto__":{"id":"evil"}}');
  const parsed = parseManifest(text);
  assert.deepEqual(parsed, { ...MINIMAL, operations: [], capabilities: [] });
});

Deno.test("parseManifest() accepts repeated unknown keys and repeats below the top level, as serde_json does", () => {
  const text = `{"x": 1, "id": "echo", "x": {"id": "a", "id": "b"}, "name": "Echo", "version": "0.1.0",
    "description": "has \\",\\"id\\": \\"fake\\" and { [ inside", "kind": "wasm", "x": [{"kind": 1}, {"kind": 2}]}`;
  assert.deepEqual(parseManifest(text), {
    ...MINIMAL,
    description: 'has ","id": "fake" and { [ inside',
    operations: [],
    capabilities: [],
  });
});

Deno.test("manifestToJson() gives back the snake_case JSON oxide-k reads", () => {
  assert.deepEqual(manifestToJson(parseManifest(JSON.stringify(SAMPLE))), SAMPLE);
  assert.deepEqual(manifestToJson(parseManifest(JSON.stringify(MINIMAL))), {
    ...MINIMAL,
    operations: [],
    capabilities: [],
  });
});

Deno.test("manifestMetadata() keeps id, name, version, kind and description", () => {
  assert.deepEqual(manifestMetadata(parseManifest(JSON.stringify(SAMPLE))), {
    id: "petstore",
    name: "Pet Store",
    version: "1.0.0",
    kind: "native",
    description: "Generated client for the Pet Store API.",
  });
});

/** Every malformed manifest: its text, the field blamed (undefined: the file as a whole), words of the message. */
const MALFORMED: { name: string; text: string; field: string | undefined; detail: string }[] = [
  { name: "bad JSON", text: '{"id": "echo",', field: undefined, detail: "not valid JSON" },
  {
    name: "a byte order mark",
    text: `\uFEFF${JSON.stringify(MINIMAL)}`,
    field: undefined,
    detail: "starts with a byte order mark (U+FEFF), which oxide-k (serde_json) rejects",
  },
  {
    name: "id twice",
    text: JSON.stringify(MINIMAL).replace(/}$/, ',"id":"other"}'),
    field: "id",
    detail: "appears more than once (duplicate key), which oxide-k (serde_json) rejects",
  },
  {
    name: "operations twice, once spelled with an escape",
    text: JSON.stringify({ ...MINIMAL, operations: ["a"] }).replace(/}$/, ',"oper\\u0061tions":[]}'),
    field: "operations",
    detail: "duplicate key",
  },
  { name: "empty file", text: "", field: undefined, detail: "not valid JSON" },
  { name: "an array", text: "[]", field: undefined, detail: "expected a JSON object, got an array" },
  { name: "a string", text: '"echo"', field: undefined, detail: "expected a JSON object, got 'echo'" },
  { name: "null", text: "null", field: undefined, detail: "expected a JSON object, got null" },
  { name: "missing id", text: JSON.stringify({ ...MINIMAL, id: undefined }), field: "id", detail: "missing" },
  { name: "missing name", text: JSON.stringify({ ...MINIMAL, name: undefined }), field: "name", detail: "missing" },
  {
    name: "missing version",
    text: JSON.stringify({ ...MINIMAL, version: undefined }),
    field: "version",
    detail: "missing",
  },
  { name: "missing kind", text: JSON.stringify({ ...MINIMAL, kind: undefined }), field: "kind", detail: "missing" },
  { name: "empty id", text: JSON.stringify({ ...MINIMAL, id: "" }), field: "id", detail: "must not be empty" },
  {
    name: "NUL in id",
    text: JSON.stringify({ ...MINIMAL, id: "e\0cho" }),
    field: "id",
    detail: "must not contain a NUL character",
  },
  {
    name: "numeric id",
    text: JSON.stringify({ ...MINIMAL, id: 7 }),
    field: "id",
    detail: "expected a string, got number 7",
  },
  {
    name: "null name",
    text: JSON.stringify({ ...MINIMAL, name: null }),
    field: "name",
    detail: "expected a string, got null",
  },
  {
    name: "version as an object",
    text: JSON.stringify({ ...MINIMAL, version: { major: 1 } }),
    field: "version",
    detail: "expected a string, got an object",
  },
  {
    name: "capitalised kind",
    text: JSON.stringify({ ...MINIMAL, kind: "Native" }),
    field: "kind",
    detail: "expected 'native' or 'wasm', got 'Native'",
  },
  {
    name: "unknown kind",
    text: JSON.stringify({ ...MINIMAL, kind: "python" }),
    field: "kind",
    detail: "got 'python'",
  },
  { name: "numeric kind", text: JSON.stringify({ ...MINIMAL, kind: 0 }), field: "kind", detail: "got number 0" },
  {
    name: "numeric description",
    text: JSON.stringify({ ...MINIMAL, description: 5 }),
    field: "description",
    detail: "expected a string or null, got number 5",
  },
  {
    name: "spec_kind as an array",
    text: JSON.stringify({ ...MINIMAL, spec_kind: ["openapi"] }),
    field: "spec_kind",
    detail: "got an array",
  },
  {
    name: "binary as an object",
    text: JSON.stringify({ ...MINIMAL, binary: { path: "x" } }),
    field: "binary",
    detail: "got an object",
  },
  { name: "boolean skill", text: JSON.stringify({ ...MINIMAL, skill: true }), field: "skill", detail: "boolean true" },
  { name: "numeric mcp", text: JSON.stringify({ ...MINIMAL, mcp: 1 }), field: "mcp", detail: "number 1" },
  {
    name: "numeric base_url",
    text: JSON.stringify({ ...MINIMAL, base_url: 8080 }),
    field: "base_url",
    detail: "number 8080",
  },
  {
    name: "operations as a string",
    text: JSON.stringify({ ...MINIMAL, operations: "list_pets" }),
    field: "operations",
    detail: "expected an array of strings, got 'list_pets'",
  },
  {
    name: "null operations",
    text: JSON.stringify({ ...MINIMAL, operations: null }),
    field: "operations",
    detail: "expected an array of strings, got null",
  },
  {
    name: "a number among operations",
    text: JSON.stringify({ ...MINIMAL, operations: ["a", "b", 3] }),
    field: "operations[2]",
    detail: "expected a string, got number 3",
  },
  {
    name: "capabilities as an object",
    text: JSON.stringify({ ...MINIMAL, capabilities: { net: true } }),
    field: "capabilities",
    detail: "got an object",
  },
  {
    name: "null among capabilities",
    text: JSON.stringify({ ...MINIMAL, capabilities: [null] }),
    field: "capabilities[0]",
    detail: "expected a string, got null",
  },
];

Deno.test("parseManifest() rejects every malformed manifest with a ManifestError naming the file and field", async (t) => {
  for (const bad of MALFORMED) {
    await t.step(bad.name, () => {
      let err: unknown;
      try {
        parseManifest(bad.text, "mods/echo/module.json");
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ManifestError, `expected a ManifestError, got ${err}`);
      assert.ok(err instanceof SerializationError);
      assert.equal(err.kind, "serde");
      assert.equal(err.path, "mods/echo/module.json");
      assert.equal(err.field, bad.field);
      const where = bad.field === undefined ? "" : `field '${bad.field}': `;
      assert.ok(
        err.message.startsWith(`serialization error: invalid manifest 'mods/echo/module.json': ${where}`),
        err.message,
      );
      assert.ok(err.message.includes(bad.detail), `${err.message} should include ${bad.detail}`);
    });
  }
});

Deno.test("parseManifest() throws a TypeError for a non-string argument", () => {
  assert.throws(() => parseManifest({ id: "x" } as unknown as string), TypeError);
});

Deno.test("loadManifest() accepts the module.json file or its folder", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(dir.file("module.json"), JSON.stringify(SAMPLE));
  const fromFile = await loadManifest(dir.file("module.json"));
  const fromFolder = await loadManifest(dir.path);
  const fromFolderSlash = await loadManifest(`${dir.path}/`);
  for (const resolved of [fromFile, fromFolder, fromFolderSlash]) {
    assert.equal(resolved.manifestPath, dir.file("module.json"));
    assert.equal(resolved.baseDir.replace(/\/$/, ""), dir.path);
    assert.equal(resolved.manifest.id, "petstore");
  }
});

Deno.test("loadManifest() resolves binary, skill and mcp against the manifest's folder", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(dir.file("gen/petstore"), { recursive: true });
  await Deno.writeTextFile(
    dir.file("gen/petstore/module.json"),
    JSON.stringify({ ...MINIMAL, binary: "bin/petstore-cli", skill: "./SKILL.md", mcp: "../shared/mcp.json" }),
  );
  const resolved = await loadManifest(dir.file("gen/petstore"));
  assert.equal(resolved.binaryPath, dir.file("gen/petstore/bin/petstore-cli"));
  assert.equal(resolved.skillPath, dir.file("gen/petstore/SKILL.md"));
  assert.equal(resolved.mcpPath, dir.file("gen/shared/mcp.json"));
  // The manifest itself keeps the paths as written.
  assert.equal(resolved.manifest.binary, "bin/petstore-cli");
  assert.equal(resolved.manifest.mcp, "../shared/mcp.json");
});

Deno.test("loadManifest() keeps absolute paths and leaves absent ones undefined", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(dir.file("module.json"), JSON.stringify({ ...MINIMAL, binary: "/usr/local/bin/echo" }));
  const resolved = await loadManifest(dir.file("module.json"));
  assert.equal(resolved.binaryPath, "/usr/local/bin/echo");
  assert.equal(resolved.skillPath, undefined);
  assert.equal(resolved.mcpPath, undefined);
});

Deno.test("loadManifest() of a relative path resolves relative to the current directory, never as a bare name", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(dir.file("echo"));
  await Deno.writeTextFile(dir.file("echo/module.json"), JSON.stringify({ ...MINIMAL, binary: "echo-cli" }));
  await Deno.writeTextFile(dir.file("module.json"), JSON.stringify({ ...MINIMAL, binary: "echo-cli" }));
  const script = `import { loadManifest } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
const a = await loadManifest("echo");
const b = await loadManifest("module.json");
console.log(JSON.stringify([a.manifestPath, a.binaryPath, b.manifestPath, b.binaryPath]));`;
  const out = await runDeno(["eval", "--quiet", `--allow-read=${dir.path}`, script], { cwd: dir.path });
  assert.equal(out.code, 0, out.stderr);
  // "./echo-cli", not "echo-cli": a bare name would be looked up on PATH when spawned.
  assert.deepEqual(JSON.parse(out.stdout), ["echo/module.json", "./echo/echo-cli", "module.json", "./echo-cli"]);
});

Deno.test("loadManifest() of a missing file or a folder without module.json throws OtherError naming the file", async (t) => {
  await using dir = await tempDir();
  await t.step("missing file", async () => {
    const err = await loadManifest(dir.file("nope.json")).catch((e) => e);
    assert.ok(err instanceof OtherError, String(err));
    assert.ok(err.message.startsWith(`failed to read manifest '${dir.file("nope.json")}': `), err.message);
    assert.ok(err.cause instanceof Deno.errors.NotFound);
  });
  await t.step("folder without module.json", async () => {
    const err = await loadManifest(dir.path).catch((e) => e);
    assert.ok(err instanceof OtherError, String(err));
    assert.ok(err.message.startsWith(`failed to read manifest '${dir.file("module.json")}': `), err.message);
  });
});

Deno.test("loadManifest() rejects a file that is not UTF-8 with a ManifestError", async () => {
  await using dir = await tempDir();
  await Deno.writeFile(dir.file("module.json"), new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
  const err = await loadManifest(dir.file("module.json")).catch((e) => e);
  assert.ok(err instanceof ManifestError, String(err));
  assert.equal(err.path, dir.file("module.json"));
  assert.match(err.message, /not valid UTF-8/);
});

Deno.test("loadManifest() refuses a file starting with a UTF-8 byte order mark, as oxide-k does", async () => {
  await using dir = await tempDir();
  const json = new TextEncoder().encode(JSON.stringify(MINIMAL));
  await Deno.writeFile(dir.file("module.json"), new Uint8Array([0xef, 0xbb, 0xbf, ...json]));
  const err = await loadManifest(dir.path).catch((e) => e);
  assert.ok(err instanceof ManifestError, String(err));
  assert.equal(err.path, dir.file("module.json"));
  assert.equal(err.field, undefined);
  assert.match(err.message, /starts with a byte order mark/);
});

Deno.test("loadManifest() names the file in validation errors", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(dir.file("module.json"), JSON.stringify({ ...MINIMAL, kind: "Native" }));
  const err = await loadManifest(dir.path).catch((e) => e);
  assert.ok(err instanceof ManifestError);
  assert.equal(err.path, dir.file("module.json"));
  assert.equal(err.field, "kind");
});

Deno.test("loadManifest() throws a TypeError for an empty or non-string path", async () => {
  await assert.rejects(loadManifest(""), TypeError);
  await assert.rejects(loadManifest(undefined as unknown as string), TypeError);
});

Deno.test({
  name: "loadManifest() without read permission throws OtherError naming the file and the flag, NotCapable as cause",
  permissions: { read: false },
  fn: async () => {
    for (const path of ["/etc/oxide/module.json", "/etc/oxide"]) {
      const err = await loadManifest(path).catch((e) => e);
      assert.ok(err instanceof OtherError, String(err));
      assert.equal(
        err.message,
        `failed to read manifest '${path}': no read permission (run with --allow-read=${path})`,
      );
      assert.ok(err.cause instanceof Deno.errors.NotCapable, String(err.cause));
    }
  },
});

engineTest(
  "registerModuleFromManifest() without read permission throws OtherError and writes nothing",
  async (engine) => {
    await using dir = await tempDir();
    await Deno.mkdir(dir.file("echo"));
    await Deno.writeTextFile(dir.file("echo/module.json"), JSON.stringify(MINIMAL));
    const manifestDir = dir.file("echo");
    const script = `import { KernelError, OtherError, registerModuleFromManifest, StateRegistry } from ${
      JSON.stringify(new URL("../mod.ts", import.meta.url).href)
    };
await using reg = await StateRegistry.inMemory({ engine: ${JSON.stringify(engine)} });
const err = await registerModuleFromManifest(reg, ${JSON.stringify(manifestDir)}).catch((e) => e);
console.log(JSON.stringify([err instanceof OtherError, err instanceof KernelError, err.message, (await reg.listModules()).length]));`;
    await Deno.writeTextFile(dir.file("main.ts"), script);
    // `deno run` (not `eval`, which grants everything) with no read permission at all: the FFI engine finds
    // libsqlite3 through --allow-ffi, the in-memory registry needs no file.
    const out = await runDeno(["run", "--quiet", "--allow-ffi", "--allow-env", dir.file("main.ts")]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), [
      true,
      true,
      `failed to read manifest '${manifestDir}': no read permission (run with --allow-read=${manifestDir})`,
      0,
    ]);
  },
);

engineTest(
  "registerModuleFromManifest() upserts the module as loaded and returns the resolved manifest",
  async (engine) => {
    await using dir = await tempDir();
    await Deno.writeTextFile(dir.file("module.json"), JSON.stringify(SAMPLE));
    await using reg = await StateRegistry.inMemory({ engine });
    const resolved = await registerModuleFromManifest(reg, dir.file("module.json"));
    assert.equal(resolved.manifest.id, "petstore");
    assert.equal(resolved.binaryPath, dir.file("petstore-cli"));
    const record = await reg.getModule("petstore");
    assert.ok(record);
    assert.deepEqual(
      { ...record, updatedAt: undefined },
      {
        id: "petstore",
        name: "Pet Store",
        version: "1.0.0",
        kind: "native",
        state: "loaded",
        description: "Generated client for the Pet Store API.",
        updatedAt: undefined,
        recordVersion: 1,
        createRevision: 1,
        modRevision: 1,
      },
    );
  },
);

engineTest(
  "registerModuleFromManifest() of a running module puts it back to loaded with the new metadata",
  async (engine) => {
    await using dir = await tempDir();
    await using reg = await StateRegistry.inMemory({ engine });
    await reg.upsertModule({ id: "echo", name: "Old", version: "0.0.1", kind: "native" }, "running");
    await Deno.writeTextFile(dir.file("module.json"), JSON.stringify(MINIMAL));
    await registerModuleFromManifest(reg, dir.path);
    const record = await reg.getModule("echo");
    assert.equal(record?.state, "loaded");
    assert.equal(record?.name, "Echo");
    assert.equal(record?.kind, "wasm");
    assert.equal(record?.description, undefined);
  },
);

engineTest("registerModuleFromManifest() with a malformed manifest writes nothing", async (engine) => {
  await using dir = await tempDir();
  await using reg = await StateRegistry.inMemory({ engine });
  await reg.upsertModule({ id: "echo", name: "Echo", version: "0.1.0", kind: "native" }, "running");
  const before = await reg.listModules();
  for (const bad of MALFORMED) {
    await Deno.writeTextFile(dir.file("module.json"), bad.text);
    await assert.rejects(registerModuleFromManifest(reg, dir.path), ManifestError, bad.name);
  }
  await assert.rejects(registerModuleFromManifest(reg, dir.file("missing.json")), OtherError);
  assert.deepEqual(await reg.listModules(), before);
});
