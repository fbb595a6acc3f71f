/**
 * RFC 3339 timestamps exactly as oxide-k (chrono's `to_rfc3339()`) writes
 * them, and a parser for everything chrono writes or accepts.
 *
 * @module
 */

/**
 * Formats `date` as chrono's `DateTime<Utc>::to_rfc3339()` does: `+00:00`,
 * and a fraction of 0 or 3 digits (chrono drops an all-zero fraction).
 *
 * @param date A valid date.
 * @returns e.g. `2026-11-28T09:15:02.123+00:00`.
 * @throws {RangeError} for an invalid date, or one outside years 0000 to 9999 (RFC 3339 has four-digit years:
 * neither chrono nor {@linkcode parseTimestamp} could read it back).
 *
 * @example
 * ```ts
 * import { formatTimestamp } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatTimestamp(new Date(Date.UTC(2026, 10, 28, 9, 15, 2, 120))), "2026-11-28T09:15:02.120+00:00");
 * assert.equal(formatTimestamp(new Date(Date.UTC(2026, 10, 28, 9, 15, 2))), "2026-11-28T09:15:02+00:00");
 * assert.throws(() => formatTimestamp(new Date(Date.UTC(10000, 0, 1))), RangeError);
 * ```
 */
export function formatTimestamp(date: Date): string {
  const iso = date.toISOString(); // Throws RangeError for an invalid date.
  if (iso.length !== 24) { // "+010000-01-01T00:00:00.000Z", "-000005-...": a six-digit, signed year.
    throw new RangeError(`${iso} is outside years 0000 to 9999, which an RFC 3339 timestamp cannot hold`);
  }
  return (date.getUTCMilliseconds() === 0 ? iso.slice(0, 19) : iso.slice(0, 23)) + "+00:00";
}

let lastMs = NaN;
let lastText = "";

/**
 * The current time as {@linkcode formatTimestamp} writes it, formatted at most
 * once per millisecond (writes in a burst share the text).
 *
 * @returns e.g. `2026-11-28T09:15:02.123+00:00`.
 */
export function nowTimestamp(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastText = formatTimestamp(new Date(ms));
    lastMs = ms;
  }
  return lastText;
}

/**
 * Parses an RFC 3339 timestamp with any number of fraction digits and any
 * offset (`Z`, `+00:00`, `-05:30`). Digits past milliseconds are truncated.
 *
 * @param text The stored text.
 * @returns The instant, or `undefined` when `text` is not RFC 3339.
 *
 * @example
 * ```ts
 * import { parseTimestamp } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * const date = parseTimestamp("2026-11-28T09:15:02.123456789+00:00");
 * assert.equal(date?.toISOString(), "2026-11-28T09:15:02.123Z");
 * assert.equal(parseTimestamp("yesterday"), undefined);
 * ```
 */
export function parseTimestamp(text: string): Date | undefined {
  if (typeof text !== "string") return undefined;
  // Rows written in one burst share their text (nowTimestamp() formats once per millisecond): a list reads them in
  // key order, often one after another, so the last text read answers without a scan.
  if (text === lastParsedText) return new Date(lastParsedTime);
  const time = scanTimestamp(text);
  if (time === undefined) return undefined;
  lastParsedText = text;
  lastParsedTime = time;
  return new Date(time);
}

let lastParsedText = "";
let lastParsedTime = NaN;

/** The instant of an RFC 3339 timestamp in milliseconds since the epoch, or `undefined` when `text` is not one. */
function scanTimestamp(text: string): number | undefined {
  // A hand-written scanner: this runs once per row read, and a regular expression costs several times more.
  if (text.length < 20) return undefined;
  const y = digits(text, 0, 4), mo = digits(text, 5, 2), d = digits(text, 8, 2);
  const h = digits(text, 11, 2), mi = digits(text, 14, 2), s = digits(text, 17, 2);
  const t = text.charCodeAt(10);
  if (
    y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || s < 0 ||
    text.charCodeAt(4) !== DASH || text.charCodeAt(7) !== DASH || (t !== 0x54 && t !== 0x74 && t !== 0x20) ||
    text.charCodeAt(13) !== COLON || text.charCodeAt(16) !== COLON
  ) return undefined;
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 60) return undefined;
  let i = 19, ms = 0;
  if (text.charCodeAt(i) === 0x2e) { // "."
    const start = ++i;
    // Milliseconds from the first three fraction digits (missing ones are zeros), without a substring per call.
    for (let scale = 100; i < text.length; i++, scale /= 10) {
      const code = text.charCodeAt(i);
      if (!isDigit(code)) break;
      if (scale >= 1) ms += (code - 0x30) * scale;
    }
    if (i === start) return undefined;
  }
  let offset = 0;
  const z = text.charCodeAt(i);
  if (z === 0x5a || z === 0x7a) { // "Z" or "z"
    if (i + 1 !== text.length) return undefined;
  } else if (z === 0x2b || z === DASH) { // "+" or "-"
    const oh = digits(text, i + 1, 2), om = digits(text, i + 4, 2);
    if (i + 6 !== text.length || text.charCodeAt(i + 3) !== COLON || oh < 0 || om < 0 || oh > 23 || om > 59) {
      return undefined;
    }
    offset = (z === DASH ? -1 : 1) * (oh * 60 + om);
  } else {
    return undefined;
  }
  // A leap second (:60) is read as the last millisecond of its minute.
  const time = Date.UTC(y, mo - 1, d, h, mi, Math.min(s, 59), s === 60 ? 999 : ms) - offset * 60_000;
  if (y >= 100) return Number.isNaN(time) ? undefined : time;
  const date = new Date(time);
  date.setUTCFullYear(date.getUTCFullYear() - 1900); // Date.UTC maps years 0-99 to 1900-1999.
  const early = date.getTime();
  return Number.isNaN(early) ? undefined : early;
}

const DASH = 0x2d;
const COLON = 0x3a;

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

/** The decimal number in `text[at, at + count)`, or -1 when those are not all digits. */
function digits(text: string, at: number, count: number): number {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const code = text.charCodeAt(i);
    if (!isDigit(code)) return -1;
    value = value * 10 + code - 0x30;
  }
  return value;
}

const DAYS_IN_MONTH: readonly number[] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  if (month !== 2) return DAYS_IN_MONTH[month - 1]!;
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
}
