/**
 * `cal-snap schedule`: a periodic `cal-snap cleanup --all` run by the host's own scheduler, a
 * launchd agent on macOS (`~/Library/LaunchAgents`) or a crontab entry elsewhere. What is
 * written is validated first (`plutil -lint` for the plist where it exists; `crontab` itself
 * rejects a bad line and leaves the old table in place).
 */

import { join } from "node:path";
import { CalError, usageError } from "./errors.ts";
import { calHome, homeDir } from "./paths.ts";
import { run, which } from "./process.ts";
import { quoteArgs } from "./shell.ts";

export const LABEL = "dev.cal.snapshot-cleanup";
const MARKER = "# cal-snap schedule";

export type Scheduler = "launchd" | "cron";

export function defaultScheduler(): Scheduler {
  return Deno.build.os === "darwin" ? "launchd" : "cron";
}

/**
 * The command the scheduler runs: the installed `cal-snap`, else this checkout through deno,
 * behind `env` with what it needs from this shell (cron and launchd start with almost no
 * environment: launchd's PATH has no /opt/homebrew/bin, where tart lives). Without
 * `--older-than` it applies the configured policy (max_auto_snapshots, auto_cleanup_after_days)
 * as it stands when it runs.
 */
export function cleanupCommand(olderThan: string | undefined, includeManual: boolean): string[] {
  if (includeManual && !olderThan) {
    throw usageError(
      "--include-manual would delete every snapshot people named.",
      "Give it an age too: --include-manual --older-than 30d.",
    );
  }
  const installed = which("cal-snap");
  const base = installed ? [installed] : [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    new URL("../commands/cal-snap.ts", import.meta.url).pathname,
  ];
  const env = [`CAL_HOME=${calHome()}`, `PATH=${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`];
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.push(`DENO_DIR=${denoDir}`);
  return [
    "/usr/bin/env",
    ...env,
    ...base,
    "cleanup",
    "--all",
    ...(olderThan ? [...(includeManual ? [] : ["--auto-only"]), "--older-than", olderThan] : []),
    "--json",
  ];
}

/** A cron schedule for an interval: `30m` → every 30 minutes, `1d` → daily at 03:00. */
export function cronTimes(every: string): string {
  const m = /^(\d+)([mhdw])$/.exec(every);
  const n = m ? Number(m[1]) : 0;
  if (!m || n < 1) {
    throw usageError(`"${every}" is not an interval.`, "Use e.g. 30m, 6h, 1d or 1w.");
  }
  switch (m[2]) {
    case "m":
      if (n > 59 || 60 % n) {
        throw usageError(`cron cannot run every ${every}.`, "Use a divisor of 60: 5m, 15m, 30m.");
      }
      return `*/${n} * * * *`;
    case "h":
      if (n > 23 || 24 % n) {
        throw usageError(`cron cannot run every ${every}.`, "Use a divisor of 24: 1h, 6h, 12h.");
      }
      return n === 1 ? "0 * * * *" : `0 */${n} * * *`;
    case "d":
      // Day-of-month steps restart each month, so this is "every n days" within a month.
      if (n > 28) {
        throw usageError(`cron cannot run every ${every}.`, "Use at most 28d, or 1w.");
      }
      return n === 1 ? "0 3 * * *" : `0 3 */${n} * *`;
    default:
      if (n !== 1) {
        throw usageError(`cron cannot run every ${every}.`, "Use 1w, or a number of days.");
      }
      return "0 3 * * 0";
  }
}

export function intervalSeconds(every: string): number {
  const m = /^(\d+)([mhdw])$/.exec(every);
  const seconds = m ? Number(m[1]) * { m: 60, h: 3600, d: 86400, w: 604800 }[m[2] as "m"] : 0;
  if (!m || seconds < 60 || seconds > 366 * 86400) {
    throw usageError(
      `"${every}" is not an interval from a minute to a year.`,
      "Use e.g. 30m, 6h, 1d or 1w.",
    );
  }
  return seconds;
}

export function cronLine(every: string, command: string[], logFile: string): string {
  return `${cronTimes(every)} ${quoteArgs(command)} >>${quoteArgs([logFile])} 2>&1 ${MARKER}`;
}

const xml = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    '"',
    "&quot;",
  );

export function plist(every: string, command: string[], logFile: string): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    "<dict>",
    "  <key>Label</key>",
    `  <string>${LABEL}</string>`,
    "  <key>ProgramArguments</key>",
    "  <array>",
    ...command.map((a) => `    <string>${xml(a)}</string>`),
    "  </array>",
    "  <key>StartInterval</key>",
    `  <integer>${intervalSeconds(every)}</integer>`,
    "  <key>StandardOutPath</key>",
    `  <string>${xml(logFile)}</string>`,
    "  <key>StandardErrorPath</key>",
    `  <string>${xml(logFile)}</string>`,
    "</dict>",
    "</plist>",
    "",
  ].join("\n");
}

export const plistPath = () => join(homeDir(), "Library", "LaunchAgents", `${LABEL}.plist`);

async function crontab(): Promise<string> {
  const r = await run("crontab", ["-l"], { installHint: "Install cron (`apt-get install cron`)." });
  if (r.code === 0) return r.stdout;
  if (/no crontab/i.test(r.stderr)) return "";
  throw new CalError(`Could not read your crontab: ${r.stderr.trim()}`);
}

async function writeCrontab(text: string): Promise<void> {
  const r = await run("crontab", ["-"], { stdin: text });
  if (r.code !== 0) {
    throw new CalError(`crontab refused the new table: ${r.stderr.trim()}`, {
      hint: "Your previous crontab is unchanged.",
    });
  }
}

export async function installCron(line: string): Promise<void> {
  const kept = (await crontab()).split("\n").filter((l) => l && !l.endsWith(MARKER));
  await writeCrontab([...kept, line, ""].join("\n"));
}

/** Removes cal's entry; returns whether there was one. */
export async function removeCron(): Promise<boolean> {
  const lines = (await crontab()).split("\n").filter(Boolean);
  const kept = lines.filter((l) => !l.endsWith(MARKER));
  if (kept.length === lines.length) return false;
  await writeCrontab(kept.length ? kept.join("\n") + "\n" : "");
  return true;
}

export async function installLaunchd(text: string): Promise<string> {
  const file = plistPath();
  await Deno.mkdir(join(homeDir(), "Library", "LaunchAgents"), { recursive: true });
  const tmp = `${file}.tmp`;
  await Deno.writeTextFile(tmp, text);
  if (which("plutil")) {
    const lint = await run("plutil", ["-lint", tmp]);
    if (lint.code !== 0) {
      await Deno.remove(tmp);
      throw new CalError(`The generated plist is invalid: ${lint.stdout.trim()}`, {
        hint: "This is a bug in cal; please report it.",
      });
    }
  }
  await Deno.rename(tmp, file);
  if (which("launchctl")) {
    await run("launchctl", ["unload", file]);
    const r = await run("launchctl", ["load", "-w", file]);
    if (r.code !== 0) throw new CalError(`launchctl could not load ${file}: ${r.stderr.trim()}`);
  }
  return file;
}

export async function removeLaunchd(): Promise<boolean> {
  const file = plistPath();
  try {
    await Deno.stat(file);
  } catch {
    return false;
  }
  if (which("launchctl")) await run("launchctl", ["unload", file]);
  await Deno.remove(file);
  return true;
}
