/**
 * cal-snap: snapshots and rollback. Thin: parses arguments, calls lib/, emits records.
 *
 *   cal-snap create|restore|delete WS --name NAME      cal-snap list [WS] [--all]
 *   cal-snap rollback WS       cal-snap cleanup [WS|--all] [--auto-only] [--older-than 7d]
 *   cal-snap disk-usage WS     cal-snap schedule [--every 1d] [--older-than 7d] [--print|--remove]
 */

import { Command } from "@commander-js/extra-typings";
import {
  type Context,
  namesOrStdin,
  newContext,
  outputOptions,
  rootProgram,
  runAsProcess,
  runProgram,
} from "../lib/cli.ts";
import { usageError } from "../lib/errors.ts";
import { ago, recordsFromStdin, table } from "../lib/output.ts";
import { paths } from "../lib/paths.ts";
import type { ScheduleRecord, SnapshotRecord } from "../lib/records.ts";
import {
  cleanupCommand,
  cronLine,
  defaultScheduler,
  installCron,
  installLaunchd,
  plist,
  plistPath,
  removeCron,
  removeLaunchd,
  type Scheduler,
} from "../lib/schedule.ts";
import {
  cleanupSnapshots,
  createSnapshot,
  deleteSnapshot,
  diskUsage,
  listSnapshots,
  parseDuration,
  policy,
  restoreSnapshot,
  rollback,
} from "../lib/snapshots.ts";

const gb = (n: number | undefined) => (n === undefined ? "-" : `${n} GB`);

export function snapshotTable(rs: SnapshotRecord[], withWorkspace = false): string {
  if (!rs.length) return "No snapshots.";
  const header = [...(withWorkspace ? ["workspace"] : []), "name", "created", "size", "kind"];
  return table(
    header,
    rs.map((r) => [
      ...(withWorkspace ? [r.workspace] : []),
      r.snapshot,
      ago(r.created_at),
      gb(r.size_gb),
      r.auto ? "auto" : "manual",
    ]),
  ) + rs.filter((r) => r.problem).map((r) => `\n${r.snapshot}: ${r.problem}`).join("");
}

function requireName(name: string | undefined): string {
  if (!name) throw usageError("Which snapshot? --name is required.", "Pass --name NAME.");
  return name;
}

export function program(ctx: Context): Command {
  const out = ctx.out;
  const p = rootProgram("cal-snap", "Snapshot, restore and roll back workspaces.");

  outputOptions(
    p.command("create").description("snapshot a workspace (a running one is paused for the copy)")
      .argument("<workspace>", "workspace name, or - for records on stdin")
      .option("--name <snapshot>", "snapshot name")
      .option("--auto", "a session snapshot: named session-<date>-<time>, pruned like the others"),
  ).action(async (ws, o) => {
    if (!o.name && !o.auto) throw usageError("Name the snapshot.", "Pass --name NAME (or --auto).");
    if (o.name && o.auto) throw usageError("--name and --auto exclude each other.", "Pass one.");
    for (const n of await namesOrStdin(ws)) {
      const { record, seconds } = await createSnapshot(n, o.name, await ctx.config(), out);
      out.records(
        [record],
        ([r]) => `Created snapshot "${r.snapshot}" of "${r.workspace}" (${seconds} s).`,
      );
    }
  });

  outputOptions(
    p.command("list").alias("ls").description("list a workspace's snapshots (NAME CREATED SIZE)")
      .argument("[workspace]", "workspace name")
      .option("--all", "every workspace's snapshots"),
  ).action(async (ws, o) => {
    if (!ws && !o.all) throw usageError("Which workspace?", "Name one, or pass --all.");
    const names = o.all ? [undefined] : await namesOrStdin(ws!);
    const rs = [];
    for (const n of names) rs.push(...await listSnapshots(n));
    out.records(rs, (rs) => snapshotTable(rs, names.length !== 1 || !!o.all));
  });

  outputOptions(
    p.command("restore").description("put a workspace back to a snapshot")
      .argument("<workspace>", "workspace name")
      .requiredOption("--name <snapshot>", "snapshot name")
      .option(
        "--force",
        "restore even if the guest has (or may have) uncommitted or unpushed work",
      ),
  ).action(async (ws, o) => {
    const { record, seconds } = await restoreSnapshot(ws, o.name, o, await ctx.config(), out);
    out.records([record], ([r]) => `Restored to snapshot: ${r.snapshot} (${seconds} seconds)`);
  });

  outputOptions(
    p.command("rollback").description("restore the newest session-start snapshot")
      .argument("<workspace>", "workspace name")
      .option(
        "--force",
        "roll back even if the guest has (or may have) uncommitted or unpushed work",
      ),
  ).action(async (ws, o) => {
    const { record, seconds } = await rollback(ws, o, await ctx.config(), out);
    out.records([record], ([r]) => `Restored to snapshot: ${r.snapshot} (${seconds} seconds)`);
  });

  outputOptions(
    p.command("delete").alias("rm").description("delete a snapshot")
      .argument("<workspace>", "workspace name, or - for snapshot records on stdin")
      .option("--name <snapshot>", "snapshot name (not needed with -)"),
  ).action(async (ws, o) => {
    const pairs: [string, string][] = [];
    if (ws === "-") {
      for (const r of await recordsFromStdin("workspace")) {
        const w = r.workspace, s = r.snapshot ?? o.name;
        if (typeof w !== "string" || typeof s !== "string") {
          throw usageError(
            "A record on stdin names no workspace and snapshot.",
            "Pipe snapshot records, e.g. from `cal-snap list --all --json`.",
          );
        }
        pairs.push([w, s]);
      }
    } else pairs.push([ws, requireName(o.name)]);
    for (const [w, s] of pairs) {
      const r = await deleteSnapshot(w, s, out);
      out.records([r], ([r]) => `Deleted snapshot "${r.snapshot}" of "${r.workspace}".`);
    }
  });

  outputOptions(
    p.command("cleanup").description(
      "delete snapshots: auto ones beyond max_auto_snapshots and past auto_cleanup_after_days, " +
        "or as the flags say",
    )
      .argument("[workspace]", "workspace name")
      .option("--all", "every workspace")
      .option("--auto-only", "only session-start snapshots")
      .option("--older-than <age>", "only snapshots older than this (30m, 12h, 7d, 2w)"),
  ).action(async (ws, o) => {
    if (!ws && !o.all) throw usageError("Which workspace?", "Name one, or pass --all.");
    const flags = o.autoOnly || o.olderThan;
    const p = flags
      ? {
        autoOnly: !!o.autoOnly,
        ...(o.olderThan ? { olderThanMs: parseDuration(o.olderThan) } : {}),
      }
      : policy(await ctx.config());
    const removed = await cleanupSnapshots(o.all ? undefined : ws, p, out);
    out.records(
      removed,
      (rs) =>
        rs.length
          ? rs.map((r) => `Deleted snapshot "${r.snapshot}" of "${r.workspace}".`).join("\n")
          : "No snapshots to delete.",
    );
  });

  outputOptions(
    p.command("disk-usage").description("disk used by the workspace's VM and its snapshots")
      .argument("<workspace>", "workspace name"),
  ).action(async (ws) => {
    const us = [];
    for (const n of await namesOrStdin(ws)) us.push(await diskUsage(n));
    out.records(us, (us) =>
      us.map((u) =>
        [
          ...(us.length > 1 ? [`${u.workspace}:`] : []),
          `VM:        ${u.vm_gb} GB`,
          `Snapshots: ${u.snapshots_gb} GB (${u.snapshots} snapshot${
            u.snapshots === 1 ? "" : "s"
          })`,
          `Total:     ${u.total_gb} GB`,
        ].join("\n")
      ).join("\n\n"));
  });

  outputOptions(
    p.command("schedule").description(
      "run `cal-snap cleanup --all` periodically (launchd on macOS, cron elsewhere)",
    )
      .option("--every <interval>", "how often: 30m, 6h, 1d, 1w", "1d")
      .option("--older-than <age>", "delete snapshots older than this (default: the config policy)")
      .option("--include-manual", "also delete snapshots people named (default: only auto ones)")
      .option("--print", "show what would be installed, change nothing")
      .option("--remove", "remove the scheduled job")
      .option("--scheduler <kind>", "launchd or cron (default: this host's)"),
  ).action(async (o) => {
    if (o.scheduler && o.scheduler !== "launchd" && o.scheduler !== "cron") {
      throw usageError(`Unknown scheduler "${o.scheduler}".`, "Use launchd or cron.");
    }
    if (o.olderThan) parseDuration(o.olderThan);
    const kind = (o.scheduler ?? defaultScheduler()) as Scheduler;
    const log = `${paths.logsDir()}/snapshot-cleanup.log`;
    const cmd = cleanupCommand(o.olderThan, !!o.includeManual);
    let rec: ScheduleRecord;
    if (o.remove) {
      const had = kind === "cron" ? await removeCron() : await removeLaunchd();
      rec = { kind: "schedule", scheduler: kind, entry: "", installed: false };
      out.records(
        [rec],
        () => had ? "Removed the scheduled snapshot cleanup." : "No schedule was installed.",
      );
      return;
    }
    const entry = kind === "cron" ? cronLine(o.every, cmd, log) : plist(o.every, cmd, log);
    if (o.print) {
      rec = { kind: "schedule", scheduler: kind, entry, installed: false };
      out.records([rec], () => entry.trimEnd());
      return;
    }
    await Deno.mkdir(paths.logsDir(), { recursive: true });
    if (kind === "cron") await installCron(entry);
    const where = kind === "cron" ? "your crontab" : await installLaunchd(entry);
    rec = {
      kind: "schedule",
      scheduler: kind,
      entry: kind === "cron" ? entry : plistPath(),
      installed: true,
    };
    out.records(
      [rec],
      () =>
        `Installed in ${where}: snapshot cleanup every ${o.every}. Remove it with ` +
        "`cal-snap schedule --remove`.",
    );
  });

  return p;
}

export async function main(args: string[]): Promise<number> {
  const ctx = newContext(args);
  return await runProgram(program(ctx), args, ctx);
}

if (import.meta.main) await runAsProcess(main);
