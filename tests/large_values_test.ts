// Values up to the size limit, sealed (both schemes) and plain: whatever the registry accepts reads back, survives
// reopening and re-sealing, and one byte more is refused before anything is written. Plain values run on both
// engines (each engine moves the text in and out of SQLite); sealing works on stored text above the store, so each
// scheme runs on one engine, one each: both engines still carry a sealed value of the limit (base64 text of 86 MiB,
// decoded without a backtracking pattern). One 64 MiB value costs about 0.5 GB of memory while it is sealed.
import assert from "node:assert/strict";
import { MAX_CONFIG_VALUE_BYTES, SerializationError, StateRegistry } from "@oxide/registry";
import { checkValueSize } from "../src/limits.ts";
import { ENGINES, engineTest, runDeno, tempDir } from "./_helpers.ts";

const KEY = new Uint8Array(32).fill(0x3c);
const OTHER_KEY = new Uint8Array(32).fill(0xc3);

/** A string whose JSON text is exactly `bytes` bytes (two quotes and ASCII letters). */
function valueOfJsonBytes(bytes: number): string {
  return "x".repeat(bytes - 2);
}

/** The largest value and one byte too many, for `open`'s registry; `reopen` opens it again after the writes. */
async function checkLargest(
  open: () => Promise<StateRegistry>,
  afterWrite: (reg: StateRegistry) => Promise<void>,
): Promise<void> {
  const largest = valueOfJsonBytes(MAX_CONFIG_VALUE_BYTES);
  {
    await using reg = await open();
    // "a" sorts first: an oxide-k registry's key check at open tries it before any other value.
    await reg.setConfig("a.largest", largest);
    assert.equal(await reg.getConfig("a.largest"), largest);
    await afterWrite(reg);
    assert.equal(await reg.getConfig("a.largest"), largest);
    await assert.rejects(
      reg.setConfig("a.largest", `${largest}y`),
      (error: unknown) =>
        error instanceof SerializationError &&
        error.message.includes(`larger than the ${MAX_CONFIG_VALUE_BYTES} bytes (64 MiB)`) &&
        error.message.includes("'a.largest'"),
    );
  }
  await using again = await open();
  assert.equal(await again.getConfig("a.largest"), largest);
}

engineTest("a plain value of MAX_CONFIG_VALUE_BYTES reads back; one byte more is refused", async (engine) => {
  await using dir = await tempDir();
  await checkLargest(() => StateRegistry.connect(dir.file("r.db"), { engine }), async () => {});
});

Deno.test("an envelope-sealed value of MAX_CONFIG_VALUE_BYTES reads back, rotates and rekeys [node]", async () => {
  const engine = "node";
  await using dir = await tempDir();
  let key = KEY;
  await checkLargest(
    () => StateRegistry.openEncrypted(dir.file("r.db"), key, { engine }),
    async (reg) => {
      assert.equal(await reg.rotateDataKey(), 1);
      await reg.rekey(OTHER_KEY);
      key = OTHER_KEY;
    },
  );
});

Deno.test("an oxide-k sealed value of MAX_CONFIG_VALUE_BYTES reads back, rekeys and opens first [ffi]", async () => {
  const engine = "ffi";
  await using dir = await tempDir();
  let key = KEY;
  await checkLargest(
    () => StateRegistry.openEncrypted(dir.file("r.db"), key, { engine, scheme: "oxide-k" }),
    async (reg) => {
      await reg.rekey(OTHER_KEY);
      key = OTHER_KEY;
    },
  );
});

Deno.test("the size limit counts UTF-8 bytes, not UTF-16 units", async () => {
  await using reg = await StateRegistry.inMemory();
  // Two bytes per "é": half the limit in characters is the limit plus the quotes in bytes.
  const value = "é".repeat(MAX_CONFIG_VALUE_BYTES / 2);
  await assert.rejects(reg.setConfig("wide", value), SerializationError);
  assert.equal(await reg.tryGetConfig("wide"), undefined);
  // One character less fits: the check passes it (writing it would prove again what the tests above prove).
  const fits = JSON.stringify("é".repeat(MAX_CONFIG_VALUE_BYTES / 2 - 1));
  assert.equal(checkValueSize("wide", fits), fits);
  assert.throws(() => checkValueSize("wide", JSON.stringify(value)), SerializationError);
});

const RSS_FIXTURE = new URL("./fixtures/large_write_rss.ts", import.meta.url).pathname;

for (const engine of ENGINES) {
  Deno.test(`after a write of MAX_CONFIG_VALUE_BYTES and close, no large scratch memory stays alive [${engine}]`, async () => {
    await using dir = await tempDir();
    const rss: Record<string, number> = {};
    for (const size of ["small", "large"]) {
      const { code, stdout, stderr } = await runDeno([
        "run",
        "--allow-all",
        "--v8-flags=--expose-gc",
        RSS_FIXTURE,
        dir.file(`${size}.db`),
        engine,
        size,
      ]);
      assert.equal(code, 0, stderr);
      rss[size] = JSON.parse(stdout).rss;
    }
    // The value (64 MiB) and its UTF-8 copies are garbage once closed; a generous bound, well below one copy.
    const kept = rss.large! - rss.small!;
    assert.ok(kept < 40 * 1024 * 1024, `${(kept / 2 ** 20).toFixed(1)} MiB more stays resident after the large write`);
  });
}
