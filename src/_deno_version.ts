// The oldest Deno this module runs on, checked when a registry opens: older releases fail with unrelated errors
// (node:sqlite's "column index out of range" before 2.6.4, "toBase64 is not a function" before 2.5).
import { RegistryError } from "./errors.ts";

/** The oldest Deno release the test suite passes on; also `engines.deno` in deno.json. */
export const MIN_DENO_VERSION = "2.6.4";

/**
 * Refuses a Deno older than {@linkcode MIN_DENO_VERSION}.
 *
 * @param version The running Deno's version (`Deno.version.deno`).
 * @throws {RegistryError} naming the version needed and the one running.
 */
export function checkDenoVersion(version: string = Deno.version.deno): void {
  if (compareVersions(version, MIN_DENO_VERSION) >= 0) return;
  throw new RegistryError(
    `@oxide/registry needs Deno ${MIN_DENO_VERSION} or newer, and this is Deno ${version} ` +
      "(older releases fail with unrelated errors): upgrade with `deno upgrade`",
  );
}

/** Compares `major.minor.patch` versions (a pre-release suffix is ignored); negative when `a` is older. */
function compareVersions(a: string, b: string): number {
  const parse = (v: string) => v.split(/[-+]/)[0]!.split(".").map((part) => Number.parseInt(part, 10) || 0);
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < 3; i++) {
    const diff = (x[i] ?? 0) - (y[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}
