/**
 * The largest config value the registry writes, and the check before writing.
 *
 * Every layer reads back what it wrote up to this size on both engines, sealed
 * (both schemes) or plain; the limit keeps one value's working memory bounded
 * (a sealed 64 MiB value is about 90 MiB of stored text).
 *
 * @module
 */
import { SerializationError } from "./errors.ts";

/**
 * The most bytes (UTF-8) of JSON text one config value may have: 64 MiB. A larger value is refused before anything is
 * written.
 *
 * @example
 * ```ts
 * import { MAX_CONFIG_VALUE_BYTES, SerializationError, StateRegistry } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(MAX_CONFIG_VALUE_BYTES, 64 * 1024 * 1024);
 * await using reg = await StateRegistry.inMemory();
 * await assert.rejects(reg.setConfig("big", "x".repeat(MAX_CONFIG_VALUE_BYTES)), SerializationError);
 * ```
 */
export const MAX_CONFIG_VALUE_BYTES: number = 64 * 1024 * 1024;

/**
 * Refuses a value whose JSON text is larger than {@linkcode MAX_CONFIG_VALUE_BYTES}.
 *
 * @param configKey The config key, for the message.
 * @param json The value's JSON text.
 * @returns `json`.
 * @throws {SerializationError} When its UTF-8 form is larger than the limit.
 */
export function checkValueSize(configKey: string, json: string): string {
  // UTF-8 takes at least one byte per UTF-16 unit and at most three: count exactly only in between.
  if (json.length * 3 <= MAX_CONFIG_VALUE_BYTES) return json;
  const bytes = json.length > MAX_CONFIG_VALUE_BYTES ? json.length : utf8Length(json);
  if (bytes > MAX_CONFIG_VALUE_BYTES) {
    throw new SerializationError(
      `value of config key '${configKey}' is ${
        json.length > MAX_CONFIG_VALUE_BYTES ? "at least " : ""
      }${bytes} bytes of JSON, larger than the ${MAX_CONFIG_VALUE_BYTES} bytes (64 MiB) a config value may hold; nothing was written`,
    );
  }
  return json;
}

function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}
