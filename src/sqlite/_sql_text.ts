// A small scanner of SQL text, so both engines check a statement's shape the same way at prepare().

/** What {@linkcode scanSql} finds. */
export interface SqlShape {
  /** Parameters, as `sqlite3_bind_parameter_count` reports them. */
  parameters: number;
  /** Non-empty statements separated by `;`. */
  statements: number;
  /** The first named parameter (`:name`, `@name`, `$name`), if any. */
  named: string | undefined;
}

/**
 * Counts the parameters and statements of `sql`, skipping literals, quoted names and comments. Parameters are
 * numbered as SQLite numbers them: `?NNN` is NNN, a bare `?` and each new `:name`, `@name` or `$name` take one more
 * than the largest so far.
 */
export function scanSql(sql: string): SqlShape {
  let parameters = 0;
  let statements = 0;
  let inStatement = false;
  const names = new Set<string>();
  let named: string | undefined;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i]!;
    if (c === "-" && sql[i + 1] === "-") {
      i = sql.indexOf("\n", i);
      if (i === -1) break;
      continue;
    }
    if (c === "/" && sql[i + 1] === "*") {
      i = sql.indexOf("*/", i + 2);
      if (i === -1) break;
      i++;
      continue;
    }
    if (c === ";") {
      inStatement = false;
      continue;
    }
    if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f") continue;
    if (!inStatement) {
      inStatement = true;
      statements++;
    }
    if (c === "'" || c === '"' || c === "`" || c === "[") {
      i = sql.indexOf(c === "[" ? "]" : c, i + 1);
      if (i === -1) break;
    } else if (c === "?") {
      let j = i + 1;
      while (j < sql.length && isDigit(sql[j]!)) j++;
      parameters = j > i + 1 ? Math.max(parameters, Number(sql.slice(i + 1, j))) : parameters + 1;
      i = j - 1;
    } else if ((c === ":" || c === "@" || c === "$") && isNameChar(sql[i + 1])) {
      let j = i + 1;
      while (j < sql.length && isNameChar(sql[j])) j++;
      const name = sql.slice(i, j);
      named ??= name;
      if (!names.has(name)) {
        names.add(name);
        parameters++;
      }
      i = j - 1;
    }
  }
  return { parameters, statements, named };
}

function isDigit(c: string): boolean {
  return c >= "0" && c <= "9";
}

function isNameChar(c: string | undefined): boolean {
  return c !== undefined && (isDigit(c) || (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c === "_" || c > "\x7f");
}

/** Throws a `RangeError` unless `sql` is exactly one statement with positional parameters only. */
export function checkStatement(sql: string, shape: SqlShape): void {
  if (shape.statements !== 1) {
    throw new RangeError(`prepare() takes exactly one SQL statement, got ${shape.statements}: '${sql}'`);
  }
  if (shape.named !== undefined) {
    // node:sqlite binds an argument list to anonymous parameters only; refuse names on both engines alike.
    throw new RangeError(`named parameters are not supported, use ? or ?NNN: '${shape.named}' in '${sql}'`);
  }
}
