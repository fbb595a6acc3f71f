// The registry variants every durability, concurrency and hostile-input test runs against, on both engines:
// plain, and sealed (envelope scheme, raw key bytes so no test pays for PBKDF2). Also imported by the worker scripts
// in tests/fixtures/, so a subprocess opens exactly the variant its parent names.
import { type EngineName, type RegistryOptions, StateRegistry } from "@oxide/registry";
import { ENGINES } from "./_helpers.ts";

/** One way of opening a registry. */
export interface RegistryVariant {
  /** `"plain"` or `"sealed"`: part of the test name, and what a worker is told to open. */
  readonly name: string;
  /** Opens (creating if missing) the registry file at `path`. */
  connect(path: string, options?: RegistryOptions): Promise<StateRegistry>;
  /** Opens a private in-memory registry. */
  inMemory(options?: RegistryOptions): Promise<StateRegistry>;
}

/** The key of sealed test registries: 32 raw bytes (a test key, not a secret). */
export const SEALED_TEST_KEY: Uint8Array = new Uint8Array(32).map((_, i) => (i * 37 + 11) & 0xff);

/** Every variant. Adding one here adds it to every test that uses {@linkcode variantTest} or {@linkcode VARIANTS}. */
export const VARIANTS: readonly RegistryVariant[] = [
  {
    name: "plain",
    connect: (path, options) => StateRegistry.connect(path, options),
    inMemory: (options) => StateRegistry.inMemory(options),
  },
  {
    name: "sealed",
    connect: (path, options) => StateRegistry.openEncrypted(path, SEALED_TEST_KEY, options),
    inMemory: (options) => StateRegistry.openEncrypted(":memory:", SEALED_TEST_KEY, options),
  },
];

/** The variant called `name`. */
export function variantNamed(name: string): RegistryVariant {
  const variant = VARIANTS.find((v) => v.name === name);
  if (variant === undefined) throw new TypeError(`no registry variant '${name}'`);
  return variant;
}

/** Registers `fn` once per engine and variant, named `"<name> [<engine>, <variant>]"`. */
export function variantTest(
  name: string,
  fn: (engine: EngineName, variant: RegistryVariant) => Promise<void>,
): void {
  for (const engine of ENGINES) {
    for (const variant of VARIANTS) {
      Deno.test(`${name} [${engine}, ${variant.name}]`, () => fn(engine, variant));
    }
  }
}
