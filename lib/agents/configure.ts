/**
 * Writing an agent's config and permission files in the guest: read, edit, write back. Keys and
 * list entries cal does not own stay as the user or the agent left them; which list entries cal
 * owns is remembered in `~/.cal-agents/<agent>.json` in the guest. A file that cannot be parsed
 * is never overwritten.
 */

import { CalError } from "../errors.ts";
import type { Guest } from "../guest/ssh.ts";
import { quote } from "../shell.ts";
import type { AgentContext, AgentPlugin, Owned } from "./plugin.ts";

async function readGuestFile(guest: Guest, path: string): Promise<string | undefined> {
  const r = await guest.sh(
    `f=${quote(path)}; if [ -e "$HOME/$f" ]; then cat "$HOME/$f"; else exit 3; fi`,
  );
  if (r.code === 3) return undefined;
  if (r.code !== 0) throw new CalError(`Could not read ~/${path} in the guest: ${r.stderr.trim()}`);
  return r.stdout;
}

async function writeGuestFile(guest: Guest, path: string, text: string, mode: number) {
  const m = mode.toString(8);
  const r = await guest.sh(
    `f="$HOME/"${quote(path)}; umask 077; mkdir -p "$(dirname "$f")" && cat > "$f.cal-tmp" && ` +
      `chmod ${m} "$f.cal-tmp" && mv "$f.cal-tmp" "$f"`,
    { stdin: text },
  );
  if (r.code !== 0) {
    throw new CalError(`Could not write ~/${path} in the guest: ${r.stderr.trim()}`);
  }
}

/** Applies the plugin's config edits in the guest; returns the files it wrote. */
export async function configureAgent(
  guest: Guest,
  plugin: AgentPlugin,
  ctx: AgentContext,
): Promise<string[]> {
  const ownedFile = `.cal-agents/${plugin.name}.json`;
  const ownedText = await readGuestFile(guest, ownedFile);
  const ownedAll: Record<string, Owned> = ownedText ? JSON.parse(ownedText) : {};
  const written: string[] = [];
  for (const e of plugin.configure(ctx)) {
    const text = await readGuestFile(guest, e.path) ?? "";
    let next: string;
    if (e.format === "json") {
      let current: Record<string, unknown> = {};
      if (text.trim()) {
        try {
          current = JSON.parse(text);
        } catch (err) {
          throw new CalError(
            `~/${e.path} in the guest is not valid JSON (${
              err instanceof Error ? err.message : err
            }).`,
            {
              hint:
                "Fix or remove it (`cal-vm ssh WS`), then run the command again; cal never overwrites it.",
            },
          );
        }
      }
      const r = e.edit(current, ownedAll[e.path] ?? {});
      ownedAll[e.path] = r.owned;
      next = JSON.stringify(r.next, null, 2) + "\n";
    } else {
      const r = e.edit(text, ownedAll[e.path] ?? {});
      ownedAll[e.path] = r.owned;
      next = r.next;
    }
    if (next !== text) await writeGuestFile(guest, e.path, next, e.mode ?? 0o644);
    written.push(`~/${e.path}`);
  }
  await writeGuestFile(guest, ownedFile, JSON.stringify(ownedAll, null, 2) + "\n", 0o600);
  return written;
}
