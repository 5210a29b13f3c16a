/**
 * What the hostile-guest suite watches from outside the guest: host victims (files and folders
 * with known content, mode and times, outside every cal folder), dangerous files (setuid, setgid,
 * devices, FIFOs, links that lead out) under the host folders cal writes, and raw control characters in what
 * reached a terminal.
 */

import { join, relative } from "node:path";

/** A victim: a host file or folder a trick points the guest's links at. */
export interface Victim {
  /** Relative to the victims' root. */
  path: string;
  /** The trick that aims at it. */
  trick: string;
  dir?: boolean;
  /** Files: content (a secret token is appended, so a leak can be recognised). */
  content?: string;
  /** Folders: the name of the one file inside (default kept.log). */
  inner?: string;
}

/** Everything a verb could change about a file or folder (atime excepted: reading is allowed). */
export async function fingerprint(path: string): Promise<string> {
  const st = await Deno.lstat(path).catch(() => undefined);
  if (!st) return "missing";
  const meta = `mode=${
    st.mode?.toString(8)
  } uid=${st.uid} gid=${st.gid} nlink=${st.nlink} mtime=${st.mtime?.getTime()} ctime=${st.ctime?.getTime()}`;
  if (st.isSymlink) return `link->${await Deno.readLink(path)} ${meta}`;
  if (st.isDirectory) {
    const names: string[] = [];
    for await (const e of Deno.readDir(path)) names.push(e.name);
    return `dir[${names.sort().map((n) => JSON.stringify(n)).join(",")}] ${meta}`;
  }
  if (st.isFile) {
    const bytes = await Deno.readFile(path);
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return `file ${
      [...hash.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("")
    } ${meta}`;
  }
  return `special ${meta}`;
}

/** Fingerprints of the victims' root and every victim, by path. */
export async function victimState(root: string, victims: Victim[]): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  m.set(".", await fingerprint(root));
  for (const v of victims) {
    m.set(v.path, await fingerprint(join(root, v.path)));
    if (!v.dir) continue;
    try {
      for await (const e of Deno.readDir(join(root, v.path))) {
        m.set(join(v.path, e.name), await fingerprint(join(root, v.path, e.name)));
      }
    } catch { /* gone or no longer a folder: its own fingerprint says so */ }
  }
  return m;
}

/** Creates the victims with fixed mtimes (2020-01-01), folders holding one file each. */
export async function makeVictims(root: string, victims: Victim[], secret: string): Promise<void> {
  const past = new Date("2020-01-01T00:00:00Z");
  for (const v of victims) {
    const p = join(root, v.path);
    if (v.dir) {
      await Deno.mkdir(p, { recursive: true, mode: 0o750 });
      await Deno.chmod(p, 0o750);
      const inner = join(p, v.inner ?? "kept.log");
      await Deno.writeTextFile(inner, `${v.content ?? "victim file"} ${secret}\n`);
      await Deno.chmod(inner, 0o640);
      await Deno.utime(inner, past, past);
    } else {
      await Deno.writeTextFile(p, `${v.content ?? "victim"} line 1\n${secret}\n`);
      await Deno.chmod(p, 0o640);
    }
    await Deno.utime(p, past, past);
  }
  await Deno.utime(root, past, past);
}

/** Dangerous files under `root` (not following links), skipping the folders `skip` says. */
export async function hazards(root: string, skip: (rel: string) => boolean): Promise<Set<string>> {
  const found = new Set<string>();
  async function walk(d: string) {
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const e of Deno.readDir(d)) entries.push(e);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      const rel = relative(root, p);
      if (skip(rel)) continue;
      const st = await Deno.lstat(p).catch(() => undefined);
      if (!st) continue;
      const mode = st.mode ?? 0;
      const what = st.isCharDevice || st.isBlockDevice
        ? "device"
        : st.isFifo
        ? "fifo"
        : !st.isSymlink && (mode & 0o4000)
        ? "setuid"
        : !st.isSymlink && (mode & 0o2000) && !st.isDirectory
        ? "setgid"
        : "";
      if (what) found.add(`${what} ${JSON.stringify(rel)}`);
      if (st.isSymlink) {
        const to = await Deno.readLink(p).catch(() => "");
        const inside = !to.startsWith("/") && !relative(root, join(d, to)).startsWith("..");
        if (!inside) found.add(`link out ${JSON.stringify(rel)} -> ${JSON.stringify(to)}`);
      }
      if (st.isDirectory) await walk(p);
    }
  }
  await walk(root);
  return found;
}

/**
 * The raw control characters in terminal text: ESC, C0 other than newline and tab, DEL and C1.
 * Returns each, with a few characters around it (escaped) for the message.
 */
export function rawControls(text: string): string[] {
  const found: string[] = [];
  // deno-lint-ignore no-control-regex
  const re = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;
  for (const m of text.matchAll(re)) {
    const i = m.index!;
    found.push(JSON.stringify(text.slice(Math.max(0, i - 12), i + 16)));
    if (found.length >= 5) break;
  }
  return found;
}

/**
 * In a folder that is the guest's own (the sandbox's guest disk), what the guest itself could
 * never have made there: setuid/setgid files owned by root and devices. A copy or move by cal
 * as root that kept a guest file's mode but not its owner would make one.
 */
export async function rootHazards(root: string): Promise<Set<string>> {
  const found = new Set<string>();
  async function walk(d: string) {
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const e of Deno.readDir(d)) entries.push(e);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      const st = await Deno.lstat(p).catch(() => undefined);
      if (!st) continue;
      const mode = st.mode ?? 0;
      const rel = JSON.stringify(relative(root, p));
      if (st.isCharDevice || st.isBlockDevice) found.add(`device ${rel}`);
      else if (st.isFile && st.uid === 0 && (mode & 0o6000)) {
        found.add(`root-owned ${mode & 0o4000 ? "setuid" : "setgid"} ${rel}`);
      }
      if (st.isDirectory) await walk(p);
    }
  }
  await walk(root);
  return found;
}
