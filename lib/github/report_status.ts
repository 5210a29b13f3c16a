/**
 * git-receive-pack's answer (report-status, inside side-band-64k or not), with each refused
 * ref's generic `ng <ref> pre-receive hook declined` replaced by the broker's own reason, so
 * `git push` prints the rule on the ref's line: ` ! [remote rejected] HEAD -> main (cal: ...)`.
 */

const enc = new TextEncoder();
const dec = new TextDecoder();

function pkt(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(payload.length + 4);
  out.set(enc.encode((payload.length + 4).toString(16).padStart(4, "0")));
  out.set(payload, 4);
  return out;
}

const FLUSH = enc.encode("0000");

/** The pkt-lines of `b` (null for a flush), or undefined when it is not a pkt-line stream. */
function parse(b: Uint8Array): (Uint8Array | null)[] | undefined {
  const out: (Uint8Array | null)[] = [];
  let i = 0;
  while (i < b.length) {
    if (b.length - i < 4) return undefined;
    const n = parseInt(dec.decode(b.subarray(i, i + 4)), 16);
    if (Number.isNaN(n) || (n > 0 && n < 4) || i + Math.max(n, 4) > b.length) return undefined;
    out.push(n === 0 ? null : b.subarray(i + 4, i + n));
    i += n === 0 ? 4 : n;
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

/** The report with `reasons` (ref → text, one line) on its `ng` lines; anything else as it was. */
export function rewriteReport(body: Uint8Array, reasons: Map<string, string>): Uint8Array {
  if (!reasons.size) return body;
  const outer = parse(body);
  if (!outer?.length || !outer[0]) return body;
  const fix = (lines: (Uint8Array | null)[]) =>
    lines.map((l) => {
      if (!l) return FLUSH;
      const m = /^ng (\S+) (.*)\n?$/.exec(dec.decode(l));
      const why = m && reasons.get(m[1]);
      return why ? pkt(enc.encode(`ng ${m[1]} ${why.replace(/[^\x20-\x7e]/g, "?")}\n`)) : pkt(l);
    });
  if (![1, 2, 3].includes(outer[0][0])) return concat(fix(outer)); // no side band
  // Side band: band 1 carries the report (split anywhere); bands 2 and 3 stay as they were.
  const band1: Uint8Array[] = [];
  const rest: Uint8Array[] = [];
  let flushed = false;
  for (const p of outer) {
    if (!p) flushed = true;
    else if (p[0] === 1) band1.push(p.subarray(1));
    else rest.push(pkt(p));
  }
  const inner = parse(concat(band1));
  if (!inner) return body;
  const report = concat(fix(inner));
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < report.length; i += 65515) {
    chunks.push(pkt(concat([new Uint8Array([1]), report.subarray(i, i + 65515)])));
  }
  return concat([...rest, ...chunks, ...(flushed ? [FLUSH] : [])]);
}
