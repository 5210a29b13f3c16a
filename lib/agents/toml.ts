/**
 * Line-level TOML edits for agent config files (Codex's config.toml): set a key in the top level
 * or in one table, keeping every other line, comment and table exactly as it was. Not a TOML
 * parser: cal only ever writes simple `key = "string"` entries.
 */

/** A TOML basic string literal. */
export function tomlString(s: string): string {
  return '"' + s.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n") + '"';
}

const header = (line: string) => /^\s*\[([^\]]+)\]\s*(#.*)?$/.exec(line)?.[1]?.trim();

/**
 * Sets `key = value` (value already a TOML literal) in `table` (undefined = top level),
 * replacing an existing assignment of that key there, or adding one.
 */
export function tomlSet(
  text: string,
  table: string | undefined,
  key: string,
  value: string,
): string {
  const lines = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  let current: string | undefined = undefined;
  let start = table === undefined ? 0 : -1;
  let end = lines.length;
  for (let i = 0; i < lines.length; i++) {
    const h = header(lines[i]);
    if (h === undefined) continue;
    if (current === table && start >= 0 && i >= start) {
      end = i;
      break;
    }
    current = h;
    if (h === table) start = i + 1;
  }
  const assignment = `${key} = ${value}`;
  if (start < 0) {
    // The table does not exist yet: append it.
    if (lines.length && lines[lines.length - 1].trim() !== "") lines.push("");
    lines.push(`[${table}]`, assignment);
    return lines.join("\n") + "\n";
  }
  const keyRe = new RegExp(`^\\s*${key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*=`);
  for (let i = start; i < end; i++) {
    if (keyRe.test(lines[i])) {
      lines[i] = assignment;
      return lines.join("\n") + "\n";
    }
  }
  // Insert after the last non-blank line of the region.
  let at = end;
  while (at > start && lines[at - 1].trim() === "") at--;
  lines.splice(at, 0, assignment);
  return lines.join("\n") + "\n";
}
