/**
 * What a guest says about its environments: the markers in `~/.cal-env/` (`<name>.installed`
 * with version, variant, options, time and disk used; `.failed` with why; `.progress` with the
 * post_install lines done), read with one guest command, and files written there atomically.
 */

import { CalError } from "../errors.ts";
import type { ExecOptions } from "../guest/ssh.ts";
import { reason, type RunResult } from "../process.ts";
import { quote, quoteArgs } from "../shell.ts";
import { ENV_DIR, ENV_FILE } from "./envfile.ts";
import { ENV_NAME } from "./manifest.ts";

/** What the environment modules need of a guest (a `Guest`, or a stand-in in tests). */
export interface GuestShell {
  readonly workspace: string;
  sh(command: string, opts?: ExecOptions): Promise<RunResult>;
}

export interface Marker {
  name: string;
  version: string;
  variant?: string;
  options?: Record<string, string>;
  installed_at: string;
  /** Disk space the install took, measured in the guest (KB). */
  size_kb?: number;
}

export interface GuestState {
  installed: Map<string, Marker>;
  /** Why an environment's last install stopped. */
  failed: Map<string, string>;
  /** post_install lines done so far by an unfinished install (their digests). */
  progress: Map<string, Set<string>>;
}

/** The guest's `~/.cal-env`, for a shell command line. */
export const ENV_HOME = `"$HOME"/${ENV_DIR}`;
/** A marker file of an environment (`.installed`, `.failed`, `.progress`…), quoted. */
export const markerFile = (name: string, ext: string) => `${ENV_HOME}/${quote(name + ext)}`;

/** Reads the markers in `~/.cal-env/` with one guest command. */
export async function readGuestState(g: GuestShell): Promise<GuestState> {
  // By /bin/sh: the login shell may be zsh, where an unmatched glob is an error.
  const script = `cd ${ENV_HOME} 2>/dev/null || exit 0; ` +
    `for f in *.installed *.failed *.progress; do [ -f "$f" ] || continue; ` +
    `printf '\\n==> %s\\n' "$f"; cat "$f"; done`;
  const r = await g.sh(quoteArgs(["/bin/sh", "-c", script]), { timeoutMs: 60_000 });
  if (r.code !== 0) {
    throw new CalError(`Could not read the environments of "${g.workspace}": ${reason(r)}`, {
      workspace: g.workspace,
    });
  }
  return parseGuestState(r.stdout);
}

/** Parses readGuestState's listing. */
export function parseGuestState(text: string): GuestState {
  const state: GuestState = { installed: new Map(), failed: new Map(), progress: new Map() };
  const sections = text.split(/^==> /m).slice(1);
  for (const s of sections) {
    const nl = s.indexOf("\n");
    const fileName = (nl < 0 ? s : s.slice(0, nl)).trim();
    const body = nl < 0 ? "" : s.slice(nl + 1).trim();
    const m = fileName.match(/^(.+)\.(installed|failed|progress)$/);
    if (!m || !ENV_NAME.test(m[1])) continue;
    const [, name, kind] = m;
    if (kind === "installed") {
      let marker: Marker;
      try {
        marker = { ...JSON.parse(body), name };
      } catch {
        marker = { name, version: "?", installed_at: "" };
      }
      state.installed.set(name, marker);
    } else if (kind === "failed") state.failed.set(name, body || "an earlier install stopped");
    else state.progress.set(name, new Set(body.split("\n").map((l) => l.trim()).filter(Boolean)));
  }
  return state;
}

/** Writes a file under the guest's home atomically (a temp file, then a rename). */
export async function writeGuestFile(g: GuestShell, rel: string, content: string): Promise<void> {
  const target = `"$HOME"/${quote(rel)}`;
  const tmp = `"$HOME"/${quote(`${rel}.tmp`)}`;
  const r = await g.sh(
    `umask 022; mkdir -p ${ENV_HOME} && cat > ${tmp} && mv -f ${tmp} ${target}`,
    { stdin: content, timeoutMs: 60_000 },
  );
  if (r.code !== 0) {
    throw new CalError(`Could not write ~/${rel} in "${g.workspace}": ${reason(r)}`, {
      workspace: g.workspace,
    });
  }
}

/** Writes `~/.cal-env/env` (what shells source). */
export function writeEnvFile(g: GuestShell, text: string): Promise<void> {
  return writeGuestFile(g, ENV_FILE, text);
}
