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
 * ```
 */
export class ConfigSchemaError extends SerializationError {
  /** The config key. */
  readonly key: string;
  /** The issues the schema reported. */
  readonly issues: ReadonlyArray<StandardSchemaIssue>;

  /**
   * Creates the error.
   *
   * @param key The config key.
   * @param issues What the schema reported.
   * @param options `cause`, if any.
   */
  constructor(key: string, issues: ReadonlyArray<StandardSchemaIssue>, options?: ErrorOptions) {
    const shown = issues.length === 0
      ? "the schema reported no issue but no value"
      : issues.map((issue) => `${issuePath(issue)}: ${issue.message}`).join("; ");
    super(`value of config key '${key}' does not match its schema: ${shown}`, options);
    this.key = key;
    this.issues = issues;
  }
}

/**
 * Validates `read`, the value read for `key`, with `schema`; a missing value (`undefined`, from `tryGetConfig`) is
 * passed through unvalidated. Rejects with a `TypeError` when `schema` is not a Standard Schema v1 validator, and
 * with a {@linkcode ConfigSchemaError} when the value does not match.
 */
export function readWithSchema(key: string, read: Promise<unknown>, schema: unknown): Promise<unknown> {
  try {
    const checked = checkSchema(schema);
    return read.then((value) => value === undefined ? undefined : validateConfig(key, value, checked));
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
): Promise<Output> {
  const result = await schema["~standard"].validate(value);
  if (result.issues !== undefined) throw new ConfigSchemaError(key, result.issues);
  return result.value;
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
