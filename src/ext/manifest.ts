/**
 * Module manifests: the `module.json` discovery file `oxide-gen` writes for
 * every generated module, read and validated as oxide-k reads it, and
 * registered with a {@linkcode StateRegistry} in state `loaded`.
 *
 * The JSON keys stay snake_case (`spec_kind`, `base_url`) because that is
 * what oxide-k reads and writes; the TypeScript fields are camelCase
 * (`specKind`, `baseUrl`) like the rest of this package.
 * {@linkcode manifestToJson} converts back.
 *
 * @module
 */

import { OtherError, SerializationError } from "../errors.ts";
import { isModuleKind, type ModuleKind, type ModuleMetadata } from "../module.ts";
import type { StateRegistry } from "../registry/registry.ts";
import { dirname, resolveAgainst } from "../_path.ts";
import { describe } from "../_describe.ts";

const SEP: string = Deno.build.os === "windows" ? "\\" : "/";

/**
 * The file name looked for when a manifest path names a folder.
 *
 * @example
 * ```ts
 * import { loadManifest, MANIFEST_FILE_NAME } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(MANIFEST_FILE_NAME, "module.json");
 * const dir = await Deno.makeTempDir();
 * const manifest = { id: "echo", name: "Echo", version: "0.1.0", kind: "native" };
 * await Deno.writeTextFile(`${dir}/${MANIFEST_FILE_NAME}`, JSON.stringify(manifest));
 * assert.equal((await loadManifest(dir)).manifestPath, `${dir}/${MANIFEST_FILE_NAME}`);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export const MANIFEST_FILE_NAME = "module.json";

/**
 * A parsed `module.json`: the module's metadata plus what the kernel needs to
 * locate its binary, skill descriptor and MCP configuration. Optional fields
 * are absent (not `undefined`-valued) when the file omits them or has `null`.
 *
 * @example
 * ```ts
 * import { manifestToJson, type ModuleManifest, parseManifest } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const manifest: ModuleManifest = {
 *   id: "petstore",
 *   name: "Pet Store",
 *   version: "1.0.0",
 *   kind: "native",
 *   specKind: "openapi",
 *   operations: ["listPets"],
 *   capabilities: [],
 * };
 * const json = manifestToJson(manifest);
 * assert.equal(json.spec_kind, "openapi");
 * assert.deepEqual(parseManifest(JSON.stringify(json)), manifest);
 * ```
 */
export interface ModuleManifest {
  /** Stable module id; the `modules` table's primary key (`id`). */
  id: string;
  /** Human-readable display name (`name`). */
  name: string;
  /** Version string (`version`). */
  version: string;
  /** Execution layer (`kind`): `"native"` or `"wasm"`. */
  kind: ModuleKind;
  /** Free-form description (`description`). */
  description?: string;
  /** Source spec format such as `"openapi"`, `"graphql"`, `"grpc"` (`spec_kind`). */
  specKind?: string;
  /** CLI binary, relative to the manifest's folder (`binary`). */
  binary?: string;
  /** Skill descriptor (`SKILL.md`), relative to the manifest's folder (`skill`). */
  skill?: string;
  /** MCP server configuration, relative to the manifest's folder (`mcp`). */
  mcp?: string;
  /** Default base URL baked into the generated client (`base_url`). */
  baseUrl?: string;
  /** Operation ids the module exposes (`operations`, default empty). */
  operations: string[];
  /** Capabilities the module declares (`capabilities`, default empty). */
  capabilities: string[];
}

/**
 * A manifest loaded from disk, with its path fields resolved against the
 * manifest's folder (oxide-k's `ResolvedManifest`).
 *
 * @example
 * ```ts
 * import { registerModuleFromManifest, type ResolvedManifest, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(
 *   `${dir}/module.json`,
 *   '{"id":"echo","name":"Echo","version":"1","kind":"native","mcp":"mcp.json"}',
 * );
 * await using reg = await StateRegistry.inMemory();
 * const resolved: ResolvedManifest = await registerModuleFromManifest(reg, dir);
 * assert.equal(resolved.baseDir, dir);
 * assert.equal(resolved.mcpPath, `${dir}/mcp.json`);
 * assert.equal(resolved.binaryPath, undefined);
 * assert.equal((await reg.getModule(resolved.manifest.id))?.state, "loaded");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface ResolvedManifest {
  /** The manifest exactly as the file says it (paths unresolved). */
  manifest: ModuleManifest;
  /** The `module.json` file that was read. */
  manifestPath: string;
  /** The folder relative paths were resolved against. */
  baseDir: string;
  /** `binary` resolved, or `undefined` when the manifest has none. */
  binaryPath: string | undefined;
  /** `skill` resolved, or `undefined` when the manifest has none. */
  skillPath: string | undefined;
  /** `mcp` resolved, or `undefined` when the manifest has none. */
  mcpPath: string | undefined;
}

/**
 * A manifest's content is invalid: not JSON, not an object, a required field
 * missing, a field of the wrong type, an unknown `kind`. Names the file
 * (`path`) and the offending field (`field`, e.g. `"kind"` or
 * `"operations[2]"`). A {@linkcode SerializationError}, as oxide-k reports
 * manifest parse failures through its `Serde` variant.
 *
 * @example Catching a bad manifest
 * ```ts
 * import { ManifestError, parseManifest } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const text = JSON.stringify({ id: "echo", name: "Echo", version: "1", kind: "Native" });
 * let err: unknown;
 * try {
 *   parseManifest(text, "echo/module.json");
 * } catch (e) {
 *   err = e;
 * }
 * assert.ok(err instanceof ManifestError);
 * assert.equal(err.path, "echo/module.json");
 * assert.equal(err.field, "kind");
 * assert.equal(
 *   err.message,
 *   "serialization error: invalid manifest 'echo/module.json': field 'kind': expected 'native' or 'wasm', got 'Native'",
 * );
 * ```
 */
export class ManifestError extends SerializationError {
  /** The manifest file (or the `source` label given to {@linkcode parseManifest}). */
  readonly path: string;
  /** The offending field, or `undefined` when the file as a whole is wrong (bad JSON, not an object). */
  readonly field: string | undefined;

  /**
   * Creates the error for one manifest file (and one of its fields).
   *
   * @param path The manifest file.
   * @param field The offending field, if one is to blame.
   * @param detail What is wrong with it.
   * @param options `cause`, if any.
   */
  constructor(
    path: string,
    field: string | undefined,
    detail: string,
    options?: ErrorOptions,
  ) {
    const where = field === undefined ? "" : `field '${field}': `;
    super(`invalid manifest '${path}': ${where}${detail}`, options);
    this.path = path;
    this.field = field;
  }
}

const REQUIRED_STRINGS = ["id", "name", "version"] as const;
const OPTIONAL_STRINGS = [
  ["description", "description"],
  ["spec_kind", "specKind"],
  ["binary", "binary"],
  ["skill", "skill"],
  ["mcp", "mcp"],
  ["base_url", "baseUrl"],
] as const;
const STRING_LISTS = ["operations", "capabilities"] as const;

/** The keys oxide-k reads; serde_json rejects any of them given twice (and ignores repeated unknown keys). */
const KNOWN_KEYS: ReadonlySet<string> = new Set<string>([
  ...REQUIRED_STRINGS,
  "kind",
  ...OPTIONAL_STRINGS.map(([key]) => key),
  ...STRING_LISTS,
]);

/**
 * The keys of the top-level object of `text`, in order, repeats included
 * (`JSON.parse` keeps only the last). `text` must be valid JSON whose top
 * level is an object: a small scan, not a parser.
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) {
        keys.push(JSON.parse(text.slice(i, end + 1)) as string);
        expectKey = false;
      }
      i = end;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = depth === 1;
    } else if (c === "}" || c === "]") {
      depth--;
    } else if (c === "," && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/** The text fields' rule, shared with the registry: no NUL characters. */
function checkNoNul(source: string, field: string, value: string): string {
  if (value.includes("\0")) {
    throw new ManifestError(source, field, `must not contain a NUL character: ${describe(value)}`);
  }
  return value;
}

/**
 * Validates an already-parsed JSON value as a manifest.
 *
 * @param value The parsed JSON.
 * @param source The file name errors should name.
 * @returns The manifest.
 * @throws {ManifestError} On the first invalid field.
 */
function validateManifest(value: unknown, source: string): ModuleManifest {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ManifestError(
      source,
      undefined,
      `expected a JSON object, got ${describe(value)}`,
    );
  }
  const raw = value as Record<string, unknown>;
  const own = (key: string): unknown => Object.hasOwn(raw, key) ? raw[key] : undefined;

  const required: Partial<Record<(typeof REQUIRED_STRINGS)[number], string>> = {};
  for (const key of REQUIRED_STRINGS) {
    const v = own(key);
    if (v === undefined) throw new ManifestError(source, key, "missing");
    if (typeof v !== "string") {
      throw new ManifestError(
        source,
        key,
        `expected a string, got ${describe(v)}`,
      );
    }
    if (v === "") throw new ManifestError(source, key, "must not be empty");
    required[key] = checkNoNul(source, key, v);
  }

  const kind = own("kind");
  if (kind === undefined) throw new ManifestError(source, "kind", "missing");
  if (!isModuleKind(kind)) {
    throw new ManifestError(
      source,
      "kind",
      `expected 'native' or 'wasm', got ${describe(kind)}`,
    );
  }

  const manifest: ModuleManifest = {
    id: required.id!,
    name: required.name!,
    version: required.version!,
    kind,
    operations: [],
    capabilities: [],
  };

  for (const [key, field] of OPTIONAL_STRINGS) {
    const v = own(key);
    if (v === undefined || v === null) continue; // serde's Option: absent or null
    if (typeof v !== "string") {
      throw new ManifestError(
        source,
        key,
        `expected a string or null, got ${describe(v)}`,
      );
    }
    manifest[field] = checkNoNul(source, key, v);
  }

  for (const key of STRING_LISTS) {
    const v = own(key);
    if (v === undefined) continue;
    if (!Array.isArray(v)) {
      throw new ManifestError(
        source,
        key,
        `expected an array of strings, got ${describe(v)}`,
      );
    }
    const list: string[] = [];
    for (const [i, item] of v.entries()) {
      if (typeof item !== "string") {
        throw new ManifestError(
          source,
          `${key}[${i}]`,
          `expected a string, got ${describe(item)}`,
        );
      }
      list.push(checkNoNul(source, `${key}[${i}]`, item));
    }
    manifest[key] = list;
  }
  return manifest;
}

/**
 * Parses and validates the text of a `module.json`. Unknown keys are ignored,
 * as oxide-k ignores them; `null` counts as absent for the optional string
 * fields; `operations` and `capabilities` default to `[]`. `id`, `name` and
 * `version` must be non-empty strings. As serde_json does, a known key given
 * twice and a leading byte order mark are refused.
 *
 * @param text The file's text.
 * @param source The name errors should give the file. Defaults to `"<string>"`.
 * @returns The manifest, with camelCase fields.
 * @throws {ManifestError} When the text is not JSON (or starts with a byte order mark), not an object, or a field is
 * missing, repeated or of the wrong type.
 * @throws {TypeError} When `text` is not a string.
 *
 * @example
 * ```ts
 * import { parseManifest } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const manifest = parseManifest(JSON.stringify({
 *   id: "petstore",
 *   name: "Pet Store",
 *   version: "1.0.0",
 *   kind: "native",
 *   spec_kind: "openapi",
 *   base_url: "https://petstore.example.com/v1",
 *   operations: ["list_pets", "get_pet"],
 * }));
 * assert.equal(manifest.specKind, "openapi");
 * assert.deepEqual(manifest.operations, ["list_pets", "get_pet"]);
 * assert.deepEqual(manifest.capabilities, []);
 * ```
 */
export function parseManifest(
  text: string,
  source = "<string>",
): ModuleManifest {
  if (typeof text !== "string") {
    throw new TypeError(
      `parseManifest() expects the manifest text as a string, got ${typeof text}`,
    );
  }
  if (text.startsWith("\uFEFF")) {
    throw new ManifestError(
      source,
      undefined,
      "starts with a byte order mark (U+FEFF), which oxide-k (serde_json) rejects: save it without one",
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new ManifestError(source, undefined, `not valid JSON: ${reason}`, {
      cause: e,
    });
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const seen = new Set<string>();
    for (const key of topLevelKeys(text)) {
      if (seen.has(key) && KNOWN_KEYS.has(key)) {
        throw new ManifestError(
          source,
          key,
          "appears more than once (duplicate key), which oxide-k (serde_json) rejects",
        );
      }
      seen.add(key);
    }
  }
  return validateManifest(value, source);
}

/**
 * Converts a manifest back to the snake_case JSON object oxide-k reads,
 * omitting absent optional fields.
 *
 * @param manifest The manifest.
 * @returns A plain object ready for `JSON.stringify`.
 *
 * @example Round trip
 * ```ts
 * import { manifestToJson, parseManifest } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const json = { id: "echo", name: "Echo", version: "0.1.0", kind: "native", base_url: "http://x", operations: [], capabilities: ["net"] };
 * assert.deepEqual(manifestToJson(parseManifest(JSON.stringify(json))), json);
 * ```
 */
export function manifestToJson(
  manifest: ModuleManifest,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: manifest.id,
    name: manifest.name,
    version: manifest.version,
    kind: manifest.kind,
  };
  for (const [key, field] of OPTIONAL_STRINGS) {
    const v = manifest[field];
    if (v !== undefined) out[key] = v;
  }
  out.operations = [...manifest.operations];
  out.capabilities = [...manifest.capabilities];
  return out;
}

/**
 * The {@linkcode ModuleMetadata} a manifest registers (oxide-k's
 * `ModuleManifest::metadata`).
 *
 * @param manifest The manifest.
 * @returns Its id, name, version, kind and description.
 *
 * @example
 * ```ts
 * import { manifestMetadata, parseManifest } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const m = parseManifest('{"id":"echo","name":"Echo","version":"0.1.0","kind":"wasm"}');
 * assert.deepEqual(manifestMetadata(m), { id: "echo", name: "Echo", version: "0.1.0", kind: "wasm" });
 * ```
 */
export function manifestMetadata(manifest: ModuleManifest): ModuleMetadata {
  const metadata: ModuleMetadata = {
    id: manifest.id,
    name: manifest.name,
    version: manifest.version,
    kind: manifest.kind,
  };
  if (manifest.description !== undefined) {
    metadata.description = manifest.description;
  }
  return metadata;
}

/**
 * Reads and validates a manifest from disk and resolves its paths. `path` may
 * be the `module.json` file or the folder holding it. Relative `binary`,
 * `skill` and `mcp` paths are resolved against the manifest's folder;
 * absolute ones are kept. The folder is taken as given: a relative `path`
 * gives paths relative to the current directory (no `Deno.cwd()` call, so
 * read permission on the manifest alone suffices).
 *
 * @param path The `module.json` file, or its folder.
 * @returns The manifest and its resolved paths.
 * @throws {ManifestError} When the file's content is invalid (names the file and field).
 * @throws {OtherError} When the file cannot be read (`failed to read manifest '...': ...`, the I/O error as `cause`),
 * also without read permission (`... no read permission (run with --allow-read=...)`, Deno's `NotCapable` as `cause`).
 * @throws {TypeError} When `path` is not a non-empty string.
 *
 * @example Loading from a folder
 * ```ts
 * import { loadManifest } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * try {
 *   await Deno.writeTextFile(`${dir}/module.json`, JSON.stringify({
 *     id: "echo", name: "Echo", version: "0.1.0", kind: "native", binary: "bin/echo",
 *   }));
 *   const resolved = await loadManifest(dir);
 *   assert.equal(resolved.manifestPath, `${dir}/module.json`);
 *   assert.equal(resolved.binaryPath, `${dir}/bin/echo`);
 *   assert.equal(resolved.skillPath, undefined);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function loadManifest(path: string): Promise<ResolvedManifest> {
  if (typeof path !== "string" || path === "") {
    throw new TypeError(
      `loadManifest() expects a non-empty path string, got ${describe(path)}`,
    );
  }
  let manifestPath = path;
  let baseDir = dirname(path);
  let bytes: Uint8Array;
  try {
    if ((await Deno.stat(path)).isDirectory) {
      baseDir = path;
      manifestPath = /[\\/]$/.test(path) ? `${path}${MANIFEST_FILE_NAME}` : `${path}${SEP}${MANIFEST_FILE_NAME}`;
    }
    bytes = await Deno.readFile(manifestPath);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) {
      throw new OtherError(
        `failed to read manifest '${manifestPath}': no read permission (run with --allow-read=${manifestPath})`,
        { cause: e },
      );
    }
    const reason = e instanceof Error ? e.message : String(e);
    throw new OtherError(
      `failed to read manifest '${manifestPath}': ${reason}`,
      {
        cause: e,
      },
    );
  }
  let text: string;
  try {
    // ignoreBOM: keep a byte order mark in the text, for parseManifest to refuse as serde_json does.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      bytes,
    );
  } catch (e) {
    throw new ManifestError(manifestPath, undefined, "not valid UTF-8", {
      cause: e,
    });
  }
  const manifest = parseManifest(text, manifestPath);
  const resolve = (p: string | undefined) => p === undefined ? undefined : resolveAgainst(baseDir, p);
  return {
    manifest,
    manifestPath,
    baseDir,
    binaryPath: resolve(manifest.binary),
    skillPath: resolve(manifest.skill),
    mcpPath: resolve(manifest.mcp),
  };
}

/**
 * Loads a manifest ({@linkcode loadManifest}), validates it, and upserts its
 * module into the registry in state `loaded` (oxide-k's
 * `Kernel::register_module_from_manifest`). Validation finishes before
 * anything is written: a bad manifest leaves the registry untouched.
 *
 * @param registry The registry to record the module in.
 * @param path The `module.json` file, or its folder.
 * @returns The resolved manifest.
 * @throws {ManifestError} When the manifest is invalid; nothing is written.
 * @throws {OtherError} When the file cannot be read (also without read permission); nothing is written.
 * @throws {RegistryError} When the registry cannot be written (or is closed).
 *
 * @example
 * ```ts
 * import { registerModuleFromManifest, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * try {
 *   await Deno.writeTextFile(`${dir}/module.json`, JSON.stringify({
 *     id: "petstore", name: "Pet Store", version: "1.0.0", kind: "native",
 *   }));
 *   await using reg = await StateRegistry.inMemory();
 *   const resolved = await registerModuleFromManifest(reg, `${dir}/module.json`);
 *   assert.equal(resolved.manifest.id, "petstore");
 *   const record = await reg.getModule("petstore");
 *   assert.equal(record?.state, "loaded");
 *   assert.equal(record?.version, "1.0.0");
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function registerModuleFromManifest(
  registry: StateRegistry,
  path: string,
): Promise<ResolvedManifest> {
  const resolved = await loadManifest(path);
  await registry.upsertModule(manifestMetadata(resolved.manifest), "loaded");
  return resolved;
}
