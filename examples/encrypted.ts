/**
 * An encrypted registry under ./data, keyed from the environment, with the
 * least permission that needs:
 *
 *   OXIDE_REGISTRY_KEY='a long passphrase' deno task example:encrypted
 *
 * which runs `deno run --allow-ffi --allow-read=./data --allow-write=./data
 * --allow-env=OXIDE_REGISTRY_KEY examples/encrypted.ts`. Config values are
 * sealed (envelope scheme); module metadata stays readable without the key.
 * A second run with the same key finds the first run's state; with another
 * key it stops at open with a wrong-key error.
 */
import { KernelError, StateRegistry } from "../mod.ts";

const DATA_DIR = "./data";
const path = `${DATA_DIR}/encrypted.db`;

try {
  const key = StateRegistry.keyFromEnv();
  await Deno.mkdir(DATA_DIR, { recursive: true });
  await using reg = await StateRegistry.openEncrypted(path, key);

  const runs = (await reg.tryGetConfig<number>("example.runs")) ?? 0;
  const { scheme, keyId } = reg.sealing!;
  console.log(
    `registry: ${path} (engine: ${reg.engine}, scheme: ${scheme}, data key: ${keyId}, previous runs: ${runs})`,
  );

  await reg.upsertModule({
    id: "vault",
    name: "Vault",
    version: "0.1.0",
    kind: "native",
    description: "Holds the kernel's API credentials.",
  }, "running");
  await reg.setConfig("vault.api_token", "tok_example_not_a_real_secret");
  await reg.setConfig("example.runs", runs + 1);

  const token = await reg.getConfig<string>("vault.api_token");
  console.log(`vault.api_token opens to a ${token.length}-character token`);
  console.log(`modules: ${(await reg.listModules()).map((m) => `${m.id} (${m.state})`).join(", ")}`);
} catch (error) {
  if (!(error instanceof KernelError)) throw error;
  console.error(`error: ${error.message}`);
  Deno.exit(1);
}
