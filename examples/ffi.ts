/**
 * The FFI engine: our own binding to the system libsqlite3, or to the library
 * named by `OXIDE_SQLITE_PATH`.
 *
 *   deno task example:ffi
 *   OXIDE_SQLITE_PATH=/opt/sqlite/lib/libsqlite3.so deno task example:ffi
 *
 * which runs `deno run --allow-ffi --allow-read=./data --allow-write=./data
 * --allow-env=OXIDE_SQLITE_PATH examples/ffi.ts`. It asks for the ffi engine
 * by name, so a missing `--allow-ffi` or library is an error, never a silent
 * switch to the node engine. `--allow-ffi` lets the process call any native
 * code: use the node engine (`deno task example:least-privilege`) when the
 * process must stay sandboxed.
 */
import { KernelError, StateRegistry } from "@oxide/registry";

const DATA_DIR = "./data";
const path = `${DATA_DIR}/ffi.db`;

try {
  // The registry reads OXIDE_SQLITE_PATH itself; the example reads it too, to say which library it uses.
  const library = Deno.env.get("OXIDE_SQLITE_PATH") || "the system libsqlite3";

  await Deno.mkdir(DATA_DIR, { recursive: true });
  await using reg = await StateRegistry.connect(path, { engine: "ffi" });
  console.log(`registry: ${path}`);
  console.log(`engine: ${reg.engine} (SQLite ${reg.db.sqliteVersion} from ${library})`);

  const runs = (await reg.tryGetConfig<number>("example.runs")) ?? 0;
  await reg.upsertModule({
    id: "compress",
    name: "Compress",
    version: "1.0.0",
    kind: "native",
    description: "A native module loaded through the same FFI the registry uses.",
  }, "loaded");
  await reg.setModuleState("compress", "running");
  await reg.setConfig("compress.level", 9);
  await reg.setConfig("example.runs", runs + 1);

  const compress = await reg.getModule("compress");
  console.log(`module compress: ${compress?.kind}, ${compress?.state}`);
  console.log(`config compress.level = ${JSON.stringify(await reg.getConfig("compress.level"))}`);
  console.log(`runs: ${runs + 1}`);
} catch (error) {
  // Our errors name what failed (a missing permission names its flag); anything else keeps its stack trace.
  if (!(error instanceof KernelError)) throw error;
  console.error(`error: ${error.message}`);
  Deno.exit(1);
}
