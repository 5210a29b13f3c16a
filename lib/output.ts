/**
 * Where records and messages go.
 *
 * stdout carries results only: NDJSON when it is not a terminal or `--json` is given, a table or
 * text for people otherwise (`--human` forces it). Progress, events and errors go to stderr, as
 * NDJSON `event`/`error` records in JSON mode. A closed stdout pipe (`cal-vm list | head -1`)
 * ends the process quietly with exit 0.
 */

import pc from "picocolors";
import type { CalRecord, ErrorRecord, EventRecord } from "./records.ts";
import { type CalError, usageError } from "./errors.ts";
import { forTerminal } from "./terminal.ts";

export type Mode = "json" | "human";

export interface OutputFlags {
  json?: boolean;
  human?: boolean;
}

const encoder = new TextEncoder();

/** Thrown (and caught by the command runner) when stdout's reader has gone away. */
export class ClosedPipe extends Error {}

function writeAll(stream: typeof Deno.stdout | typeof Deno.stderr, text: string) {
  const bytes = encoder.encode(text);
  let done = 0;
  try {
    while (done < bytes.length) done += stream.writeSync(bytes.subarray(done));
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) throw new ClosedPipe();
    throw e;
  }
}

export class Output {
  readonly mode: Mode;
  /** Whether stderr is a person's terminal (progress may be decorated). */
  readonly stderrIsTerminal: boolean;

  constructor(flags: OutputFlags = {}) {
    this.mode = flags.json
      ? "json"
      : flags.human
      ? "human"
      : Deno.stdout.isTerminal()
      ? "human"
      : "json";
    this.stderrIsTerminal = Deno.stderr.isTerminal();
  }

  get json(): boolean {
    return this.mode === "json";
  }

  /** Writes one record as an NDJSON line (JSON mode only; human mode renders elsewhere). */
  record(r: CalRecord): void {
    if (this.json) writeAll(Deno.stdout, JSON.stringify(r) + "\n");
  }

  /** Emits records: NDJSON in JSON mode, else the given human rendering. */
  records<T extends CalRecord>(rs: T[], human: (rs: T[]) => string): void {
    if (this.json) {
      for (const r of rs) this.record(r);
    } else {
      const text = human(rs);
      if (text) this.text(text);
    }
  }

  /** Plain text to stdout, for people (ignored in JSON mode). */
  text(text: string): void {
    if (!this.json) writeAll(Deno.stdout, forTerminal(text.endsWith("\n") ? text : text + "\n"));
  }

  /** Raw bytes to stdout in any mode (used by commands whose output is the guest's own). */
  raw(text: string): void {
    writeAll(Deno.stdout, text);
  }

  /** A progress event: an NDJSON `event` record on stderr in JSON mode, a line otherwise. */
  event(event: string, message: string, extra: Record<string, unknown> = {}): void {
    if (this.json) {
      const r: EventRecord = {
        kind: "event",
        event,
        message,
        time: new Date().toISOString(),
        ...extra,
      };
      writeAll(Deno.stderr, JSON.stringify(r) + "\n");
    } else {
      writeAll(
        Deno.stderr,
        (this.stderrIsTerminal ? pc.dim("› ") : "") + forTerminal(message) + "\n",
      );
    }
  }

  /** A warning for people; an event record in JSON mode. */
  warn(message: string, workspace?: string): void {
    if (this.json) this.event("warning", message, workspace ? { workspace } : {});
    else writeAll(Deno.stderr, pc.yellow("warning: ") + forTerminal(message) + "\n");
  }

  /** The error: two sentences on stderr, plus an `error` record in JSON mode. */
  error(e: CalError): void {
    // A question answered no is no error: the message says what was kept.
    const label = e.code === "declined"
      ? ""
      : this.stderrIsTerminal
      ? pc.red("error: ")
      : "error: ";
    const lines = [`${label}${e.message}`];
    if (e.hint) lines.push(e.hint);
    let text = forTerminal(lines.join("\n")) + "\n";
    if (this.json) {
      const r: ErrorRecord = {
        kind: "error",
        code: e.code,
        exit: e.exit,
        message: e.message,
        ...(e.hint ? { hint: e.hint } : {}),
        ...(e.options.workspace ? { workspace: e.options.workspace } : {}),
      };
      text += JSON.stringify(r) + "\n";
    }
    try {
      writeAll(Deno.stderr, text);
    } catch { /* stderr closed: nothing left to tell */ }
  }
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const width = (s: string) => s.replace(ANSI, "").length;

/** A borderless table: header row, left-aligned columns joined by two spaces. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat(widths[i] - width(c))))
      .join("  ")
      .trimEnd();
  return [line(header.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n");
}

/** "3 minutes ago", "2 days ago": how long ago an ISO date was, for tables. */
export function ago(iso: string | undefined, now = Date.now()): string {
  if (!iso) return "-";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  const units: [number, string][] = [[86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
  for (const [size, unit] of units) {
    if (s >= size) {
      const n = Math.floor(s / size);
      return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
    }
  }
  return "just now";
}

/** Reads NDJSON records from stdin (for the `-` name); bare words count as `{[field]: word}`. */
export async function recordsFromStdin(field: string): Promise<Record<string, unknown>[]> {
  const text = await new Response(Deno.stdin.readable).text();
  const records: Record<string, unknown>[] = [];
  for (const raw of text.split("\n")) {
    const s = raw.trim();
    if (!s) continue;
    try {
      const r = JSON.parse(s);
      records.push(typeof r === "object" && r !== null ? r : { [field]: String(r) });
    } catch {
      records.push({ [field]: s }); // a bare name per line, like xargs input
    }
  }
  return records;
}

/** The values of `field` in the records on stdin; a record without it is a usage error. */
export async function namesFromStdin(field: string): Promise<string[]> {
  const records = await recordsFromStdin(field);
  return records.map((r, i) => {
    const v = r[field];
    if (typeof v === "string") return v;
    throw usageError(
      `stdin record ${i + 1} has no "${field}" field.`,
      `Pipe records that name a ${field}, e.g. the output of \`cal-vm list --json\`.`,
    );
  });
}
