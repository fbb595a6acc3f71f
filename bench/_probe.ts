// One measurement in a fresh process, for bench/compare.ts: prints a JSON object of milliseconds and KiB.
//
//   deno run --allow-ffi --allow-read=./data/bench --allow-write=./data/bench bench/_probe.ts MODE PATH FIRST_KEY
//
// MODE: import | raw-node | connect-ffi | connect-node | open-passphrase | open-raw-key | hold | read-all
const [mode, path, FIRST_KEY] = Deno.args;
if (mode === undefined || path === undefined || FIRST_KEY === undefined) {
  throw new Error("usage: _probe.ts MODE PATH FIRST_KEY");
}
const result: Record<string, number> = {};

/**
 * The largest resident set seen at the probe's checkpoints, in KiB. Not getrusage's ru_maxrss: Linux keeps that
 * across execve, so a child of the (large) benchmark process would report its parent's peak.
 */
let peak = 0;
function sample(): void {
  peak = Math.max(peak, Deno.memoryUsage().rss / 1024);
}

if (mode === "raw-node") {
  const { DatabaseSync } = await import("node:sqlite");
  let start = performance.now();
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000");
  const get = db.prepare("SELECT value FROM config WHERE key = ?1");
  result.open = performance.now() - start;
  start = performance.now();
  JSON.parse(get.get(FIRST_KEY)!.value as string);
  result.first = performance.now() - start;
  db.close();
} else {
  let start = performance.now();
  const { StateRegistry } = await import("../mod.ts");
  result.import = performance.now() - start;
  if (mode !== "import") {
    start = performance.now();
    const reg = mode === "open-passphrase"
      ? await StateRegistry.openEncrypted(path, "correct horse battery staple")
      : mode === "open-raw-key"
      ? await StateRegistry.openEncrypted(path, new Uint8Array(32).fill(7))
      : await StateRegistry.connect(path, { engine: mode === "connect-node" ? "node" : "ffi" });
    result.open = performance.now() - start;
    start = performance.now();
    await reg.getConfig(FIRST_KEY);
    result.first = performance.now() - start;
    sample();
    if (mode === "read-all") {
      const keys = reg.db.prepare("SELECT key FROM config ORDER BY key").all().map((row) => String(row.key));
      for (let i = 0; i < keys.length; i++) {
        await reg.getConfig(keys[i]!);
        if (i % 1000 === 0) sample();
      }
      result.read = keys.length;
    }
    await reg.close();
  }
}
sample();
result.peakKib = peak;
console.log(JSON.stringify(result));
