// Unit tests of the sealing formats in src/sealing/: byte layouts, key
// derivation, and how each failure is reported. Registry integration lives in
// sealing_test.ts.

import assert from "node:assert/strict";
import { CryptoError, OtherError, SealedValueError, WrongKeyError } from "../src/errors.ts";
import { fromBase64Url, toBase64Url } from "../src/sealing/_bytes.ts";
import { checkRegistryKey, keyFromEnv } from "../src/sealing/key.ts";
import { importOxideKKey, looksOxideKSealed, openOxideK, sealOxideK } from "../src/sealing/oxide_k.ts";
import {
  deriveKek,
  envelopeKeyId,
  generateDataKey,
  isEnvelopeSealed,
  MAX_PBKDF2_ITERATIONS,
  MIN_PBKDF2_ITERATIONS,
  newKdfParams,
  openEnvelope,
  sealedForKey,
  sealEnvelope,
  unwrapDataKey,
  wrapDataKey,
} from "../src/sealing/envelope.ts";
import {
  hasSyncTwin,
  loadNodeCrypto,
  nodeKey,
  openAesGcm,
  openWithNodeCrypto,
  openWithWebCrypto,
  sealAesGcm,
  sealWithNodeCrypto,
  sealWithWebCrypto,
} from "../src/sealing/_aes_gcm.ts";

const KEY_A = new Uint8Array(32).fill(0xa1);
const KEY_B = new Uint8Array(32).fill(0xb2);

/** Independent oxide-k decryption: SHA-256 of the passphrase, AES-GCM, no associated data. */
async function independentOxideKOpen(passphrase: string, stored: string): Promise<string> {
  const rawKey = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(passphrase));
  const key = await crypto.subtle.importKey("raw", rawKey, "AES-GCM", false, ["decrypt"]);
  const blob = Uint8Array.fromBase64(stored, { alphabet: "base64url", lastChunkHandling: "strict" });
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: blob.subarray(0, 12) },
    key,
    blob.subarray(12),
  );
  return new TextDecoder().decode(plain);
}

/** Returns `stored` with the character at `index` changed to another of its alphabet. */
function flipChar(stored: string, index: number): string {
  const c = stored[index]!;
  const replacement = c === "A" ? "B" : "A";
  return stored.slice(0, index) + replacement + stored.slice(index + 1);
}

async function newDataKey(key: Uint8Array = KEY_A) {
  return await generateDataKey(await deriveKek(key, { kdf: "raw" }));
}

Deno.test("toBase64Url() writes RFC 4648 URL-safe base64, padded or not", () => {
  const cases: [string, string, string][] = [
    ["", "", ""],
    ["f", "Zg==", "Zg"],
    ["fo", "Zm8=", "Zm8"],
    ["foo", "Zm9v", "Zm9v"],
    ["foob", "Zm9vYg==", "Zm9vYg"],
    ["fooba", "Zm9vYmE=", "Zm9vYmE"],
    ["foobar", "Zm9vYmFy", "Zm9vYmFy"],
  ];
  for (const [text, padded, unpadded] of cases) {
    const bytes = new TextEncoder().encode(text);
    assert.equal(toBase64Url(bytes, true), padded);
    assert.equal(toBase64Url(bytes, false), unpadded);
    assert.deepEqual(fromBase64Url(padded, true), bytes);
    assert.deepEqual(fromBase64Url(unpadded, false), bytes);
  }
  // The URL-safe alphabet: 0xfb 0xff -> "-_8=".
  assert.equal(toBase64Url(new Uint8Array([0xfb, 0xff]), true), "-_8=");
});

Deno.test("fromBase64Url() refuses anything but the one canonical encoding", async (t) => {
  const cases: [string, string, boolean][] = [
    ["missing padding", "Zg", true],
    ["padding where none is allowed", "Zg==", false],
    ["whitespace", "Zm9v Yg==", true],
    ["a newline", "Zm9v\nYg==", true],
    ["the standard alphabet", "+/8=", true],
    ["non-zero trailing bits", "Zh==", true],
    ["a lone final character", "Zm9vY", false],
    ["padding in the middle", "Zg==Zg==", true],
  ];
  for (const [name, text, padded] of cases) {
    await t.step(name, () => assert.equal(fromBase64Url(text, padded), undefined));
  }
});

Deno.test("openOxideK() opens values sealed by an independent AES-GCM implementation", async () => {
  // Made with Python `cryptography` (AESGCM, key = SHA-256("s3cr3t-key"),
  // nonce = 00 01 .. 0b, no associated data, base64.urlsafe_b64encode).
  const vectors: [string, string][] = [
    [
      '"my-super-secret-token"',
      "AAECAwQFBgcICQoLAIWoOTpMatwDV2lfREqTMlkIruf7pr7TLdzerMTkf652qLFP6I2q",
    ],
    [
      '{"url":"https://example.com","retries":3}',
      "AAECAwQFBgcICQoLWcqkZiUbIJsZDm5KVALZaREEoOHupPltzgUrJP-Krmx00MLz9LmfYudzaUHIjj1lUokMPfQI_OaS",
    ],
    ['"héllo ✓ 𝄞"', "AAECAwQFBgcICQoLAIASvSVVdZmT5oka16Vy2Fa4trnqTw5j-IKYP3BpvIOj"],
  ];
  const key = await importOxideKKey("s3cr3t-key");
  for (const [plain, stored] of vectors) {
    assert.equal(looksOxideKSealed(stored), true);
    assert.equal(await openOxideK(key, "api_token", stored), plain);
  }
});

Deno.test("oxide-k values of every length mod 3 match Python's base64.urlsafe_b64encode, padding included", async () => {
  // Python: AESGCM(sha256(b"s3cr3t-key")).encrypt(bytes(range(12)), plaintext, None), nonce prepended,
  // base64.urlsafe_b64encode. The blob is 28 + len(plaintext) bytes: one "=", two, or none.
  const vectors: [string, string][] = [
    ["1", "AAECAwQFBgcICQoLExFjCSvnYRLRUTeqaeN9ST4="],
    ["42", "AAECAwQFBgcICQoLFtoBgAOb4p1JkvP7Eb12QNpX"],
    ['"x"', "AAECAwQFBgcICQoLAJDzkhVpMc5O07-AxIHhzEIxng=="],
    ['"ab"', "AAECAwQFBgcICQoLAImzNgFPpeNVNo4bb1wFSmVbrdM="],
    ["[1,2]", "AAECAwQFBgcICQoLedn9JhT0MZlhnYWkoFIpTZpI-N-i"],
    ['{"a":1}', "AAECAwQFBgcICQoLWcqwNnMIZ2a4PpEteAX6syRdRZvSCqs="],
    ['"héllo"', "AAECAwQFBgcICQoLAIASvSVVdZuE13utapXbOeTQR-zgSBzS"],
  ];
  const key = await importOxideKKey("s3cr3t-key");
  const rawKey = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("s3cr3t-key"));
  const webKey = await crypto.subtle.importKey("raw", rawKey, "AES-GCM", false, ["encrypt"]);
  const nonce = Uint8Array.from({ length: 12 }, (_, i) => i);
  const paddings = new Set<number>();
  for (const [plain, python] of vectors) {
    const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce }, webKey, new TextEncoder().encode(plain));
    const blob = new Uint8Array([...nonce, ...new Uint8Array(sealed)]);
    assert.equal(toBase64Url(blob, true), python, `encoding of ${plain}`);
    assert.deepEqual(fromBase64Url(python, true), blob, `decoding of ${plain}`);
    assert.equal(await openOxideK(key, "k", python), plain);
    assert.equal(looksOxideKSealed(python), true);
    paddings.add(python.length - python.replace(/=+$/, "").length);
  }
  assert.deepEqual([...paddings].sort(), [0, 1, 2], "every padding length is covered");
});

Deno.test("sealOxideK() writes padded base64url of nonce, ciphertext and tag", async () => {
  const key = await importOxideKKey("s3cr3t-key");
  for (const plain of ['"my-super-secret-token"', "1", "null", '"x"', '{"a":[1,2]}']) {
    const stored = await sealOxideK(key, plain);
    const bytes = new TextEncoder().encode(plain);
    const blob = Uint8Array.fromBase64(stored, { alphabet: "base64url" });
    assert.equal(blob.length, 12 + bytes.length + 16);
    assert.equal(stored.length % 4, 0);
    assert.equal(toBase64Url(blob, true), stored, "padded, canonical");
    assert.equal(await independentOxideKOpen("s3cr3t-key", stored), plain);
  }
});

Deno.test("sealOxideK() draws a fresh nonce for every value", async () => {
  const key = await importOxideKKey("k");
  const nonces = new Set<string>();
  for (let i = 0; i < 32; i++) nonces.add((await sealOxideK(key, "1")).slice(0, 16));
  assert.equal(nonces.size, 32);
});

Deno.test("openOxideK() names the config key and the reason for each failure", async (t) => {
  const key = await importOxideKKey("right");
  const stored = await sealOxideK(key, '"secret!"'); // 37 bytes: padded
  const cases: [string, CryptoKey, string, SealedValueError["reason"], RegExp][] = [
    [
      "wrong key",
      await importOxideKKey("wrong"),
      stored,
      "wrong_key_or_tampered",
      /wrong key, or the value was altered/,
    ],
    ["flipped byte", key, flipChar(stored, 20), "wrong_key_or_tampered", /altered/],
    ["truncated", key, stored.slice(0, 36), "tampered", /truncated/],
    ["not base64", key, "!!" + stored.slice(2), "malformed", /not padded URL-safe base64/],
    ["unpadded", key, stored.replace(/=+$/, ""), "malformed", /not padded/],
  ];
  for (const [name, k, text, reason, message] of cases) {
    await t.step(name, async () => {
      const err = await openOxideK(k, "api_token", text).catch((e) => e);
      assert.ok(err instanceof SealedValueError, String(err));
      assert.equal(err.reason, reason);
      assert.equal(err.key, "api_token");
      assert.match(err.message, /^config decrypt: value of config key 'api_token' cannot be opened: /);
      assert.match(err.message, message);
    });
  }
});

Deno.test("two passphrases differing only in lone surrogates cannot derive one key: both are refused", async () => {
  // Encoded as UTF-8, both would become "pass\uFFFD" and so the same key.
  for (const passphrase of ["pass\ud800", "pass\udfff"]) {
    await assert.rejects(importOxideKKey(passphrase), TypeError);
    await assert.rejects(deriveKek(passphrase, newKdfParams("x")), TypeError);
  }
  assert.doesNotThrow(() => checkRegistryKey("pass\ud83d\ude00", []), "a surrogate pair is fine");
});

Deno.test("importOxideKKey() takes 32 raw bytes or a CryptoKey as the key itself", async () => {
  const raw = await importOxideKKey(KEY_A);
  const cryptoKey = await crypto.subtle.importKey("raw", KEY_A, "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
  const stored = await sealOxideK(raw, "42");
  assert.equal(await openOxideK(await importOxideKKey(cryptoKey), "n", stored), "42");
});

Deno.test("checkRegistryKey() refuses keys of the wrong shape", async (t) => {
  const hmac = await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const aes128 = await crypto.subtle.generateKey({ name: "AES-GCM", length: 128 }, false, [
    "encrypt",
  ]);
  const encryptOnly = await crypto.subtle.importKey("raw", KEY_A, "AES-GCM", false, ["encrypt"]);
  const cases: [string, unknown, typeof TypeError | typeof RangeError, RegExp][] = [
    ["empty passphrase", "", TypeError, /empty passphrase/],
    ["a lone high surrogate", "pass\ud800word", TypeError, /well-formed Unicode: it contains a lone surrogate/],
    ["a lone low surrogate", "\udc00", TypeError, /lone surrogate/],
    ["16 raw bytes", new Uint8Array(16), RangeError, /32 bytes: got 16 bytes/],
    ["a number", 42, TypeError, /passphrase string, 32 raw key bytes/],
    ["an ArrayBuffer", new ArrayBuffer(32), TypeError, /passphrase string/],
    ["an HMAC key", hmac, TypeError, /AES-GCM 256-bit key: got HMAC/],
    ["an AES-128 key", aes128, TypeError, /got AES-GCM 128/],
    ["a key without decrypt", encryptOnly, TypeError, /usage "decrypt"/],
  ];
  for (const [name, key, errorClass, message] of cases) {
    await t.step(name, () => {
      assert.throws(() => checkRegistryKey(key, ["encrypt", "decrypt"]), (err: unknown) => {
        assert.ok(err instanceof errorClass);
        assert.match((err as Error).message, message);
        return true;
      });
    });
  }
});

Deno.test("newKdfParams() refuses fewer than 600,000 PBKDF2 iterations", () => {
  for (const iterations of [1, 599_999, 600_000.5, Number.NaN]) {
    assert.throws(() => newKdfParams("pass", { iterations }), RangeError);
  }
  const params = newKdfParams("pass", { iterations: 700_000 });
  assert.equal(params.kdf, "pbkdf2-sha256");
  assert.ok(params.kdf === "pbkdf2-sha256" && params.iterations === 700_000);
  assert.ok(params.kdf === "pbkdf2-sha256" && params.salt.length === 16);
  const other = newKdfParams("pass");
  assert.ok(other.kdf === "pbkdf2-sha256" && other.iterations === MIN_PBKDF2_ITERATIONS);
  assert.notDeepEqual(params.salt, other.salt, "a fresh salt each time");
});

Deno.test("deriveKek() derives the same key from the same passphrase and salt only", async () => {
  const params = newKdfParams("correct horse battery staple");
  const { wrapped } = await generateDataKey(await deriveKek("correct horse battery staple", params));
  const again = await deriveKek("correct horse battery staple", params);
  assert.equal((await unwrapDataKey(again, wrapped)).keyId, wrapped.keyId);
  await assert.rejects(
    unwrapDataKey(await deriveKek("correct horse battery stapler", params), wrapped),
    WrongKeyError,
  );
  await assert.rejects(
    unwrapDataKey(await deriveKek("correct horse battery staple", newKdfParams("x")), wrapped),
    WrongKeyError,
  );
});

Deno.test("deriveKek() refuses a passphrase for a raw-key registry and the reverse", async () => {
  await assert.rejects(deriveKek("pass", { kdf: "raw" }), (err: unknown) => {
    assert.ok(err instanceof WrongKeyError);
    assert.match(err.message, /^wrong key: this registry is sealed with 32 raw key bytes/);
    return true;
  });
  await assert.rejects(deriveKek(KEY_A, newKdfParams("pass")), (err: unknown) => {
    assert.ok(err instanceof WrongKeyError);
    assert.match(err.message, /sealed with a passphrase, not raw key bytes/);
    return true;
  });
});

Deno.test("deriveKek() refuses stored parameters below 600,000 iterations", async () => {
  const err = await deriveKek("pass", {
    kdf: "pbkdf2-sha256",
    iterations: 1000,
    salt: new Uint8Array(16),
  }).catch((e) => e);
  assert.ok(err instanceof CryptoError);
  assert.match(err.message, /stored PBKDF2 iteration count 1000 is below the minimum 600000/);
});

Deno.test("PBKDF2 iterations are capped at 10,000,000, new and stored", async () => {
  assert.equal(MAX_PBKDF2_ITERATIONS, 10_000_000);
  assert.throws(() => newKdfParams("pass", { iterations: MAX_PBKDF2_ITERATIONS + 1 }), /from 600000 to 10000000/);
  for (const iterations of [MAX_PBKDF2_ITERATIONS + 1, 4e9]) {
    const err = await deriveKek("pass", { kdf: "pbkdf2-sha256", iterations, salt: new Uint8Array(16) }).catch((e) => e);
    assert.ok(err instanceof CryptoError, String(err));
    assert.match(err.message, new RegExp(`count ${iterations} is above the maximum 10000000`));
  }
});

Deno.test("unwrapDataKey() is the key check: a wrong or altered key fails", async () => {
  const kek = await deriveKek(KEY_A, { kdf: "raw" });
  const { wrapped } = await generateDataKey(kek);
  await assert.rejects(
    unwrapDataKey(await deriveKek(KEY_B, { kdf: "raw" }), wrapped),
    /^WrongKeyError: wrong key: the key does not unwrap this registry's data key/,
  );
  await assert.rejects(
    unwrapDataKey(kek, { keyId: "AAAAAAAAAAA", wrapped: wrapped.wrapped }),
    WrongKeyError,
    "the wrapped key is bound to its id",
  );
  await assert.rejects(
    unwrapDataKey(kek, { keyId: wrapped.keyId, wrapped: flipChar(wrapped.wrapped, 30) }),
    WrongKeyError,
  );
  await assert.rejects(
    unwrapDataKey(kek, { keyId: wrapped.keyId, wrapped: wrapped.wrapped.slice(0, 40) }),
    /stored data key .* is malformed/,
  );
});

Deno.test("wrapDataKey() re-wraps a data key under a new key without changing it", async () => {
  const oldKek = await deriveKek(KEY_A, { kdf: "raw" });
  const newKek = await deriveKek("new passphrase", newKdfParams("new passphrase"));
  const { dataKey, wrapped } = await generateDataKey(oldKek);
  const stored = await sealEnvelope(dataKey, "k", '"v"');
  const exportable = await unwrapDataKey(oldKek, wrapped, true);
  const rewrapped = await wrapDataKey(newKek, wrapped.keyId, exportable.key);
  const reopened = await unwrapDataKey(newKek, rewrapped);
  assert.equal(await openEnvelope(reopened, "k", stored), '"v"');
  await assert.rejects(unwrapDataKey(oldKek, rewrapped), WrongKeyError);
});

Deno.test("sealEnvelope() output is never JSON and never looks like an oxide-k value", async () => {
  const { dataKey } = await newDataKey();
  for (const plain of ["0", '""', "null", "true", "[]", "{}", '"' + "x".repeat(100) + '"']) {
    const stored = await sealEnvelope(dataKey, "k", plain);
    assert.ok(stored.startsWith(`$oxide1$${dataKey.keyId}$`));
    assert.throws(() => JSON.parse(stored), SyntaxError);
    assert.equal(looksOxideKSealed(stored), false);
    assert.equal(isEnvelopeSealed(stored), true);
    assert.equal(envelopeKeyId("k", stored), dataKey.keyId);
    assert.equal(await openEnvelope(dataKey, "k", stored), plain);
  }
});

Deno.test("openEnvelope() refuses a value moved to another config key", async () => {
  const { dataKey } = await newDataKey();
  const stored = await sealEnvelope(dataKey, "api.token", '"s3cr3t"');
  const err = await openEnvelope(dataKey, "db.password", stored).catch((e) => e);
  assert.ok(err instanceof SealedValueError);
  assert.equal(err.key, "db.password");
  assert.equal(err.reason, "tampered");
  assert.match(err.message, /'db.password' cannot be opened: it failed authentication/);
  assert.equal(await sealedForKey(dataKey, stored, ["db.password", "api.token"]), "api.token");
  assert.equal(await sealedForKey(dataKey, stored, ["db.password"]), undefined);
});

Deno.test("openEnvelope() refuses every single flipped character", async () => {
  const { dataKey } = await newDataKey();
  const stored = await sealEnvelope(dataKey, "k", '{"a":1}');
  for (let i = 0; i < stored.length; i++) {
    if (stored[i] === "$") continue;
    await assert.rejects(openEnvelope(dataKey, "k", flipChar(stored, i)), SealedValueError, `index ${i}`);
  }
});

Deno.test("openEnvelope() says why a malformed or foreign value fails", async (t) => {
  const { dataKey } = await newDataKey();
  const other = (await newDataKey(KEY_B)).dataKey;
  const stored = await sealEnvelope(dataKey, "k", '"v"');
  const body = stored.slice(stored.lastIndexOf("$") + 1);
  const cases: [string, string, SealedValueError["reason"], RegExp][] = [
    ["truncated", stored.slice(0, stored.length - body.length + 20), "tampered", /truncated: 15 bytes/],
    ["empty body", stored.slice(0, stored.length - body.length), "tampered", /truncated: 0 bytes/],
    ["bad base64", stored + "=", "tampered", /not URL-safe base64/],
    ["newer version", stored.replace("$oxide1$", "$oxide2$"), "unsupported_version", /version 2/],
    ["malformed prefix", "$oxide1$" + body, "malformed", /prefix is malformed/],
    [
      "another data key",
      await sealEnvelope(other, "k", '"v"'),
      "tampered",
      /names data key '.+' but the registry's data key is/,
    ],
  ];
  for (const [name, text, reason, message] of cases) {
    await t.step(name, async () => {
      const err = await openEnvelope(dataKey, "k", text).catch((e) => e);
      assert.ok(err instanceof SealedValueError, String(err));
      assert.equal(err.reason, reason);
      assert.match(err.message, message);
    });
  }
});

Deno.test("keyFromEnv() names --allow-env when the environment is not readable", {
  permissions: { env: false },
}, () => {
  assert.throws(() => keyFromEnv(), (err: unknown) => {
    assert.ok(err instanceof OtherError);
    assert.match(err.message, /--allow-env=OXIDE_REGISTRY_KEY/);
    assert.ok(err.cause instanceof Deno.errors.NotCapable);
    return true;
  });
});

/** Runs `script` (which prints keyFromEnv()'s outcome as JSON) with only `env` and --allow-env=OXIDE_REGISTRY_KEY. */
async function runKeyScript(script: string, env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--allow-env=OXIDE_REGISTRY_KEY", script],
    env,
    clearEnv: true,
    stdin: "null",
    stderr: "inherit",
  }).output();
  assert.equal(out.code, 0);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("keyFromEnv() reads the key and refuses an unset or empty variable", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/read_key.ts`;
    await Deno.writeTextFile(
      script,
      `import { keyFromEnv } from ${JSON.stringify(import.meta.resolve("../src/sealing/key.ts"))};
try { console.log(JSON.stringify({ key: keyFromEnv() })); }
catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })); }`,
    );
    await t.step("set", async () => {
      assert.deepEqual(await runKeyScript(script, { OXIDE_REGISTRY_KEY: "s3cr3t-key" }), { key: "s3cr3t-key" });
    });
    await t.step("unset", async () => {
      assert.deepEqual(await runKeyScript(script, {}), {
        name: "OtherError",
        message: "OXIDE_REGISTRY_KEY env var not set; set it or call openEncrypted with an explicit key",
      });
    });
    await t.step("empty", async () => {
      const result = await runKeyScript(script, { OXIDE_REGISTRY_KEY: "" });
      assert.equal(result.name, "OtherError");
      assert.match(result.message, /OXIDE_REGISTRY_KEY env var is empty/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AES-GCM on node:crypto and on WebCrypto give the same bytes, and each opens the other's", async (t) => {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  const webKey = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
  const nodeKeyObject = await nodeKey(raw);
  assert.ok(nodeKeyObject !== undefined, "node:crypto has AES-256-GCM on this Deno");
  for (const length of [0, 1, 15, 16, 17, 300, 70_000]) {
    for (const ad of [undefined, new TextEncoder().encode("oxide-seal\0v1\0value\0id\0api.token")]) {
      await t.step(`${length} bytes, ${ad === undefined ? "no" : "with"} associated data`, async () => {
        const nonce = crypto.getRandomValues(new Uint8Array(12));
        const plain = new Uint8Array(length).map((_, i) => (i * 7919) & 0xff);
        const byNode = sealWithNodeCrypto(nodeKeyObject, nonce, plain, ad);
        const byWeb = await sealWithWebCrypto(webKey, nonce, plain, ad);
        assert.deepEqual(byNode, byWeb);
        assert.deepEqual(await openWithWebCrypto(webKey, nonce, byNode, ad), plain);
        assert.deepEqual(openWithNodeCrypto(nodeKeyObject, nonce, byWeb, ad), plain);
        // Both refuse an altered byte, another nonce and other associated data.
        const altered = byWeb.slice();
        altered[altered.length - 1]! ^= 1;
        const otherNonce = nonce.slice();
        otherNonce[0]! ^= 1;
        const otherAd = new TextEncoder().encode("oxide-seal\0v1\0value\0id\0db.password");
        for (const [bytes, n, a] of [[altered, nonce, ad], [byWeb, otherNonce, ad], [byWeb, nonce, otherAd]] as const) {
          assert.throws(() => openWithNodeCrypto(nodeKeyObject, n, bytes, a));
          await assert.rejects(openWithWebCrypto(webKey, n, bytes, a));
        }
      });
    }
  }
  assert.throws(() => openWithNodeCrypto(nodeKeyObject, new Uint8Array(12), new Uint8Array(15)), /shorter than/);
});

Deno.test("keys made for sealing seal and open synchronously (node:crypto); a caller's CryptoKey stays on WebCrypto", async () => {
  await loadNodeCrypto();
  const kek = await deriveKek(KEY_A, { kdf: "raw" });
  const { dataKey, wrapped } = await generateDataKey(kek);
  const unwrapped = await unwrapDataKey(kek, wrapped);
  const passphraseKey = await importOxideKKey("s3cr3t-key");
  const rawKey = await importOxideKKey(KEY_B);
  const callerKey = await crypto.subtle.importKey("raw", KEY_B, "AES-GCM", false, ["encrypt", "decrypt"]);
  const nonce = new Uint8Array(12);
  const plain = new TextEncoder().encode('"s3cr3t"');
  for (const key of [dataKey.key, unwrapped.key, passphraseKey, rawKey]) {
    assert.ok(hasSyncTwin(key));
    const sealed = sealAesGcm(key, nonce, plain);
    assert.ok(sealed instanceof Uint8Array, "sealed without a promise");
    const opened = openAesGcm(key, nonce, sealed);
    assert.ok(opened instanceof Uint8Array, "opened without a promise");
    assert.deepEqual(opened, plain);
  }
  // The twins are the same keys: what one seals, the WebCrypto key of the other opens.
  assert.equal(await openEnvelope(unwrapped, "api.token", await sealEnvelope(dataKey, "api.token", '"x"')), '"x"');
  assert.equal(hasSyncTwin(callerKey), false);
  const sealed = sealAesGcm(callerKey, nonce, plain);
  assert.ok(sealed instanceof Promise);
  assert.deepEqual(await sealed, sealAesGcm(rawKey, nonce, plain), "raw bytes and the caller's key of them agree");
  assert.deepEqual(await openOxideK(callerKey, "k", await sealOxideK(rawKey, '"v"')), '"v"');
  assert.deepEqual(await openOxideK(rawKey, "k", await sealOxideK(callerKey, '"v"')), '"v"');
});
