/**
 * Typed config reads: the Standard Schema interface (https://standardschema.dev, which zod, valibot and arktype
 * implement), declared here so no validation library is a dependency, and the error a value that does not match
 * its schema gives.
 *
 * @module
 */
import { SerializationError } from "./errors.ts";

/**
 * A validator implementing Standard Schema v1: anything with a `~standard`
 * property of this shape (a zod, valibot or arktype schema, or one written
 * by hand). The registry calls only `validate`.
 *
 * @typeParam Input What the schema accepts.
 * @typeParam Output What a successful validation returns.
 *
 * @example A hand-written validator
 * ```ts
 * import { StateRegistry, type StandardSchemaV1 } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const port: StandardSchemaV1<unknown, number> = {
 *   "~standard": {
 *     version: 1,
 *     vendor: "example",
 *     validate: (value) =>
 *       Number.isInteger(value) && (value as number) > 0 && (value as number) < 65536
 *         ? { value: value as number }
 *         : { issues: [{ message: `expected a port number, got ${JSON.stringify(value)}` }] },
 *   },
 * };
 * await using reg = await StateRegistry.inMemory();
 * await reg.setConfig("http.port", 8080);
 * const value: number = await reg.getConfig("http.port", port);
 * assert.equal(value, 8080);
 * ```
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The Standard Schema properties. */
  readonly "~standard": StandardSchemaProps<Input, Output>;
}

/** The `~standard` property of a {@linkcode StandardSchemaV1}. */
export interface StandardSchemaProps<Input = unknown, Output = Input> {
  /** The version of the Standard Schema specification: 1. */
  readonly version: 1;
  /** The library that made the schema (`"zod"`, `"valibot"`, ...). */
  readonly vendor: string;
  /** Validates a value: its output, or the issues found. May be asynchronous. */
  readonly validate: (value: unknown) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
  /** Type information only (never read at run time). */
  readonly types?: StandardSchemaTypes<Input, Output> | undefined;
}

/** What `validate` returns: the output, or the issues. */
export type StandardSchemaResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<StandardSchemaIssue> };

/** One problem a schema found. */
export interface StandardSchemaIssue {
  /** What is wrong. */
  readonly message: string;
  /** Where in the value: property names and array indexes, bare or as `{ key }` segments. */
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** The input and output types of a schema, for inference. */
export interface StandardSchemaTypes<Input = unknown, Output = Input> {
  /** What the schema accepts. */
  readonly input: Input;
  /** What it returns. */
  readonly output: Output;
}

/** The type a schema's validation returns. */
export type InferSchemaOutput<Schema extends StandardSchemaV1> = NonNullable<Schema["~standard"]["types"]>["output"];

/**
 * A config value that does not match the schema given to `getConfig` or
 * `tryGetConfig`: names the key and, for each issue, the path inside the value
 * (`$.retries`, `$.hosts[2]`).
 *
 * The message of a plain registry's error carries the validator's own messages.
 * For a sealed registry (opened with its key) the message carries only the key,
 * the paths and a generic reason: validators such as valibot quote the value
 * they received in their messages, and a sealed value must not reach a log in
 * the clear. `issues` always holds what the validator reported, so it may
 * contain the value: do not log it for a sealed registry.
 *
 * @example
 * ```ts
 * import { ConfigSchemaError, SerializationError } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const err = new ConfigSchemaError("endpoint", [{ message: "expected a number", path: ["retries"] }]);
 * assert.ok(err instanceof SerializationError);
 * assert.equal(
 *   err.message,
 *   "serialization error: value of config key 'endpoint' does not match its schema: $.retries: expected a number",
 * );
 * const sealed = new ConfigSchemaError("token", [{ message: 'got "sk-1"' }], { sealed: true });
 * assert.equal(
 *   sealed.message,
 *   "serialization error: value of config key 'token' does not match its schema at $ " +
 *     "(the value is sealed: the validator's messages are withheld, see .issues)",
 * );
 * assert.equal(sealed.issues[0]?.message, 'got "sk-1"');
 * ```
 */
export class ConfigSchemaError extends SerializationError {
  /** The config key. */
  readonly key: string;
  /** The issues the schema reported, as it reported them (their messages may quote the value). */
  readonly issues: ReadonlyArray<StandardSchemaIssue>;

  /**
   * Creates the error.
   *
   * @param key The config key.
   * @param issues What the schema reported.
   * @param options `cause`, if any; `sealed: true` leaves the issues' messages out of the error's message (only
   *   the paths are named), for a value read from a sealed registry.
   */
  constructor(
    key: string,
    issues: ReadonlyArray<StandardSchemaIssue>,
    options?: ErrorOptions & { readonly sealed?: boolean },
  ) {
    let shown: string;
    if (issues.length === 0) shown = ": the schema reported no issue but no value";
    else if (options?.sealed === true) {
      const paths = [...new Set(issues.map(issuePath))].join(", ");
      shown = ` at ${paths} (the value is sealed: the validator's messages are withheld, see .issues)`;
    } else shown = ": " + issues.map((issue) => `${issuePath(issue)}: ${issue.message}`).join("; ");
    super(`value of config key '${key}' does not match its schema${shown}`, options);
    this.key = key;
    this.issues = issues;
  }
}

/**
 * Validates `read`, the value read for `key`, with `schema`; a missing value (`undefined`, from `tryGetConfig`) is
 * passed through unvalidated. Rejects with a `TypeError` when `schema` is not a Standard Schema v1 validator or its
 * `validate` returns something that is not a Standard Schema result, and with a {@linkcode ConfigSchemaError} when
 * the value does not match (`sealed`: its message withholds the validator's messages).
 */
export function readWithSchema(
  key: string,
  read: Promise<unknown>,
  schema: unknown,
  sealed: boolean,
): Promise<unknown> {
  try {
    const checked = checkSchema(schema);
    return read.then((value) => value === undefined ? undefined : validateConfig(key, value, checked, sealed));
  } catch (error) {
    read.catch(() => {}); // The read's own failure is superseded by the schema's.
    return Promise.reject(error);
  }
}

function checkSchema(schema: unknown): StandardSchemaV1 {
  const props = (schema as { "~standard"?: unknown } | null | undefined)?.["~standard"] as
    | StandardSchemaProps
    | undefined;
  if (typeof props !== "object" || props === null || props.version !== 1 || typeof props.validate !== "function") {
    throw new TypeError(
      "schema must implement Standard Schema v1 (an object with '~standard': { version: 1, validate })",
    );
  }
  return schema as StandardSchemaV1;
}

/** Runs `schema` on a value read for `key`: its output, or a {@linkcode ConfigSchemaError}. */
async function validateConfig<Output>(
  key: string,
  value: unknown,
  schema: StandardSchemaV1<unknown, Output>,
  sealed: boolean,
): Promise<Output> {
  const props = schema["~standard"];
  const result: unknown = await props.validate(value);
  const broken = (what: string) =>
    new TypeError(
      `the schema's '~standard.validate' (vendor ${JSON.stringify(String(props.vendor))}) broke the Standard Schema ` +
        `v1 contract: ${what}; it must return { value } or { issues: [{ message, path? }, ...] }`,
    );
  if (typeof result !== "object" || result === null) {
    throw broken(`it returned ${result === null ? "null" : typeof result}`);
  }
  const { issues } = result as { issues?: unknown };
  if (issues === undefined) {
    if (!("value" in result)) throw broken("its result has neither 'value' nor 'issues'");
    return (result as { value: Output }).value;
  }
  if (!Array.isArray(issues)) throw broken("its result's 'issues' is not an array");
  for (const issue of issues) {
    const path = (issue as { path?: unknown } | null)?.path;
    if (
      typeof issue !== "object" || issue === null || typeof (issue as { message?: unknown }).message !== "string" ||
      (path !== undefined && !Array.isArray(path))
    ) {
      throw broken("an issue is not an object with a string 'message' and an optional array 'path'");
    }
  }
  throw new ConfigSchemaError(key, issues as StandardSchemaIssue[], { sealed });
}

/** `$.a[2]`: where an issue is, as the registry's other messages say it. */
function issuePath(issue: StandardSchemaIssue): string {
  let path = "$";
  for (const segment of issue.path ?? []) {
    const key = typeof segment === "object" && segment !== null ? segment.key : segment;
    if (typeof key === "number") path += `[${key}]`;
    else if (typeof key === "symbol") path += `[${String(key)}]`;
    else path += /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
  }
  return path;
}
