/**
 * The decision log: one NDJSON line per connection the proxy allowed or refused, in
 * `<vmDir>/network.log`, rotated to `network.log.1` past a few MB so it stays bounded.
 *
 * A line holds the time, the host and port asked for, the decision, the rule that made it and
 * its source, and for refusals the reason. Nothing else: no headers, no paths or query strings,
 * so no secret a request carries can land here.
 */

import { join } from "node:path";
import { paths } from "../paths.ts";

export interface Entry {
  time: string;
  host: string;
  port: number;
  decision: "allowed" | "refused";
  rule: string;
  source?: string;
  reason?: string;
}

export const MAX_LOG_BYTES = 4 * 1024 * 1024;

export const logFile = (name: string) => join(paths.vmDir(name), "network.log");

/** The proxy's side: appends entries, rotating when the file grows past `maxBytes`. */
export class DecisionLog {
  private file: Deno.FsFile | undefined;
  private size = 0;
  private encoder = new TextEncoder();

  constructor(readonly path: string, readonly maxBytes = MAX_LOG_BYTES) {}

  write(e: Omit<Entry, "time">): void {
    // The host is the guest's words: bounded, so a huge name cannot bloat the log.
    const entry: Entry = { time: new Date().toISOString(), ...e, host: e.host.slice(0, 255) };
    const line = this.encoder.encode(JSON.stringify(entry) + "\n");
    try {
      if (!this.file) this.open();
      if (this.size + line.length > this.maxBytes && this.size > 0) this.rotate();
      this.file!.writeSync(line);
      this.size += line.length;
    } catch {
      // A full disk or a removed folder must not take the proxy down; the next write retries.
      this.close();
    }
  }

  private open() {
    this.file = Deno.openSync(this.path, { append: true, create: true, mode: 0o600 });
    this.size = this.file.statSync().size;
  }

  private rotate() {
    this.close();
    Deno.renameSync(this.path, this.path + ".1");
    this.open();
  }

  close(): void {
    try {
      this.file?.close();
    } catch { /* already closed */ }
    this.file = undefined;
  }
}

function parseLines(text: string): Entry[] {
  const out: Entry[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line);
      if (e && typeof e.host === "string" && typeof e.port === "number") out.push(e);
    } catch { /* a line cut by a crash */ }
  }
  return out;
}

/** Every entry still kept, oldest first. */
export async function readLog(path: string): Promise<Entry[]> {
  const read = (p: string) => Deno.readTextFile(p).catch(() => "");
  return parseLines((await read(path + ".1")) + (await read(path)));
}

/**
 * Calls `onEntry` for each entry written after now, until `signal` aborts. Polls (a few times a
 * second), and starts over at a rotated file's beginning.
 */
export async function followLog(
  path: string,
  onEntry: (e: Entry) => void,
  signal: AbortSignal,
  pollMs = 200,
): Promise<void> {
  const stat = () => Deno.stat(path).catch(() => undefined);
  let st = await stat();
  let offset = st?.size ?? 0;
  let ino = st?.ino;
  let pending = "";
  while (!signal.aborted) {
    await new Promise((r) => setTimeout(r, pollMs));
    st = await stat();
    if (!st) continue;
    if (st.ino !== ino || st.size < offset) {
      ino = st.ino;
      offset = 0;
      pending = "";
    }
    if (st.size === offset) continue;
    const f = await Deno.open(path, { read: true });
    try {
      await f.seek(offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(st.size - offset);
      let got = 0;
      while (got < buf.length) {
        const n = await f.read(buf.subarray(got));
        if (n === null) break;
        got += n;
      }
      offset += got;
      pending += new TextDecoder().decode(buf.subarray(0, got));
    } finally {
      f.close();
    }
    const cut = pending.lastIndexOf("\n");
    if (cut < 0) continue;
    for (const e of parseLines(pending.slice(0, cut))) onEntry(e);
    pending = pending.slice(cut + 1);
  }
}
