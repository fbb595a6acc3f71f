/**
 * The few path operations manifests need (JSR's `@std/path` is out of reach).
 * Private: `mod.ts` never re-exports this file.
 *
 * @module
 */

const WINDOWS: boolean = Deno.build.os === "windows";

/** Whether `c` separates path segments on this OS. */
function isSeparator(c: string | undefined): boolean {
  return c === "/" || (WINDOWS && c === "\\");
}

/**
 * Whether `path` is absolute on this OS (`/x`; on Windows also `C:\x`, `\\server\x`).
 *
 * @param path Any path.
 * @returns `true` when `path` does not depend on the current directory.
 */
export function isAbsolute(path: string): boolean {
  if (isSeparator(path[0])) return true;
  return WINDOWS && /^[A-Za-z]:[\\/]/.test(path);
}

/**
 * The folder part of `path` (`"a/b/module.json"` gives `"a/b"`, `"module.json"` gives `"."`).
 *
 * @param path A file path.
 * @returns Its folder, `"."` when it has none.
 */
export function dirname(path: string): string {
  let end = path.length;
  while (end > 1 && isSeparator(path[end - 1])) end--; // ignore trailing separators
  let i = end - 1;
  while (i >= 0 && !isSeparator(path[i])) i--;
  if (i < 0) return WINDOWS && /^[A-Za-z]:/.test(path) ? path.slice(0, 2) : ".";
  while (i > 0 && isSeparator(path[i - 1])) i--; // collapse "a//b"
  if (i === 0) return path[0]!;
  if (WINDOWS && i === 2 && /^[A-Za-z]:/.test(path)) return path.slice(0, 3);
  return path.slice(0, i);
}

/**
 * Resolves `path` against `base`: an absolute `path` is returned normalized,
 * a relative one is appended to `base`. `.` and `..` segments are folded. A
 * relative result keeps a leading `./` so it never reads as a bare command
 * name (`"echo-cli"` would be looked up on `PATH` when spawned).
 *
 * @param base The folder relative paths are anchored at.
 * @param path The path to resolve.
 * @returns The combined, normalized path.
 */
export function resolveAgainst(base: string, path: string): string {
  const sep = WINDOWS ? "\\" : "/";
  const joined = isAbsolute(path) ? path : `${base}${sep}${path}`;
  let prefix = "";
  let rest = joined;
  const drive = WINDOWS ? /^[A-Za-z]:/.exec(rest) : null;
  if (drive) {
    prefix = drive[0];
    rest = rest.slice(2);
  }
  const absolute = isSeparator(rest[0]);
  const out: string[] = [];
  for (const segment of rest.split(WINDOWS ? /[\\/]/ : "/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === ".." && out.length > 0 && out[out.length - 1] !== "..") {
      out.pop();
    } else if (segment === ".." && absolute) {
      continue; // "/.." is "/"
    } else {
      out.push(segment);
    }
  }
  if (absolute) return `${prefix}${sep}${out.join(sep)}`;
  if (out.length === 0) return `${prefix}.`;
  return out[0] === ".." ? `${prefix}${out.join(sep)}` : `${prefix}.${sep}${out.join(sep)}`;
}
