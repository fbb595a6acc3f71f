/**
 * Sealed registries on etcd (fleet mode): openEncrypted on an etcd address,
 * both schemes, the sealing state in the cluster under the registry's
 * namespace; sealed get/set/batch/list/history/watch; re-sealing in chunks
 * (rotateDataKey, convertToEnvelope, sealPlainValues, rekey), resumable after
 * a SIGKILL of the process running it, with every value readable at every
 * point and no value (history included) left under the retired key; seal
 * counting per data key.
 */

import assert from "node:assert/strict";
import { CryptoError, KeyRequiredError, type SealingInfo, StateRegistry } from "@oxide/registry";
import { EtcdStore } from "../src/store/etcd/store.ts";
import { setSealLimitsForTesting } from "../src/sealing/sealing.ts";
import { addressOf, etcdEndpoints, etcdTest } from "./_etcd.ts";
import { tempDir } from "./_helpers.ts";

const KEY = new Uint8Array(32).fill(0x3c);
const PASSPHRASE = "correct horse battery staple";
const SECOND_PASSPHRASE = "second passphrase";

/** Every stored config value (live and history's past ones) of a namespace, with the key id it names. */
async function storedKeyIds(
  address: string,
): Promise<{ live: Map<string, string>; past: string[]; distinct: number }> {
  await using store = await EtcdStore.open(address);
  const live = new Map<string, string>();
  const texts = new Set<string>();
  let after: string | undefined;
  while (true) {
    const page = await store.range({ space: "config", prefix: "", after, limit: 500 });
    for (const e of page.entries) {
      live.set(e.key, keyIdOf(e.value));
      texts.add(`${e.key}\0${e.value}`);
    }
    if (!page.more || page.entries.length === 0) break;
    after = page.entries.at(-1)!.key;
  }
  const past: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.pastEntries("config", { cursor, limit: 500 });
    for (const e of page.entries) {
      past.push(keyIdOf(e.value));
      texts.add(`${e.key}\0${e.value}`);
    }
    cursor = page.cursor;
  } while (cursor !== undefined);
  return { live, past, distinct: texts.size };
}

/** The oxide-k value key of a passphrase (SHA-256), imported by independent code. */
async function oxideKKeyOf(passphrase: string): Promise<CryptoKey> {
  const raw = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(passphrase));
  return await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
}

/** The data key id an envelope value names, `"oxide-k"` for other sealed text, `"plain"` for JSON. */
function keyIdOf(stored: string): string {
  if (stored.startsWith("$oxide1$")) return stored.split("$")[2]!;
  try {
    JSON.parse(stored);
    return "plain";
  } catch {
    return "oxide-k";
  }
}

etcdTest(
  "openEncrypted() on etcd: sealed config through get, set, batch, list, history and watch, both schemes",
  "cluster",
  async (t) => {
    for (const scheme of ["envelope", "oxide-k"] as const) {
      await t.step(scheme, async () => {
        const address = addressOf(etcdEndpoints()!);
        await using a = await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme });
        assert.equal(a.sealing?.scheme, scheme);
        await a.setConfig("api.token", "s3cr3t");
        await a.setConfig("api.token", "s3cr3t-2", { ifVersion: 1 });
        await a.batch().setConfig("db.url", "postgres://x").setConfig("db.pool", { size: 4 }).commit();
        assert.equal(await a.update<number>("hits", (n) => (n ?? 0) + 1).then((e) => e?.value), 1);
        // Another machine, the same passphrase: the sealing state lives in the cluster.
        await using b = await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme });
        assert.equal(await b.getConfig("api.token"), "s3cr3t-2");
        assert.deepEqual((await b.listConfig({ prefix: "db." })).map((e) => [e.key, e.value]), [
          ["db.pool", { size: 4 }],
          ["db.url", "postgres://x"],
        ]);
        assert.deepEqual((await b.configHistory("api.token")).map((v) => v.value), ["s3cr3t-2", "s3cr3t"]);
        // What the cluster holds is sealed.
        {
          await using store = await EtcdStore.open(address);
          const raw = await store.getValue("config", "api.token");
          assert.ok(raw !== undefined && !raw.includes("s3cr3t"), raw);
          assert.ok((await store.get("meta", "sealing"))?.value.includes(`"scheme":"${scheme}"`));
        }
        const ac = new AbortController();
        const events = b.watch({ prefix: "api.", signal: ac.signal });
        const next = events.next();
        await a.setConfig("api.token", "rotated-token");
        const event = (await next).value;
        assert.equal(event?.key, "api.token");
        assert.equal(event?.value, "rotated-token", "watch events are opened");
        ac.abort();
        // Without the key: reads and writes are refused, never plaintext or ciphertext.
        await using keyless = await StateRegistry.connect(address);
        await assert.rejects(keyless.getConfig("api.token"), KeyRequiredError);
        await assert.rejects(
          keyless.setConfig("x", 1),
          (e) => e instanceof KeyRequiredError && e.message.includes(`(${scheme} scheme)`),
        );
        assert.equal(await a.tryGetConfig("x"), undefined, "the keyless write wrote nothing");
        // The wrong key fails at open (envelope scheme: the wrapped data key; oxide-k: a stored value).
        await assert.rejects(StateRegistry.openEncrypted(address, "wrong passphrase", { scheme }), /wrong key/);
      });
    }
  },
);

/** Fills a sealed registry: `keys` config keys, each written `versions` times, in batches. */
async function fill(reg: StateRegistry, keys: number, versions: number): Promise<Map<string, unknown>> {
  const expected = new Map<string, unknown>();
  for (let v = 1; v <= versions; v++) {
    for (let start = 0; start < keys; start += 50) {
      let batch = reg.batch();
      for (let i = start; i < Math.min(keys, start + 50); i++) {
        const key = `k${String(i).padStart(4, "0")}`;
        const value = { i, v, pad: "x".repeat(i % 40) };
        batch = batch.setConfig(key, value);
        expected.set(key, value);
      }
      await batch.commit();
    }
  }
  return expected;
}

async function assertAllOpen(reg: StateRegistry, expected: Map<string, unknown>): Promise<void> {
  let page = await reg.listConfig({ limit: 400 });
  const seen = new Map<string, unknown>();
  while (true) {
    for (const e of page) seen.set(e.key, e.value);
    if (page.cursor === undefined) break;
    page = await reg.listConfig({ limit: 400, cursor: page.cursor });
  }
  assert.deepEqual(seen, expected);
  // History rows open too (a sample: every 37th key).
  for (const key of [...expected.keys()].filter((_, i) => i % 37 === 0)) {
    const versions = await reg.configHistory(key);
    assert.ok(versions.length >= 2, key);
    assert.deepEqual(versions[0]!.value, expected.get(key));
  }
}

etcdTest(
  "rotateDataKey(), sealPlainValues() and rekey() on etcd re-seal in chunks over the transaction limit, history included",
  "cluster",
  async () => {
    const address = addressOf(etcdEndpoints()!);
    await using reg = await StateRegistry.openEncrypted(address, KEY);
    const expected = await fill(reg, 150, 2);
    const before = reg.sealing!.keyId!;
    const progress: [number, number][] = [];
    const onProgress = (done: number, total: number) => progress.push([done, total]);
    assert.equal(
      await reg.rotateDataKey({ onProgress }),
      150,
      "every live value re-sealed (150 > 63 writes per transaction)",
    );
    // onProgress after each transaction: several, counting up to every value rewritten (history's included).
    assert.ok(progress.length > 3, `one call per transaction: ${JSON.stringify(progress)}`);
    const [last, total] = progress.at(-1)!;
    assert.ok(last === total && total >= 450, `ends at the total: ${JSON.stringify(progress)}`);
    assert.ok(progress.every(([done], i) => i === 0 || done >= progress[i - 1]![0]), "never goes back");
    const after = reg.sealing!.keyId!;
    assert.notEqual(after, before);
    assert.equal(reg.sealing?.pending, undefined);
    const ids = await storedKeyIds(address);
    assert.deepEqual(new Set(ids.live.values()), new Set([after]));
    assert.deepEqual(new Set(ids.past), new Set([after]), "no history row under the retired key");
    assert.ok(ids.past.length >= 300, `history kept: ${ids.past.length}`);
    await assertAllOpen(reg, expected);
    // Plain values (written by a keyless handle before the registry was sealed) sealed in chunks too.
    const plainAddress = addressOf(etcdEndpoints()!);
    {
      await using plain = await StateRegistry.connect(plainAddress);
      for (let start = 0; start < 100; start += 50) {
        let batch = plain.batch();
        for (let i = start; i < start + 50; i++) batch = batch.setConfig(`p${i}`, i);
        await batch.commit();
      }
    }
    await using sealed = await StateRegistry.openEncrypted(plainAddress, KEY);
    assert.equal(await sealed.sealPlainValues(), 100);
    const plainIds = await storedKeyIds(plainAddress);
    assert.deepEqual(new Set(plainIds.live.values()), new Set([sealed.sealing!.keyId!]));
    assert.deepEqual(new Set(plainIds.past), new Set([sealed.sealing!.keyId!]));
    assert.equal(await sealed.getConfig("p42"), 42);
    // rekey in the envelope scheme: one transaction (the data key re-wrapped), values untouched.
    await reg.rekey("a new passphrase");
    await assert.rejects(StateRegistry.openEncrypted(address, KEY), /wrong key/);
    await using again = await StateRegistry.openEncrypted(address, "a new passphrase");
    assert.equal(again.sealing?.keyId, after);
    assert.deepEqual(await again.getConfig("k0007"), expected.get("k0007"));
  },
);

etcdTest(
  "convertToEnvelope() and an oxide-k rekey() on etcd re-seal every value in chunks",
  "cluster",
  async () => {
    const address = addressOf(etcdEndpoints()!);
    await using reg = await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" });
    const expected = await fill(reg, 120, 2);
    await reg.rekey("second passphrase");
    await assert.rejects(StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" }), /wrong key/);
    {
      await using other = await StateRegistry.openEncrypted(address, "second passphrase", { scheme: "oxide-k" });
      await assertAllOpen(other, expected);
    }
    assert.equal(await reg.convertToEnvelope(KEY), 120);
    assert.equal(reg.sealing?.scheme, "envelope");
    const ids = await storedKeyIds(address);
    assert.deepEqual(new Set(ids.live.values()), new Set([reg.sealing!.keyId!]));
    assert.deepEqual(new Set(ids.past), new Set([reg.sealing!.keyId!]), "no history row left in the oxide-k scheme");
    await using envelope = await StateRegistry.openEncrypted(address, KEY);
    await assertAllOpen(envelope, expected);
  },
);

etcdTest("seals are counted per data key in the cluster; the data key rotates at the limit", "cluster", async () => {
  using _limits = setSealLimitsForTesting({ rotateAt: 8, refuseAt: 1000, reserve: 1 });
  const address = addressOf(etcdEndpoints()!);
  await using reg = await StateRegistry.openEncrypted(address, KEY);
  for (const key of ["a", "b", "c"]) await reg.setConfig(key, key);
  assert.equal(reg.sealing?.sealCount, 3);
  await using other = await StateRegistry.openEncrypted(address, KEY);
  assert.equal(other.sealing?.sealCount, 3, "the count lives in the cluster");
  await other.setConfig("d", 1);
  await reg.setConfig("e", 1);
  assert.equal(reg.sealing?.sealCount, 5, "both handles add to one count");
  const first = reg.sealing!.keyId;
  for (let i = 0; i < 3; i++) await reg.setConfig("a", i);
  assert.notEqual(reg.sealing!.keyId, first, "rotated at the 8th seal");
  const ids = await storedKeyIds(address);
  assert.deepEqual(new Set([...ids.live.values(), ...ids.past]), new Set([reg.sealing!.keyId!]));
  // The new key's count starts with what the rotation sealed: each distinct stored text, live or past, once.
  assert.equal(reg.sealing!.sealCount, ids.distinct);
  assert.equal(await other.getConfig("a"), 2);
});

/**
 * Starts `operation` in a child process against `address`, with a small transaction limit (so it takes many
 * transactions), and SIGKILLs it once it has sent `killAt` write transactions after the new key became pending (the
 * child reports each transaction it sends on stdout). Returns the pending key's id.
 */
async function killHalfWay(
  address: string,
  operation: "rotateDataKey" | "convertToEnvelope" | "rekey",
  killAt: number,
): Promise<string> {
  await using dir = await tempDir();
  const script = dir.file("reseal.ts");
  const open = operation === "rotateDataKey"
    ? `StateRegistry.openEncrypted(address, key, { etcd })`
    : `StateRegistry.openEncrypted(address, ${JSON.stringify(PASSPHRASE)}, { scheme: "oxide-k", etcd })`;
  await Deno.writeTextFile(
    script,
    `import { StateRegistry } from ${JSON.stringify(import.meta.resolve("../mod.ts"))};
const [address] = Deno.args;
const key = new Uint8Array(32).fill(0x3c);
const etcd = { maxTxnOps: 16 };
const line = new TextEncoder().encode("txn\\n");
const send = globalThis.fetch;
globalThis.fetch = (input, init) => {
  if (String(input).endsWith("/v3/kv/txn") && String(init?.body ?? "").includes("request_put")) Deno.stdout.writeSync(line);
  return send(input, init);
};
const reg = await ${open};
await Deno.stdout.write(new TextEncoder().encode("opened\\n"));
await reg.${operation}(${
      operation === "convertToEnvelope" ? "key" : operation === "rekey" ? JSON.stringify(SECOND_PASSPHRASE) : ""
    });
await Deno.stdout.write(new TextEncoder().encode("done\\n"));
await reg.close();`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", script, address],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const errors = (async () => {
    let text = "";
    while (true) {
      const { value, done } = await stderr.read();
      if (done) return text;
      text += value;
    }
  })();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  await using store = await EtcdStore.open(address);
  let pendingKey: string | undefined;
  let sinceOpened = 0;
  while (sinceOpened < killAt) {
    const { value, done } = await stdout.read();
    if (done) assert.fail(`the child ended before half-way: ${out.slice(-200)} ${await errors}`);
    out += value;
    assert.ok(!out.includes("done"), "the re-sealing finished before it was killed");
    if (pendingKey === undefined) {
      if (!out.includes("opened")) continue;
      const sealing = JSON.parse((await store.get("meta", "sealing"))!.value) as {
        pending?: { key_id?: string; operation?: string };
      };
      // An oxide-k rekey's new key has no id: its values are "oxide-k" as the old ones.
      pendingKey = sealing.pending?.operation === undefined ? undefined : sealing.pending.key_id ?? "oxide-k";
      if (pendingKey === undefined) continue;
      out = "";
    }
    sinceOpened = (out.match(/txn/g) ?? []).length;
  }
  child.kill("SIGKILL");
  await stdout.cancel();
  assert.equal((await child.status).signal, "SIGKILL");
  await errors;
  return pendingKey!;
}

etcdTest(
  "rotateDataKey() and convertToEnvelope() on etcd killed half-way: every value opens, and running it again finishes",
  "cluster",
  async (t) => {
    for (const operation of ["rotateDataKey", "convertToEnvelope"] as const) {
      await t.step(operation, async () => {
        const address = addressOf(etcdEndpoints()!);
        let expected: Map<string, unknown>;
        let oldId: string;
        {
          await using reg = operation === "rotateDataKey"
            ? await StateRegistry.openEncrypted(address, KEY)
            : await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" });
          expected = await fill(reg, 200, 2);
          oldId = operation === "rotateDataKey" ? reg.sealing!.keyId! : "oxide-k";
        }
        const pendingKey = await killHalfWay(address, operation, 150);
        // Half-way: values under the old and the new key, all readable, by a handle opened now.
        const mid = await storedKeyIds(address);
        const all = [...mid.live.values(), ...mid.past];
        assert.ok(all.includes(oldId) && all.includes(pendingKey), `both keys hold values: ${new Set(all).size}`);
        {
          await using reg = operation === "rotateDataKey"
            ? await StateRegistry.openEncrypted(address, KEY)
            : await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" });
          assert.equal((reg.sealing as SealingInfo).pending, operation);
          await assertAllOpen(reg, expected);
          // A write meanwhile goes under the pending key.
          await reg.setConfig("k0000", { written: "mid-way" });
          expected.set("k0000", { written: "mid-way" });
          // Run again: it finishes.
          if (operation === "rotateDataKey") await reg.rotateDataKey();
          else await reg.convertToEnvelope(KEY);
          assert.equal(reg.sealing?.pending, undefined);
          assert.equal(reg.sealing?.keyId, pendingKey, "the stopped operation's key is the one made active");
          await assertAllOpen(reg, expected);
        }
        const done = await storedKeyIds(address);
        assert.deepEqual(new Set(done.live.values()), new Set([pendingKey]));
        assert.deepEqual(new Set(done.past), new Set([pendingKey]), "no history row under the retired key");
        await using reopened = await StateRegistry.openEncrypted(address, KEY);
        assert.equal(reopened.sealing?.scheme, "envelope");
        await assertAllOpen(reopened, expected);
      });
    }
  },
);

etcdTest(
  "an oxide-k rekey() on etcd killed half-way: the old key opens every value, and running it again finishes",
  "cluster",
  async () => {
    const address = addressOf(etcdEndpoints()!);
    let expected: Map<string, unknown>;
    {
      await using reg = await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" });
      expected = await fill(reg, 200, 2);
    }
    await killHalfWay(address, "rekey", 150);
    // Half-way: live values under each passphrase (decrypted by independent code).
    const under = { old: 0, new: 0 };
    {
      await using store = await EtcdStore.open(address);
      const keys = {
        old: await oxideKKeyOf(PASSPHRASE),
        new: await oxideKKeyOf(SECOND_PASSPHRASE),
      };
      const page = await store.range({ space: "config", prefix: "" });
      for (const entry of page.entries) {
        const blob = Uint8Array.fromBase64(entry.value, { alphabet: "base64url" });
        for (const which of ["old", "new"] as const) {
          const opened = await crypto.subtle.decrypt(
            { name: "AES-GCM", iv: blob.subarray(0, 12) },
            keys[which],
            blob.subarray(12),
          ).then(() => true, () => false);
          if (opened) under[which]++;
        }
      }
      assert.equal(under.old + under.new, page.entries.length, "each value opens under one of the two");
    }
    assert.ok(under.old > 0 && under.new > 0, `values under both passphrases: ${JSON.stringify(under)}`);
    {
      // Values are under both passphrases now; a handle with the old one opens all (the new key is sealed under it).
      await using reg = await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" });
      assert.equal(reg.sealing?.pending, "rekey");
      await assertAllOpen(reg, expected);
      await assert.rejects(reg.rekey("a third passphrase"), /a rekey\(\) of .* to another key is under way/);
      await reg.rekey(SECOND_PASSPHRASE);
      assert.equal(reg.sealing?.pending, undefined);
      await assertAllOpen(reg, expected);
    }
    await assert.rejects(StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" }), /wrong key/);
    await using reopened = await StateRegistry.openEncrypted(address, SECOND_PASSPHRASE, { scheme: "oxide-k" });
    await assertAllOpen(reopened, expected);
  },
);

etcdTest(
  "an oxide-k rekey() on etcd killed half-way refuses the new passphrase at open, naming the stopped rekey",
  "cluster",
  async () => {
    const address = addressOf(etcdEndpoints()!);
    let expected: Map<string, unknown>;
    {
      await using reg = await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" });
      expected = await fill(reg, 200, 2);
    }
    await killHalfWay(address, "rekey", 60);
    // The new passphrase opens some values but not the pending key (sealed under the old one): a handle with it
    // would read half the values as a wrong key and report no re-sealing under way.
    await assert.rejects(
      StateRegistry.openEncrypted(address, SECOND_PASSPHRASE, { scheme: "oxide-k" }),
      CryptoError,
      "a rekey() of",
    );
    await using reg = await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" });
    assert.equal(reg.sealing?.pending, "rekey");
    await assertAllOpen(reg, expected);
  },
);

etcdTest(
  "a convertToEnvelope() on etcd killed half-way, opened with its new key, names the stopped conversion",
  "cluster",
  async () => {
    const address = addressOf(etcdEndpoints()!);
    let expected: Map<string, unknown>;
    {
      await using reg = await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" });
      expected = await fill(reg, 200, 2);
    }
    await killHalfWay(address, "convertToEnvelope", 60);
    // Reopening with the envelope key after a crash is the natural move; the answer must not be "downgraded".
    await assert.rejects(
      StateRegistry.openEncrypted(address, KEY),
      (error: Error) =>
        error instanceof CryptoError && /convertToEnvelope\(\) of .* stopped half-way/.test(error.message),
    );
    await assert.rejects(StateRegistry.openEncrypted(address, KEY, { scheme: "oxide-k" }), CryptoError);
    await using reg = await StateRegistry.openEncrypted(address, PASSPHRASE, { scheme: "oxide-k" });
    assert.equal(reg.sealing?.pending, "convertToEnvelope");
    await reg.convertToEnvelope(KEY);
    await assertAllOpen(reg, expected);
  },
);
