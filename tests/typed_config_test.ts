// Typed reads: getConfig and tryGetConfig take any Standard Schema v1 validator; a value of the wrong type is a
// ConfigSchemaError naming the key and the path inside the value. The validators here are written by hand against
// the interface (https://standardschema.dev), as zod, valibot and arktype implement it.
import assert from "node:assert/strict";
import {
  ConfigNotFoundError,
  ConfigSchemaError,
  SerializationError,
  type StandardSchemaIssue,
  type StandardSchemaV1,
} from "@oxide/registry";
import { variantTest } from "./_variants.ts";
import { runDeno, tempDir } from "./_helpers.ts";

interface Endpoint {
  url: string;
  retries: number;
  hosts: string[];
}

/** A hand-written validator for Endpoint that reports every issue with its path, as zod does. */
const endpoint: StandardSchemaV1<unknown, Endpoint> = {
  "~standard": {
    version: 1,
    vendor: "hand-written",
    validate(value) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return { issues: [{ message: "expected an object" }] };
      }
      const v = value as Record<string, unknown>;
      const issues: StandardSchemaIssue[] = [];
      if (typeof v.url !== "string") issues.push({ message: "expected a string", path: ["url"] });
      if (typeof v.retries !== "number") issues.push({ message: "expected a number", path: [{ key: "retries" }] });
      if (!Array.isArray(v.hosts)) issues.push({ message: "expected an array", path: ["hosts"] });
      else {
        v.hosts.forEach((host, i) => {
          if (typeof host !== "string") issues.push({ message: "expected a string", path: ["hosts", { key: i }] });
        });
      }
      return issues.length > 0 ? { issues } : { value: v as unknown as Endpoint };
    },
  },
};

/** An asynchronous validator whose output differs from its input: a port number from a string or a number. */
const port: StandardSchemaV1<unknown, number> = {
  "~standard": {
    version: 1,
    vendor: "hand-written",
    validate: (value) =>
      Promise.resolve(
        Number.isInteger(Number(value)) && Number(value) > 0 && Number(value) < 65536
          ? { value: Number(value) }
          : { issues: [{ message: `expected a port, got ${JSON.stringify(value)}` }] },
      ),
  },
};

variantTest("getConfig(key, schema) returns the schema's output for a value that matches", async (engine, variant) => {
  await using reg = await variant.inMemory({ engine });
  const value: Endpoint = { url: "https://example.com", retries: 3, hosts: ["a", "b"] };
  await reg.setConfig("endpoint", value);
  const read: Endpoint = await reg.getConfig("endpoint", endpoint);
  assert.deepEqual(read, value);
  await reg.setConfig("http.port", "8080");
  const p: number = await reg.getConfig("http.port", port);
  assert.equal(p, 8080);
  const maybe: number | undefined = await reg.tryGetConfig("http.port", port);
  assert.equal(maybe, 8080);
});

variantTest(
  "a value of the wrong type is a ConfigSchemaError naming the key and each path inside the value",
  async (engine, variant) => {
    await using reg = await variant.inMemory({ engine });
    await reg.setConfig("endpoint", { url: 42, retries: "3", hosts: ["a", 7, "c", null] });
    for (const read of [reg.getConfig("endpoint", endpoint), reg.tryGetConfig("endpoint", endpoint)]) {
      await assert.rejects(read, (error: Error) => {
        assert.ok(error instanceof ConfigSchemaError);
        assert.ok(error instanceof SerializationError, "a SerializationError, kind serde");
        assert.equal(error.kind, "serde");
        assert.equal(error.key, "endpoint");
        assert.equal(error.issues.length, 4);
        assert.equal(
          error.message,
          variant.name === "sealed"
            ? "serialization error: value of config key 'endpoint' does not match its schema at " +
              "$.url, $.retries, $.hosts[1], $.hosts[3] (the value is sealed: the validator's messages are withheld, " +
              "see .issues)"
            : "serialization error: value of config key 'endpoint' does not match its schema: " +
              "$.url: expected a string; $.retries: expected a number; $.hosts[1]: expected a string; " +
              "$.hosts[3]: expected a string",
        );
        return true;
      });
    }
    await reg.setConfig("http.port", 70000);
    await assert.rejects(
      reg.getConfig("http.port", port),
      variant.name === "sealed"
        ? /value of config key 'http\.port' does not match its schema at \$ \(the value is sealed/
        : /value of config key 'http\.port' does not match its schema: \$: expected a port, got 70000$/,
    );
    await reg.setConfig("odd", { "a b": { "0": [{ x: 1 }] } });
    const deep: StandardSchemaV1<unknown, never> = {
      "~standard": {
        version: 1,
        vendor: "t",
        validate: () => ({ issues: [{ message: "no", path: ["a b", "0", 0, { key: "x" }] }] }),
      },
    };
    await assert.rejects(
      reg.getConfig("odd", deep),
      variant.name === "sealed"
        ? /does not match its schema at \$\["a b"\]\["0"\]\[0\]\.x \(the value is sealed/
        : /does not match its schema: \$\["a b"\]\["0"\]\[0\]\.x: no$/,
    );
  },
);

/** A validator that quotes the value it received in its message, as valibot does. */
const quotingNumber: StandardSchemaV1<unknown, number> = {
  "~standard": {
    version: 1,
    vendor: "quoting",
    validate: (value) =>
      typeof value === "number"
        ? { value }
        : { issues: [{ message: `Invalid type: Expected number but received ${JSON.stringify(value)}` }] },
  },
};

variantTest(
  "a sealed registry's ConfigSchemaError message never carries the value; a plain one keeps the validator's message",
  async (engine, variant) => {
    await using reg = await variant.inMemory({ engine });
    await reg.setConfig("api_token", "sk-live-SECRET-123");
    await reg.setConfig("nested", { auth: { token: "sk-live-NESTED-456" } });
    const nestedQuoting: StandardSchemaV1<unknown, never> = {
      "~standard": {
        version: 1,
        vendor: "quoting",
        validate: (value) => ({
          issues: [{
            message: `Expected number but received ${
              JSON.stringify((value as { auth: { token: string } }).auth.token)
            }`,
            path: ["auth", "token"],
          }],
        }),
      },
    };
    for (
      const [key, schema, secret, path] of [
        ["api_token", quotingNumber, "sk-live-SECRET-123", "$"],
        ["nested", nestedQuoting, "sk-live-NESTED-456", "$.auth.token"],
      ] as const
    ) {
      for (const read of [() => reg.getConfig(key, schema), () => reg.tryGetConfig(key, schema)]) {
        await assert.rejects(read(), (error: Error) => {
          assert.ok(error instanceof ConfigSchemaError);
          assert.equal(error.key, key);
          // The caller still gets the validator's issues, as it reported them.
          assert.equal(error.issues.length, 1);
          assert.match(error.issues[0]!.message, new RegExp(secret));
          if (variant.name === "sealed") {
            assert.ok(!error.message.includes(secret), `the sealed value leaked into the message: ${error.message}`);
            assert.ok(!String(error.stack).includes(secret), "the sealed value leaked into the stack");
            assert.equal(
              error.message,
              `serialization error: value of config key '${key}' does not match its schema at ${path} ` +
                "(the value is sealed: the validator's messages are withheld, see .issues)",
            );
          } else {
            assert.equal(
              error.message,
              `serialization error: value of config key '${key}' does not match its schema: ${path}: ` +
                error.issues[0]!.message,
            );
          }
          return true;
        });
      }
    }
  },
);

variantTest(
  "a validator whose validate returns no Standard Schema result is a TypeError naming the broken contract",
  async (engine, variant) => {
    await using reg = await variant.inMemory({ engine });
    await reg.setConfig("k", "sk-live-SECRET-123");
    const returning = (result: unknown): StandardSchemaV1 => ({
      "~standard": { version: 1, vendor: "broken", validate: () => result as never },
    });
    for (
      const result of [
        undefined,
        null,
        42,
        Promise.resolve(undefined),
        {},
        { issues: "bad" },
        { issues: [undefined] },
        { issues: [{ message: 1 }] },
        { issues: [{ message: "m", path: "x" }] },
      ]
    ) {
      for (
        const read of [() => reg.getConfig("k", returning(result)), () => reg.tryGetConfig("k", returning(result))]
      ) {
        await assert.rejects(read(), (error: Error) => {
          assert.ok(error instanceof TypeError, `${JSON.stringify(result)}: ${error}`);
          assert.match(
            error.message,
            /'~standard\.validate' \(vendor "broken"\) broke the Standard Schema v1 contract/,
          );
          assert.ok(!error.message.includes("sk-live"));
          return true;
        });
      }
    }
    // A result with `value: undefined` is a valid success.
    assert.equal(await reg.getConfig("k", returning({ value: undefined })), undefined);
  },
);

variantTest(
  "with a schema, a missing key is still ConfigNotFoundError for getConfig and undefined for tryGetConfig",
  async (engine, variant) => {
    await using reg = await variant.inMemory({ engine });
    await assert.rejects(reg.getConfig("missing", endpoint), ConfigNotFoundError);
    assert.equal(await reg.tryGetConfig("missing", endpoint), undefined);
  },
);

Deno.test("a schema that is not a Standard Schema v1 validator is a TypeError", async () => {
  const { StateRegistry } = await import("@oxide/registry");
  await using reg = await StateRegistry.inMemory();
  await reg.setConfig("k", 1);
  const notSchemas = [{}, { "~standard": { version: 2, validate: () => ({ value: 1 }) } }, { "~standard": {} }, 1];
  for (const schema of notSchemas) {
    await assert.rejects(reg.getConfig("k", schema as never), TypeError);
    await assert.rejects(reg.tryGetConfig("k", schema as never), TypeError);
  }
});

Deno.test("a zod schema works as it is, typed by its output (a fresh project importing zod from npm)", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(
    `${dir.path}/deno.json`,
    JSON.stringify({
      imports: { "zod": "npm:zod@3.25.76", "@oxide/registry": new URL("../mod.ts", import.meta.url).href },
    }),
  );
  await Deno.writeTextFile(
    `${dir.path}/main.ts`,
    `import { z } from "zod";
import { ConfigSchemaError, StateRegistry } from "@oxide/registry";
await using reg = await StateRegistry.inMemory({ engine: "node" });
const schema = z.object({ url: z.string().url(), retries: z.number().int(), hosts: z.array(z.string()) });
await reg.setConfig("endpoint", { url: "https://example.com", retries: "3", hosts: ["a", 7] });
const error = await reg.getConfig("endpoint", schema).catch((e) => e);
console.log(error instanceof ConfigSchemaError, error.message);
await reg.setConfig("endpoint", { url: "https://example.com", retries: 3, hosts: ["a", "b"] });
const value = await reg.getConfig("endpoint", schema);
const retries: number = value.retries; // Typed by the schema: deno check fails if it is not.
console.log(retries + 1, value.hosts.join("+"));
`,
  );
  const check = await runDeno(["check", "main.ts"], { cwd: dir.path });
  if (
    check.code !== 0 && /registry\.npmjs\.org|npm package|Failed to download|error sending request/i.test(check.stderr)
  ) {
    console.log(`skipped: zod is not available from npm here (${check.stderr.trim().split("\n").at(-1)})`);
    return;
  }
  assert.equal(check.code, 0, check.stderr);
  const run = await runDeno(["run", "main.ts"], { cwd: dir.path });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(
    run.stdout,
    "true serialization error: value of config key 'endpoint' does not match its schema: " +
      "$.retries: Expected number, received string; $.hosts[1]: Expected string, received number\n4 a+b\n",
  );
});
