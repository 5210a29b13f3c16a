/**
 * cal-sync: build artifacts from the VM to the host, hooks, logs, host-side signing. Thin:
 * parses arguments, calls lib/sync/, emits records.
 *
 *   cal-sync sync WS|- [--watch [--interval S]] [--dry-run]
 *   cal-sync watch WS [--on-archive CMD] [--on-ipa CMD] [--on-apk CMD] [--on-any CMD]
 *   cal-sync logs WS [--follow] [--tail N]
 *   cal-sync sign WS --archive A --identity I --profile P [--output O] [--dry-run]
 */

import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { relative } from "node:path";
import pc from "picocolors";
import {
  type Context,
  namesOrStdin,
  newContext,
  outputOptions,
  rootProgram,
  runAsProcess,
  runProgram,
} from "../lib/cli.ts";
import { table } from "../lib/output.ts";
import { forTerminal, safeText } from "../lib/terminal.ts";
import type { ArtifactRecord, HookRecord, LogRecord, SignPlanRecord } from "../lib/records.ts";
import { quoteArgs } from "../lib/shell.ts";
import { usageError } from "../lib/errors.ts";
import { load } from "../lib/workspace.ts";
import { validateName } from "../lib/names.ts";
import { logFiles, showLogs } from "../lib/sync/logs.ts";
import { human, outputDir, syncLoop, syncWorkspace } from "../lib/sync/pull.ts";
import { type Method, METHODS } from "../lib/sync/profile.ts";
import { executeSigning, planSigning } from "../lib/sync/sign.ts";
import { type HookName, watch } from "../lib/sync/watch.ts";

function wholeNumber(what: string, min = 0) {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min) {
      throw new InvalidArgumentError(`${what} must be a whole number${min ? ` ≥ ${min}` : ""}.`);
    }
    return n;
  };
}

/** An AbortSignal that fires on Ctrl-C or SIGTERM (the normal end of a watch). */
function untilInterrupted(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const stop = () => ac.abort();
  const sigs: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of sigs) Deno.addSignalListener(s, stop);
  return {
    signal: ac.signal,
    dispose: () => {
      for (const s of sigs) Deno.removeSignalListener(s, stop);
    },
  };
}

function artifactTable(rs: ArtifactRecord[], base: string): string {
  return table(
    ["path", "size", "from"],
    rs.map((r) => [
      safeText(relative(base, r.path) || r.path),
      human(r.bytes),
      safeText(r.source ?? ""),
    ]),
  );
}

function syncSummary(rs: ArtifactRecord[], base: string, dryRun: boolean): string {
  const fresh = rs.filter((r) => r.new);
  const old = rs.length - fresh.length;
  const lines: string[] = [];
  if (!fresh.length) {
    lines.push(
      rs.length
        ? `Nothing new: ${old} artifact${old === 1 ? "" : "s"} already in ${base}.`
        : "No build artifacts found in the workspace.",
    );
    return lines.join("\n");
  }
  const bytes = fresh.reduce((n, r) => n + r.bytes, 0);
  lines.push(
    `${dryRun ? "Would copy" : "Copied"} ${fresh.length} artifact${
      fresh.length === 1 ? "" : "s"
    } ` +
      `(${human(bytes)}) to ${base}:`,
    artifactTable(fresh, base),
  );
  if (old) lines.push(`${old} already synced.`);
  return lines.join("\n");
}

function planText(p: SignPlanRecord, warnings: string[]): string {
  return [
    `Archive:   ${p.archive} (${p.bundle_id})`,
    `Identity:  ${p.identity}${p.identity_checked ? "" : " (not checked on this host)"}`,
    ...p.profiles.map((x) => `Profile:   ${x.name} (${x.uuid}) for ${x.bundle_id}`),
    `Method:    ${p.method}   Team: ${p.team_id}`,
    `Output:    ${p.output}`,
    ...(p.install_profiles ?? []).map((to) => `Install:   ${to}`),
    ...warnings.map((w) => `Note:      ${w}`),
    "",
    `${p.export_options_path}:`,
    p.export_options.trimEnd(),
    "",
    "Command:",
    quoteArgs(p.command),
  ].join("\n");
}

export function program(ctx: Context): Command {
  const out = ctx.out;
  const p = rootProgram(
    "cal-sync",
    "Build artifacts: pull them from the VM, run hooks on new ones, show logs, sign on the host.",
  );

  outputOptions(
    p.command("sync").description(
      "copy build artifacts from the VM to the host (one way; only new or changed ones)",
    )
      .argument("<workspace>", "workspace name, or - for records on stdin")
      .option("--watch", "keep syncing until Ctrl-C")
      .option(
        "--interval <seconds>",
        "seconds between syncs with --watch",
        wholeNumber("--interval", 1),
        10,
      )
      .option("--dry-run", "show what would be copied; copy nothing"),
  ).action(async (ws, o) => {
    const names = await namesOrStdin(ws);
    const config = await ctx.config();
    if (o.watch) {
      if (names.length !== 1) {
        throw usageError("--watch syncs one workspace.", "Name one workspace.");
      }
      const base = outputDir(await load(names[0]), config);
      const { signal, dispose } = untilInterrupted();
      try {
        out.event("watch", `Syncing "${names[0]}" every ${o.interval} s (Ctrl-C stops).`, {
          workspace: names[0],
        });
        await syncLoop(names[0], o.interval, out, (rs, first) => {
          if (out.json) { for (const r of rs) out.record(r); }
          else if (first || rs.length) out.text(syncSummary(rs, base, false));
        }, signal);
      } finally {
        dispose();
      }
      return;
    }
    for (const n of names) {
      const base = outputDir(await load(n), config);
      const rs = await syncWorkspace(n, { dryRun: !!o.dryRun }, out, config);
      out.records(rs, (rs) => syncSummary(rs, base, !!o.dryRun));
    }
  });

  outputOptions(
    p.command("watch").description(
      "watch the output folder: run hooks once per finished artifact, stream build logs",
    )
      .argument("<workspace>", "workspace name")
      .option("--on-archive <command>", "run for each new .xcarchive; {} is its path")
      .option("--on-ipa <command>", "run for each new .ipa; {} is its path")
      .option("--on-apk <command>", "run for each new .apk or .aab; {} is its path")
      .option("--on-any <command>", "run for every new artifact; {} is its path")
      .option(
        "--debounce <ms>",
        "how long an artifact must stay unchanged to count as finished",
        wholeNumber("--debounce", 50),
        2000,
      )
      .option("--no-logs", "do not stream build logs"),
  ).action(async (ws, o) => {
    validateName(ws);
    const config = await ctx.config();
    const dir = outputDir(await load(ws), config);
    const hooks: Partial<Record<HookName, string>> = {
      ...(o.onArchive ? { "on-archive": o.onArchive } : {}),
      ...(o.onIpa ? { "on-ipa": o.onIpa } : {}),
      ...(o.onApk ? { "on-apk": o.onApk } : {}),
      ...(o.onAny ? { "on-any": o.onAny } : {}),
    };
    const { signal, dispose } = untilInterrupted();
    // A hook is the user's program, but it prints names the guest chose (`echo {}`): what it
    // writes reaches the terminal with control characters escaped, like everything else.
    const filtered = (to: typeof Deno.stdout) => {
      const dec = new TextDecoder();
      const enc = new TextEncoder();
      return (chunk: Uint8Array) => {
        const b = enc.encode(forTerminal(dec.decode(chunk, { stream: true })));
        try {
          let o = 0;
          while (o < b.length) o += to.writeSync(b.subarray(o));
        } catch { /* closed */ }
      };
    };
    out.event("watch", `Watching ${dir} (Ctrl-C stops).`, { workspace: ws, dir });
    try {
      await watch({
        workspace: ws,
        dir,
        patterns: config.output.watch_patterns,
        hooks,
        debounceMs: o.debounce,
        logs: o.logs,
        signal,
        hookStdout: filtered(out.json ? Deno.stderr : Deno.stdout),
        hookStderr: filtered(Deno.stderr),
        onArtifact: (r) => {
          if (out.json) out.record(r);
          else {
            out.text(`${pc.green("✓")} ${safeText(relative(dir, r.path))} (${human(r.bytes)})`);
          }
        },
        onHook: (r: HookRecord) => {
          if (out.json) out.record(r);
          if (r.exit !== 0) {
            out.warn(
              `--${r.hook} failed with exit ${r.exit} for ${
                safeText(JSON.stringify(r.path))
              }; still watching.`,
              ws,
            );
          } else if (!out.json) {
            out.event("hook", `--${r.hook} done (${r.duration_s} s).`);
          }
        },
        onLog: (file, line) => {
          if (out.json) out.event("log", line, { workspace: ws, file });
          else out.text(`${pc.dim(safeText(file) + " │")} ${line}`);
        },
      });
    } finally {
      dispose();
    }
  });

  outputOptions(
    p.command("logs").description("show build logs (output folder) and the VM's own log")
      .argument("<workspace>", "workspace name")
      .option("-f, --follow", "keep printing new lines until Ctrl-C")
      .option("-n, --tail <lines>", "only the last N lines of each log", wholeNumber("--tail")),
  ).action(async (ws, o) => {
    validateName(ws);
    const dir = outputDir(await load(ws), await ctx.config());
    const { signal, dispose } = untilInterrupted();
    let current = "";
    const several = (await logFiles(ws, dir)).length > 1 || !!o.follow;
    try {
      await showLogs({
        tail: o.tail,
        follow: !!o.follow,
        signal,
        list: () => logFiles(ws, dir),
        onLine: (f, line) => {
          if (out.json) {
            const r: LogRecord = { kind: "log", workspace: ws, file: f.path, line };
            out.record(r);
            return;
          }
          if (several && f.label !== current) {
            out.text(`${current ? "\n" : ""}==> ${safeText(f.label)} <==`);
            current = f.label;
          }
          out.text(line);
        },
      });
    } finally {
      dispose();
    }
    if (!o.follow && !current && !out.json && !(await logFiles(ws, dir)).length) {
      out.event("logs", `No logs yet in ${dir}.`, { workspace: ws });
    }
  });

  outputOptions(
    p.command("sign").description(
      "sign an archive on the host with xcodebuild -exportArchive (never touches the VM)",
    )
      .argument("<workspace>", "workspace name (for the default output folder)")
      .requiredOption("--archive <path>", "the .xcarchive to sign")
      .requiredOption(
        "--identity <name>",
        'signing identity, e.g. "Apple Development: you@example.com", or its SHA-1',
      )
      .requiredOption(
        "--profile <file>",
        "provisioning profile (.mobileprovision); repeat for app extensions",
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option(
        "--output <path>",
        "where the .ipa goes (default: <output folder>/builds/<archive>.ipa)",
      )
      .addOption(
        new Option("--method <method>", "export method (default: from the profile)").choices(
          METHODS,
        ),
      )
      .option("--dry-run", "check everything and print the command and ExportOptions.plist"),
  ).action(async (ws, o) => {
    validateName(ws);
    const steps = await planSigning({
      workspace: ws,
      archive: o.archive,
      identity: o.identity,
      profiles: o.profile,
      output: o.output,
      method: o.method as Method | undefined,
      dryRun: !!o.dryRun,
    }, await ctx.config());
    if (o.dryRun) {
      if (out.json) {
        for (const w of steps.warnings) out.warn(w, ws);
        out.record(steps.plan);
      } else out.text(planText(steps.plan, steps.warnings));
      return;
    }
    for (const w of steps.warnings) out.warn(w, ws);
    out.event("sign", `Signing ${steps.plan.archive} (${steps.plan.method})…`, { workspace: ws });
    const r = await executeSigning(
      steps,
      (line) => out.event("xcodebuild", line, { workspace: ws }),
    );
    out.records([r], ([r]) => `Signed: ${r.path} (${human(r.bytes)})`);
  });

  return p;
}

export async function main(args: string[]): Promise<number> {
  const ctx = newContext(args);
  return await runProgram(program(ctx), args, ctx);
}

if (import.meta.main) await runAsProcess(main);
