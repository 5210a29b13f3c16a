/**
 * `cal-sync logs`: a workspace's build logs (every `*.log` in its host output folder, outside
 * bundles and hidden folders) and the VM's own log (`vm.log` in the workspace's folder: what the
 * provider printed while the machine ran). All on the host: no connection to the guest.
 *
 * `--tail N` prints the last N lines of each; `--follow` then keeps printing lines as they are
 * written, picks up log files that appear later, and starts over when a file is truncated.
 */

import { join, relative } from "node:path";
import { paths } from "../paths.ts";
import { isBundleName } from "./patterns.ts";
import { readRange } from "./watch.ts";

export interface LogFile {
  /** What to call it: the path relative to the output folder, or "vm.log" for the VM's log. */
  label: string;
  path: string;
}

/** The build logs under `dir`, sorted; then the VM's log when it exists. */
export async function logFiles(workspace: string, dir: string): Promise<LogFile[]> {
  const found: LogFile[] = [];
  async function walk(d: string) {
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const e of Deno.readDir(d)) entries.push(e);
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const p = join(d, e.name);
      // Bundles (.xcresult, .xcarchive) hold logs of their own, which are not build logs here.
      if (e.isDirectory && !isBundleName(e.name)) {
        await walk(p);
      } else if (e.isFile && e.name.endsWith(".log")) {
        found.push({ label: relative(dir, p), path: p });
      }
    }
  }
  await walk(dir);
  found.sort((a, b) => a.label.localeCompare(b.label));
  const vmLog = join(paths.vmDir(workspace), "vm.log");
  if ((await Deno.stat(vmLog).catch(() => undefined))?.isFile) {
    found.push({ label: "vm.log", path: vmLog });
  }
  return found;
}

/** The last `n` lines of a file (without their newlines), read from the end in blocks. */
export async function lastLines(
  file: string,
  n: number,
): Promise<{ lines: string[]; size: number }> {
  const size = (await Deno.stat(file).catch(() => undefined))?.size ?? 0;
  if (n <= 0 || size === 0) return { lines: [], size };
  const block = 64 * 1024;
  let start = size;
  let text = "";
  while (start > 0) {
    const from = Math.max(0, start - block);
    text = (await readRange(file, from, start)) + text;
    start = from;
    // One more newline than lines wanted (the trailing one) is enough.
    if ((text.match(/\n/g)?.length ?? 0) > n) break;
  }
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return { lines: lines.slice(-n), size };
}

export interface ShowOptions {
  tail?: number;
  follow: boolean;
  signal: AbortSignal;
  /** Called with each line, in order. */
  onLine(file: LogFile, line: string): void;
  /** Re-lists the log files (new ones appear while following). */
  list(): Promise<LogFile[]>;
  pollMs?: number;
}

/** Prints the logs, then (with follow) what is written to them, until `signal` aborts. */
export async function showLogs(o: ShowOptions): Promise<void> {
  const offsets = new Map<string, { offset: number; partial: string }>();
  for (const f of await o.list()) {
    let lines: string[];
    let size: number;
    if (o.tail !== undefined) {
      ({ lines, size } = await lastLines(f.path, o.tail));
    } else {
      size = (await Deno.stat(f.path).catch(() => undefined))?.size ?? 0;
      const text = await readRange(f.path, 0, size);
      lines = text.split("\n");
      if (lines[lines.length - 1] === "") lines.pop();
      else if (o.follow) {
        // An unfinished last line is printed once it is finished.
        const last = lines.pop() ?? "";
        offsets.set(f.path, { offset: size, partial: last });
      }
    }
    for (const l of lines) o.onLine(f, l.replace(/\r$/, ""));
    if (!offsets.has(f.path)) offsets.set(f.path, { offset: size, partial: "" });
  }
  if (!o.follow) return;
  while (!o.signal.aborted) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, o.pollMs ?? 250);
      function done() {
        clearTimeout(t);
        o.signal.removeEventListener("abort", done);
        resolve();
      }
      o.signal.addEventListener("abort", done);
    });
    if (o.signal.aborted) break;
    for (const f of await o.list()) {
      const size = (await Deno.stat(f.path).catch(() => undefined))?.size;
      if (size === undefined) continue;
      let st = offsets.get(f.path);
      if (!st) offsets.set(f.path, st = { offset: 0, partial: "" });
      if (size < st.offset) st.offset = 0, st.partial = "";
      if (size === st.offset) continue;
      const text = await readRange(f.path, st.offset, size);
      st.offset = size;
      const lines = (st.partial + text).split("\n");
      st.partial = lines.pop() ?? "";
      for (const l of lines) o.onLine(f, l.replace(/\r$/, ""));
    }
  }
}
