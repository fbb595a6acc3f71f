// How error messages show an offending value, the same everywhere in the package.

/**
 * A short description of any value for an error message: text quoted (cut after 80 characters), blobs by size,
 * dates as ISO text, arrays and objects by kind or class, anything else by type and value.
 */
export function describe(value: unknown): string {
  if (typeof value === "string") return `'${value.length > 80 ? `${value.slice(0, 80)}...` : value}'`;
  if (value === null || value === undefined) return String(value);
  if (value instanceof Uint8Array) return `a ${value.length}-byte blob`;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "an invalid Date" : value.toISOString();
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const name = (value.constructor as { name?: string } | undefined)?.name;
    return name === undefined || name === "" || name === "Object" ? "an object" : `a ${name}`;
  }
  return `${typeof value} ${String(value)}`;
}
