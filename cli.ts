/**
 * The `oxide-registry` command-line tool: inspect and repair a registry file
 * from a terminal or a script. In this repository: `deno task cli <command>`;
 * installed: `deno install -g -n oxide-registry ...`; as one binary:
 * `deno compile`. See `docs/operators.md`.
 *
 * @example
 * ```ts
 * import { main } from "./cli.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(typeof main, "function"); // main(["info", "--db", "registry.db"]) resolves to the exit code.
 * ```
 *
 * @module
 */
import { main } from "./src/cli/main.ts";

export { main };

if (import.meta.main) Deno.exit(await main(Deno.args));
