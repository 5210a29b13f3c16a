/**
 * Unpacks the tar stream a sync asks the guest for, into a folder cal owns.
 *
 * Parsed here rather than handed to the host's `tar -x`: the stream comes from the guest, and
 * a hostile guest forges it (its `tar` is whatever it likes). GNU tar as root keeps setuid bits
 * and creates device nodes unless told otherwise, bsdtar on a Mac takes other options, and both
 * follow links made by earlier members. Here only what a build artifact needs is ever created,
 * the same on every host:
 * - plain files (mode 0644, or 0755 when any execute bit was set: never setuid, setgid or
 *   sticky) and folders (0755), with the member's mtime;
 * - symbolic links only inside a bundle (macOS frameworks have `Versions/Current`), relative,
 *   and pointing inside that same bundle; no member is ever written through one;
 * - no hard links, devices, FIFOs, sockets or anything else (skipped and counted);
 * - only members named by one of the paths asked for (or inside an asked-for bundle), each a
 *   normalized relative path: no absolute name, no `..`, `.` or empty part.
 * ustar, pax (`x`; `g` ignored) and GNU long names (`L`, `K`) are understood, which covers what
 * GNU tar and macOS's bsdtar write. A broken header ends the stream: what was complete stays.
 */

import { join, posix } from "node:path";
import { relPathProblem } from "./listing.ts";

export interface ExtractResult {
  /** Members not extracted: how many, and up to a few reasons (guest text: show it escaped). */
  skipped: number;
  reasons: string[];
  /** Why the stream ended early, if it did. */
  broken?: string;
}

/** The largest pax or GNU long-name header cal reads (names are at most 4096 bytes anyway). */
const MAX_META = 1 << 20;
/** How much cal reads after the end of the archive before it stops listening. */
const MAX_TRAILER = 1 << 20;

class Reader {
  private buf: Uint8Array = new Uint8Array(0);
  private off = 0;
  private ended = false;
  constructor(private r: ReadableStreamDefaultReader<Uint8Array>) {}

  private get have() {
    return this.buf.length - this.off;
  }

  private async more(): Promise<boolean> {
    if (this.ended) return false;
    const { value, done } = await this.r.read();
    if (done || !value) {
      this.ended = true;
      return false;
    }
    const rest = this.buf.subarray(this.off);
    if (!rest.length) {
      this.buf = value;
      this.off = 0;
      return true;
    }
    const next = new Uint8Array(rest.length + value.length);
    next.set(rest);
    next.set(value, rest.length);
    this.buf = next;
    this.off = 0;
    return true;
  }

  /** Exactly `n` bytes, or undefined at the end of the stream. */
  async take(n: number): Promise<Uint8Array | undefined> {
    while (this.have < n) if (!(await this.more())) return undefined;
    const out = this.buf.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }

  /** Up to `max` bytes (at least one), or undefined at the end. */
  async some(max: number): Promise<Uint8Array | undefined> {
    if (!this.have && !(await this.more())) return undefined;
    const n = Math.min(max, this.have);
    const out = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return out;
  }

  /** Passes `n` bytes to `sink` (or drops them); false when the stream ended first. */
  async pass(n: number, sink?: (b: Uint8Array) => Promise<void>): Promise<boolean> {
    let left = n;
    while (left > 0) {
      const b = await this.some(Math.min(left, 1 << 16));
      if (!b) return false;
      if (sink) await sink(b);
      left -= b.length;
    }
    return true;
  }

  cancel() {
    this.r.cancel().catch(() => {});
  }
}

const dec = new TextDecoder("utf-8", { fatal: true });

function cstr(b: Uint8Array, off: number, len: number): Uint8Array {
  const f = b.subarray(off, off + len);
  const z = f.indexOf(0);
  return z < 0 ? f : f.subarray(0, z);
}

/** A numeric field: octal text, or GNU's base-256 (high bit set). NaN when malformed. */
function num(b: Uint8Array, off: number, len: number): number {
  const f = b.subarray(off, off + len);
  if (f[0] & 0x80) {
    if (f[0] & 0x40) return NaN; // negative
    let n = f[0] & 0x3f;
    for (let i = 1; i < f.length; i++) n = n * 256 + f[i];
    return Number.isSafeInteger(n) ? n : NaN;
  }
  const s = new TextDecoder().decode(cstr(b, off, len)).trim();
  if (!s) return 0;
  return /^[0-7]+$/.test(s) ? parseInt(s, 8) : NaN;
}

function checksumOk(h: Uint8Array): boolean {
  const stored = num(h, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const c = i >= 148 && i < 156 ? 32 : h[i];
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

/** pax records: `<len> key=value\n`, repeated. */
function paxRecords(data: Uint8Array): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number(new TextDecoder().decode(data.subarray(i, sp)));
    if (!Number.isSafeInteger(len) || len <= 0 || i + len > data.length) break;
    const rec = data.subarray(sp + 1, i + len - 1); // without the newline
    const eq = rec.indexOf(0x3d);
    if (eq > 0) m.set(new TextDecoder().decode(rec.subarray(0, eq)), rec.subarray(eq + 1));
    i += len;
  }
  return m;
}

const pad = (n: number) => Math.ceil(n / 512) * 512;

/**
 * Extracts the members of `stream` that `wanted` asks for (guest path → what the listing said it
 * is) into `dir`, a folder cal made and no one else writes.
 */
export async function extractTar(
  stream: ReadableStream<Uint8Array>,
  dir: string,
  wanted: Map<string, "file" | "bundle">,
): Promise<ExtractResult> {
  const r = new Reader(stream.getReader());
  const result: ExtractResult = { skipped: 0, reasons: [] };
  const skip = (name: string, why: string) => {
    result.skipped++;
    if (result.reasons.length < 5) result.reasons.push(`${JSON.stringify(name)}: ${why}`);
  };
  const links = new Set<string>();
  const folders: { path: string; mtime: number }[] = [];
  let longName: Uint8Array | undefined;
  let longLink: Uint8Array | undefined;
  let pax = new Map<string, Uint8Array>();

  /** The asked-for artifact a member belongs to, if any. */
  const topOf = (name: string): string | undefined => {
    if (wanted.has(name)) return name;
    let i = name.indexOf("/");
    while (i > 0) {
      const p = name.slice(0, i);
      if (wanted.get(p) === "bundle") return p;
      i = name.indexOf("/", i + 1);
    }
    return undefined;
  };
  /** Whether a member would be written through a link cal made. */
  const throughLink = (name: string): boolean => {
    let i = name.indexOf("/");
    while (i > 0) {
      if (links.has(name.slice(0, i))) return true;
      i = name.indexOf("/", i + 1);
    }
    return false;
  };
  /** Makes the member's parent folders; false when something other than a folder is in the way. */
  const parents = async (name: string): Promise<boolean> => {
    const parts = name.split("/").slice(0, -1);
    let p = dir;
    for (const part of parts) {
      p = join(p, part);
      const st = await Deno.lstat(p).catch(() => undefined);
      if (st?.isDirectory) continue;
      if (st) return false;
      await Deno.mkdir(p, { mode: 0o755 });
    }
    return true;
  };
  /** Clears the way for a new entry at `path` (never a folder: those are kept). */
  const clear = async (path: string): Promise<"ok" | "dir"> => {
    const st = await Deno.lstat(path).catch(() => undefined);
    if (st?.isDirectory) return "dir";
    if (st) await Deno.remove(path);
    return "ok";
  };

  try {
    let trailer = 0;
    for (;;) {
      const h = await r.take(512);
      if (!h) break;
      if (h.every((b) => b === 0)) {
        // The end of the archive; what follows is padding (or a guest's noise): bounded.
        while (trailer < MAX_TRAILER) {
          const b = await r.some(1 << 16);
          if (!b) break;
          trailer += b.length;
        }
        break;
      }
      if (!checksumOk(h)) {
        result.broken = "a header that is not tar";
        break;
      }
      const type = String.fromCharCode(h[156] || 0x30);
      let size = num(h, 124, 12);
      if (pax.has("size")) size = Number(new TextDecoder().decode(pax.get("size")));
      if (!Number.isSafeInteger(size) || size < 0) {
        result.broken = "a member with an impossible size";
        break;
      }
      if (type === "x" || type === "g" || type === "L" || type === "K") {
        if (size > MAX_META) {
          result.broken = "an oversized name header";
          break;
        }
        const data = await r.take(pad(size));
        if (!data) break;
        const body = data.subarray(0, size);
        if (type === "x") pax = paxRecords(body);
        else if (type === "L") longName = cstr(body, 0, body.length);
        else if (type === "K") longLink = cstr(body, 0, body.length);
        continue;
      }
      const ustar = dec.decode(h.subarray(257, 263)) === "ustar\0";
      let nameBytes = pax.get("path") ?? longName;
      if (!nameBytes) {
        const base = cstr(h, 0, 100);
        const prefix = ustar ? cstr(h, 345, 155) : new Uint8Array(0);
        nameBytes = prefix.length ? new Uint8Array([...prefix, 0x2f, ...base]) : base;
      }
      const linkBytes = pax.get("linkpath") ?? longLink ?? cstr(h, 157, 100);
      let mtime = num(h, 136, 12);
      if (pax.has("mtime")) mtime = Number(new TextDecoder().decode(pax.get("mtime")));
      const mode = num(h, 100, 8);
      pax = new Map();
      longName = longLink = undefined;

      const data = type === "0" || type === "7" ? size : 0;
      const rest = pad(size);
      let name: string;
      try {
        name = dec.decode(nameBytes);
      } catch {
        skip("(a name that is not UTF-8)", "not asked for");
        if (!(await r.pass(rest))) break;
        continue;
      }
      while (name.startsWith("./")) name = name.slice(2);
      if (type === "5") name = name.replace(/\/$/, "");
      const problem = relPathProblem(name);
      const top = problem ? undefined : topOf(name);
      let why = problem ?? (top ? "" : "not asked for");
      if (!why && throughLink(name)) why = "inside a link";
      if (!why && name === top && wanted.get(top) === "file" && type !== "0" && type !== "7") {
        why = "not a plain file";
      }
      if (!why && name === top && wanted.get(top) === "bundle" && type !== "5") {
        why = "not a folder";
      }
      const target = join(dir, name);
      if (!why) {
        if (type === "0" || type === "7") {
          if (!(await parents(name))) why = "its folder is not a folder";
          else if ((await clear(target)) === "dir") why = "a folder is in the way";
          else {
            const f = await Deno.open(target, {
              write: true,
              createNew: true,
              mode: Number.isNaN(mode) || !(mode & 0o111) ? 0o644 : 0o755,
            });
            let whole: boolean;
            try {
              whole = await r.pass(data, async (b) => {
                let o = 0;
                while (o < b.length) o += await f.write(b.subarray(o));
              });
            } finally {
              f.close();
            }
            if (!whole) {
              await Deno.remove(target).catch(() => {});
              result.broken = "the stream ended inside a file";
              break;
            }
            if (Number.isFinite(mtime)) {
              await Deno.utime(target, mtime, mtime).catch(() => {});
            }
            if (!(await r.pass(rest - data))) break;
            continue;
          }
        } else if (type === "5") {
          if (!(await parents(name))) why = "its folder is not a folder";
          else {
            const st = await Deno.lstat(target).catch(() => undefined);
            if (st && !st.isDirectory) await Deno.remove(target);
            if (!st?.isDirectory) await Deno.mkdir(target, { mode: 0o755 });
            if (Number.isFinite(mtime)) folders.push({ path: target, mtime });
          }
        } else if (type === "2") {
          let link = "";
          try {
            link = dec.decode(linkBytes);
          } catch { /* not UTF-8 */ }
          const to = posix.normalize(posix.join(posix.dirname(name), link));
          if (!link || link.startsWith("/") || !top || !to.startsWith(top + "/")) {
            why = "a link that leads out of its artifact";
          } else if (name === top) {
            why = "not a folder";
          } else if (!(await parents(name))) {
            why = "its folder is not a folder";
          } else if ((await clear(target)) === "dir") {
            why = "a folder is in the way";
          } else {
            await Deno.symlink(link, target);
            links.add(name);
          }
        } else {
          why = ({
            "1": "a hard link",
            "3": "a device",
            "4": "a device",
            "6": "a FIFO",
          } as Record<string, string>)[type] ??
            `an unsupported member type (${JSON.stringify(type)})`;
        }
      }
      if (why) skip(name, why);
      if (!(await r.pass(rest))) break;
    }
  } finally {
    r.cancel();
  }
  // Folders last, deepest first: writing into a folder changes its mtime.
  for (const f of folders.reverse()) {
    await Deno.utime(f.path, f.mtime, f.mtime).catch(() => {});
  }
  return result;
}
