/**
 * XML property lists: a small parser (enough for archives' Info.plist, provisioning profiles and
 * export options) and a writer that produces what Xcode writes.
 *
 * Values: string, integer and real (numbers), true/false, date (kept as its ISO text), data
 * (bytes), array and dict. Binary plists are converted with `plutil` where it exists (macOS).
 */

import { CalError, ExitCode } from "../errors.ts";
import { run, which } from "../process.ts";

export type PlistValue =
  | string
  | number
  | boolean
  | Date
  | Uint8Array
  | PlistValue[]
  | { [key: string]: PlistValue };
export type PlistDict = { [key: string]: PlistValue };

export class PlistError extends Error {}

const ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (all, e: string) => {
    if (e.startsWith("#x")) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith("#")) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? all;
  });
}

interface Tag {
  name: string;
  close: boolean;
  selfClosing: boolean;
  start: number;
  end: number;
}

/** Parses the text of an XML plist; throws PlistError with what is wrong. */
export function parsePlist(xml: string): PlistValue {
  let pos = 0;

  function nextTag(): Tag {
    for (;;) {
      const lt = xml.indexOf("<", pos);
      if (lt < 0) throw new PlistError("unexpected end of the plist");
      if (xml.startsWith("<?", lt)) {
        pos = xml.indexOf("?>", lt) + 2;
        continue;
      }
      if (xml.startsWith("<!--", lt)) {
        pos = xml.indexOf("-->", lt) + 3;
        continue;
      }
      if (xml.startsWith("<!", lt)) {
        pos = xml.indexOf(">", lt) + 1;
        continue;
      }
      const gt = xml.indexOf(">", lt);
      if (gt < 0) throw new PlistError("unterminated tag");
      const inner = xml.slice(lt + 1, gt).trim();
      const close = inner.startsWith("/");
      const selfClosing = inner.endsWith("/");
      const name = inner.replace(/^\//, "").replace(/\/$/, "").split(/\s/)[0];
      pos = gt + 1;
      return { name, close, selfClosing, start: lt, end: gt + 1 };
    }
  }

  function textUntilClose(name: string): string {
    const end = xml.indexOf(`</${name}>`, pos);
    if (end < 0) throw new PlistError(`<${name}> is not closed`);
    const text = xml.slice(pos, end);
    pos = end + name.length + 3;
    return text;
  }

  function value(tag: Tag): PlistValue {
    if (tag.close) throw new PlistError(`unexpected </${tag.name}>`);
    switch (tag.name) {
      case "string":
        return tag.selfClosing ? "" : decodeEntities(textUntilClose("string"));
      case "integer":
      case "real": {
        const t = textUntilClose(tag.name).trim();
        const n = Number(t);
        if (t === "" || Number.isNaN(n)) throw new PlistError(`<${tag.name}>${t}</${tag.name}>`);
        return n;
      }
      case "true":
      case "false":
        if (!tag.selfClosing) textUntilClose(tag.name);
        return tag.name === "true";
      case "date": {
        const t = textUntilClose("date").trim();
        const d = new Date(t);
        if (Number.isNaN(d.getTime())) throw new PlistError(`bad date ${t}`);
        return d;
      }
      case "data": {
        if (tag.selfClosing) return new Uint8Array();
        const b64 = textUntilClose("data").replace(/\s+/g, "");
        try {
          return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        } catch {
          throw new PlistError("bad base64 in <data>");
        }
      }
      case "array": {
        const items: PlistValue[] = [];
        if (tag.selfClosing) return items;
        for (;;) {
          const t = nextTag();
          if (t.close && t.name === "array") return items;
          items.push(value(t));
        }
      }
      case "dict": {
        const dict: PlistDict = {};
        if (tag.selfClosing) return dict;
        for (;;) {
          const t = nextTag();
          if (t.close && t.name === "dict") return dict;
          if (t.name !== "key" || t.close) throw new PlistError(`expected <key>, got <${t.name}>`);
          const key = t.selfClosing ? "" : decodeEntities(textUntilClose("key"));
          dict[key] = value(nextTag());
        }
      }
      default:
        throw new PlistError(`unknown plist element <${tag.name}>`);
    }
  }

  const root = nextTag();
  if (root.name !== "plist" || root.close) throw new PlistError("not a plist (no <plist>)");
  if (root.selfClosing) throw new PlistError("empty plist");
  const v = value(nextTag());
  return v;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function render(v: PlistValue, indent: string, lines: string[]): void {
  if (typeof v === "string") lines.push(`${indent}<string>${escapeXml(v)}</string>`);
  else if (typeof v === "boolean") lines.push(`${indent}<${v}/>`);
  else if (typeof v === "number") {
    lines.push(
      Number.isInteger(v) ? `${indent}<integer>${v}</integer>` : `${indent}<real>${v}</real>`,
    );
  } else if (v instanceof Date) {
    lines.push(`${indent}<date>${v.toISOString().replace(/\.\d{3}Z$/, "Z")}</date>`);
  } else if (v instanceof Uint8Array) {
    lines.push(`${indent}<data>${btoa(String.fromCharCode(...v))}</data>`);
  } else if (Array.isArray(v)) {
    lines.push(`${indent}<array>`);
    for (const x of v) render(x, indent + "\t", lines);
    lines.push(`${indent}</array>`);
  } else {
    lines.push(`${indent}<dict>`);
    for (const k of Object.keys(v).sort()) {
      lines.push(`${indent}\t<key>${escapeXml(k)}</key>`);
      render(v[k], indent + "\t", lines);
    }
    lines.push(`${indent}</dict>`);
  }
}

/** Writes a value as an XML plist, keys sorted, tab-indented, as Xcode and plutil do. */
export function writePlist(v: PlistValue): string {
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
  ];
  render(v, "", lines);
  lines.push("</plist>", "");
  return lines.join("\n");
}

/** The XML plist embedded in a byte string (e.g. the payload of a CMS-signed profile). */
export function embeddedPlist(bytes: Uint8Array): string | undefined {
  // latin1 keeps byte offsets equal to string offsets.
  const text = new TextDecoder("latin1").decode(bytes);
  const start = text.indexOf("<?xml");
  const endTag = "</plist>";
  const end = text.indexOf(endTag, start);
  if (start < 0 || end < 0) return undefined;
  return new TextDecoder().decode(bytes.subarray(start, end + endTag.length));
}

const MAX_PLIST_BYTES = 16 * 1024 * 1024;

/** Reads a plist file: XML directly, binary through `plutil` (macOS). */
export async function readPlistFile(file: string): Promise<PlistValue> {
  // Archives come from the guest: a plist that is not a plain, plausible file is not read.
  const st = await Deno.lstat(file);
  if (!st.isFile || st.size > MAX_PLIST_BYTES) {
    throw new PlistError(st.isFile ? "too large to be a plist" : "not a plain file");
  }
  const bytes = await Deno.readFile(file);
  const head = new TextDecoder("latin1").decode(bytes.subarray(0, 8));
  let xml: string;
  if (head.startsWith("bplist")) {
    if (!which("plutil")) {
      throw new CalError(`${file} is a binary plist, and this host has no \`plutil\` to read it.`, {
        code: "tool-missing",
        exit: ExitCode.failed,
        hint: "Run this on macOS, or convert the file to XML (`plutil -convert xml1 FILE`).",
      });
    }
    const r = await run("plutil", ["-convert", "xml1", "-o", "-", "--", file]);
    if (r.code !== 0) throw new PlistError(r.stderr.trim() || "plutil could not read it");
    xml = r.stdout;
  } else {
    xml = new TextDecoder().decode(bytes);
  }
  return parsePlist(xml);
}

export function isDict(v: PlistValue | undefined): v is PlistDict {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date) &&
    !(v instanceof Uint8Array);
}
