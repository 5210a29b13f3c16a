/**
 * `cal-sync logs`: a workspace's build logs (every `*.log` in its host output folder, outside
 * bundles and hidden folders) and the VM's own log (`vm.log` in the workspace's folder: what the
 * provider printed while the machine ran). All on the host: no connection to the guest.
 *
 * `--tail N` prints the last N lines of each; `--follow` then keeps printing lines as they are
 * written, picks up log files that appear later, and starts over when a file is truncated.
 *
 * The output folder is the guest's to write (it is shared): a log there is never read through a
 * link (nofollow.ts), is read in bounded chunks (a huge or sparse file cannot exhaust memory),
 * and a line longer than MAX_LINE is cut into pieces. Lines are data: the command shows them
 * escaped on a terminal, exact in JSON.
 */

import { join, relative } from "node:path";
import { paths } from "../paths.ts";
import { plainSize, readRange } from "./nofollow.ts";
import { isBundleName } from "./patterns.ts";

/** The longest line passed on whole (longer ones come in pieces of this size). */
export const MAX_LINE = 64 * 1024;
/** How far back from the end `--tail` reads before it gives up finding more lines. */
const MAX_TAIL_BYTES = 8 * 1024 * 1024;

/** Splits a stream of bytes into lines (UTF-8 across chunk boundaries), each at most `max`. */
export class LineBuffer {
  private partial = "";
  private dec = new TextDecoder();
  constructor(private max = MAX_LINE) {}

  push(bytes: Uint8Array): string[] {
    const text = this.partial + this.dec.decode(bytes, { stream: true });
    const lines = text.split("\n");
    this.partial = lines.pop() ?? "";
    const out: string[] = [];
    for (const l of lines) {
      for (let i = 0; i < l.length || i === 0; i += this.max) {
        out.push(l.slice(i, i + this.max).replace(/\r$/, ""));
      }
    }
    while (this.partial.length > this.max) {
      out.push(this.partial.slice(0, this.max));
      this.partial = this.partial.slice(this.max);
    }
    return out;
  }

  /** The unfinished last line, if any (and forgets it). */
  flush(): string | undefined {
    const rest = this.partial + this.dec.decode();
    this.partial = "";
    return rest ? rest.replace(/\r$/, "") : undefined;
  }

  reset() {
    this.partial = "";
    this.dec = new TextDecoder();
  }
}

/** Reads [from, to) of a log in bounded chunks, passing each line on; returns the new offset. */
export async function readLines(
  path: string,
  from: number,
  to: number,
  buf: LineBuffer,
  onLine: (l: string) => void,
  maxBytes = Infinity,
): Promise<number> {
  let offset = from;
  while (offset < to && offset - from < maxBytes) {
    const b = await readRange(path, offset, to);
    if (!b.length) break;
    offset += b.length;
    for (const l of buf.push(b)) onLine(l);
  }
  return offset;
}

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
      } else if (e.isFile && !e.isSymlink && e.name.endsWith(".log")) {
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
  const size = (await plainSize(file)) ?? 0;
  if (n <= 0 || size === 0) return { lines: [], size };
  const block = 64 * 1024;
  let start = size;
  const chunks: Uint8Array[] = [];
  let newlines = 0;
  while (start > 0 && size - start < MAX_TAIL_BYTES) {
    const from = Math.max(0, start - block);
    const b = await readRange(file, from, start);
    if (b.length !== start - from) break; // replaced meanwhile
    chunks.unshift(b);
    for (const c of b) if (c === 10) newlines++;
    start = from;
    // One more newline than lines wanted (the trailing one) is enough.
    if (newlines > n) break;
  }
  const all = new Uint8Array(chunks.reduce((k, c) => k + c.length, 0));
  let o = 0;
  for (const c of chunks) all.set(c, o), o += c.length;
  const buf = new LineBuffer();
  const lines = buf.push(all);
  const rest = buf.flush();
  if (rest !== undefined) lines.push(rest);
  // The first line may be cut at the block boundary: dropped unless the file starts there.
  if (start > 0 && lines.length > n) lines.shift();
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
  const offsets = new Map<string, { offset: number; buf: LineBuffer }>();
  for (const f of await o.list()) {
    const buf = new LineBuffer();
    const emit = (l: string) => o.onLine(f, l);
    let offset: number;
    if (o.tail !== undefined) {
      const { lines, size } = await lastLines(f.path, o.tail);
      lines.forEach(emit);
      offset = size;
    } else {
      offset = await readLines(f.path, 0, (await plainSize(f.path)) ?? 0, buf, emit);
      // Without --follow an unfinished last line is printed now; with it, once it is finished.
      if (!o.follow) {
        const rest = buf.flush();
        if (rest !== undefined) emit(rest);
      }
    }
    offsets.set(f.path, { offset, buf });
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
      const size = await plainSize(f.path);
      if (size === undefined) continue;
      let st = offsets.get(f.path);
      if (!st) offsets.set(f.path, st = { offset: 0, buf: new LineBuffer() });
      if (size < st.offset) st.offset = 0, st.buf.reset();
      if (size === st.offset) continue;
      // At most 8 MB per file per round, so one busy log cannot starve the others.
      st.offset = await readLines(
        f.path,
        st.offset,
        size,
        st.buf,
        (l) => o.onLine(f, l),
        8 << 20,
      );
    }
  }
}
