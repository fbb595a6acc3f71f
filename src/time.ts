/**
 * RFC 3339 timestamps exactly as oxide-k (chrono's `to_rfc3339()`) writes
 * them, and a parser for everything chrono writes or accepts.
 *
 * @module
 */

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * Formats `date` as chrono's `DateTime<Utc>::to_rfc3339()` does: `+00:00`,
 * and a fraction of 0 or 3 digits (chrono drops an all-zero fraction).
 *
 * @param date A valid date.
 * @returns e.g. `2026-11-28T09:15:02.123+00:00`.
 * @throws {RangeError} for an invalid date.
 *
 * @example
 * ```ts
 * import { formatTimestamp } from "@oxide/registry";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatTimestamp(new Date(Date.UTC(2026, 10, 28, 9, 15, 2, 120))), "2026-11-28T09:15:02.120+00:00");
 * assert.equal(formatTimestamp(new Date(Date.UTC(2026, 10, 28, 9, 15, 2))), "2026-11-28T09:15:02+00:00");
 * ```
 */
export function formatTimestamp(date: Date): string {
  const iso = date.toISOString(); // Throws RangeError for an invalid date.
  return (date.getUTCMilliseconds() === 0 ? iso.slice(0, 19) : iso.slice(0, 23)) + "+00:00";
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
  const match = RFC3339.exec(text);
  if (match === null) return undefined;
  const [
    ,
    year,
    month,
    day,
    hour,
    minute,
    second,
    fraction,
    zulu,
    sign,
    offsetHour,
    offsetMinute,
  ] = match;
  const y = Number(year), mo = Number(month), d = Number(day);
  const h = Number(hour), mi = Number(minute), s = Number(second);
  if (
    mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 ||
    s > 60
  ) return undefined;
  let offset = 0;
  if (zulu === undefined) {
    const oh = Number(offsetHour), om = Number(offsetMinute);
    if (oh > 23 || om > 59) return undefined;
    offset = (sign === "-" ? -1 : 1) * (oh * 60 + om);
  }
  const ms = fraction === undefined ? 0 : Number(fraction.slice(0, 3).padEnd(3, "0"));
  // A leap second (:60) is read as the last millisecond-rounded instant of its minute, as chrono folds it.
  const time = Date.UTC(y, mo - 1, d, h, mi, Math.min(s, 59), s === 60 ? 999 : ms) -
    offset * 60_000;
  const date = new Date(time);
  if (y < 100) date.setUTCFullYear(y); // Date.UTC maps years 0-99 to 1900-1999.
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function daysInMonth(year: number, month: number): number {
  if (month !== 2) {
    return [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
  }
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
}
