/**
 * A forged tar stream, written by hand: what a hijacked guest's fake `tar` prints in front of the
 * real one. ustar headers only (GNU tar reads them), and no end-of-archive blocks, so the real
 * archive that follows is read as part of the same stream.
 */

export interface Member {
  name: string;
  type: "file" | "symlink" | "hardlink" | "chardev" | "fifo" | "dir";
  mode?: number;
  content?: string;
  /** Link target (symlink, hardlink). */
  target?: string;
  major?: number;
  minor?: number;
}

const TYPEFLAG: Record<Member["type"], string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  chardev: "3",
  dir: "5",
  fifo: "6",
};

const enc = new TextEncoder();

function put(block: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = enc.encode(value);
  if (bytes.length > length) throw new Error(`tar field too long: ${value}`);
  block.set(bytes, offset);
}

function octal(n: number, length: number): string {
  return n.toString(8).padStart(length - 1, "0") + "\0";
}

function header(m: Member, size: number): Uint8Array {
  const h = new Uint8Array(512);
  let name = m.name;
  let prefix = "";
  if (enc.encode(name).length > 100) {
    const cut = name.lastIndexOf("/", 154);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  put(h, 0, 100, name);
  put(h, 100, 8, octal(m.mode ?? 0o644, 8));
  put(h, 108, 8, octal(501, 8));
  put(h, 116, 8, octal(20, 8));
  put(h, 124, 12, octal(size, 12));
  put(h, 136, 12, octal(1_700_000_000, 12));
  put(h, 148, 8, "        ");
  put(h, 156, 1, TYPEFLAG[m.type]);
  put(h, 157, 100, m.target ?? "");
  put(h, 257, 6, "ustar\0");
  put(h, 263, 2, "00");
  put(h, 265, 32, "admin");
  put(h, 297, 32, "staff");
  put(h, 329, 8, octal(m.major ?? 0, 8));
  put(h, 337, 8, octal(m.minor ?? 0, 8));
  put(h, 345, 155, prefix);
  const sum = h.reduce((a, b) => a + b, 0);
  put(h, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

/** The members as tar blocks, without the closing zero blocks. */
export function forgedTar(members: Member[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const m of members) {
    const data = m.type === "file" ? enc.encode(m.content ?? "") : new Uint8Array(0);
    parts.push(header(m, data.length));
    if (data.length) {
      const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
      padded.set(data);
      parts.push(padded);
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}
