/**
 * `cal-vm net`: a workspace's egress policy and its decision log. Thin: the logic is in
 * lib/network/manage.ts.
 *
 *   cal-vm net WS                         the mode and the rules in force
 *   cal-vm net allow|deny WS PATTERN...   add rules of the workspace's own (deny wins)
 *   cal-vm net mode WS allowlist|open|none
 *   cal-vm net log WS [--follow]          every allowed and refused connection
 */

import { Argument, Command } from "@commander-js/extra-typings";
import pc from "picocolors";
import { type Context, namesOrStdin, outputOptions } from "../lib/cli.ts";
import { table } from "../lib/output.ts";
import type { ConnectionRecord, NetworkRecord } from "../lib/records.ts";
import { safeText } from "../lib/terminal.ts";
import {
  allow,
  configDenies,
  deny,
  follow,
  logRecords,
  setMode,
  show,
} from "../lib/network/manage.ts";
import { MODES, type NetworkMode } from "../lib/network/policy.ts";
import { onInterrupt } from "../lib/interrupt.ts";
import { load } from "../lib/workspace.ts";

async function isRunning(name: string): Promise<boolean> {
  const w = await load(name);
  return (await w.provider.get(w.machine))?.state === "running";
}

const PATTERNS =
  "host (example.com), wildcard (*.example.com), IP or CIDR, each with an optional :port, or @preset";

export function networkText(r: NetworkRecord): string {
  const mode = r.mode === "allowlist"
    ? r.mode
    : r.mode === "open"
    ? pc.yellow("open (the host's network, unfiltered)")
    : pc.red("none (no network)");
  const group = (rules: NetworkRecord["allow"]) => {
    if (!rules.length) return "  (none)";
    const by = new Map<string, string[]>();
    for (const { pattern, source } of rules) by.set(source, [...(by.get(source) ?? []), pattern]);
    return [...by].map(([source, ps]) => `  ${pc.dim(source + ":")} ${ps.join(", ")}`).join("\n");
  };
  return [
    `Network of "${r.workspace}": ${mode} (from ${r.mode_from})`,
    `Proxy: ${r.proxy_running ? "running" : "not running"}`,
    "Allow:",
    group(r.allow),
    "Deny (wins):",
    group(r.deny),
  ].join("\n");
}

function connectionsTable(rs: ConnectionRecord[]): string {
  if (!rs.length) return "No connections logged yet.";
  return table(
    ["time", "decision", "host", "port", "rule", "reason"],
    rs.map((r) => connectionRow(r)),
  );
}

function connectionRow(r: ConnectionRecord): string[] {
  return [
    r.time.replace("T", " ").replace(/\.\d+Z$/, "Z"),
    r.decision === "allowed" ? pc.green(r.decision) : pc.red(r.decision),
    safeText(r.host), // asked for by the guest
    String(r.port),
    r.rule + (r.source ? pc.dim(` (${r.source})`) : ""),
    r.reason ?? "",
  ];
}

export function netCommand(ctx: Context): Command {
  const out = ctx.out;
  const net = new Command("net").description(
    "show and change a workspace's network policy; read its log of connections",
  );

  outputOptions(
    net.command("show", { isDefault: true }).description("the mode and the rules in force")
      .argument("<name>", "workspace name, or - for records on stdin"),
  ).action(async (name) => {
    for (const n of await namesOrStdin(name)) out.records([await show(n)], ([r]) => networkText(r));
  });

  for (const verb of ["allow", "deny"] as const) {
    outputOptions(
      net.command(verb).description(
        verb === "allow"
          ? "let the workspace reach these hosts (no restart needed)"
          : "refuse these hosts, whatever allows them",
      )
        .argument("<name>", "workspace name")
        .argument("<patterns...>", PATTERNS),
    ).action(async (name, patterns) => {
      const r = await (verb === "allow" ? allow : deny)(name, patterns);
      if (verb === "allow") {
        for (const p of await configDenies(patterns)) {
          out.warn(
            `${p} is also denied in the config (isolation.network.deny), and deny wins.`,
            name,
          );
        }
      }
      out.records([r], ([r]) => networkText(r));
    });
  }

  outputOptions(
    net.command("mode").description(
      "allowlist (only the rules), open (the host's network, unfiltered) or none",
    )
      .argument("<name>", "workspace name")
      .addArgument(new Argument("<mode>", "the new mode").choices(MODES)),
  ).action(async (name, mode) => {
    const before = await show(name);
    const r = await setMode(name, mode as NetworkMode);
    if (r.mode === "open") {
      out.warn(
        `"${name}" will have the host's network as it is: nothing filtered, nothing logged.`,
        name,
      );
    }
    // Between the proxy (allowlist, none) and the host's network (open), the guest's network
    // itself changes: that takes a restart. Between allowlist and none the proxy follows at once.
    if ((before.mode === "open") !== (r.mode === "open") && await isRunning(name)) {
      out.warn(
        `"${name}" is running: the change to ${r.mode} takes effect at its next start ` +
          `(\`cal-vm stop ${name} && cal-vm start ${name}\`).`,
        name,
      );
    }
    out.records([r], ([r]) => networkText(r));
  });

  outputOptions(
    net.command("log").description("every connection the proxy allowed or refused")
      .argument("<name>", "workspace name")
      .option("-f, --follow", "keep printing new connections until interrupted"),
  ).action(async (name, o) => {
    const past = await logRecords(name);
    if (!o.follow) {
      out.records(past, connectionsTable);
      return;
    }
    const print = (r: ConnectionRecord) =>
      out.records([r], ([r]) => connectionRow(r).filter(Boolean).join("  "));
    for (const r of past) print(r);
    const stop = new AbortController();
    const undo = onInterrupt(() => stop.abort());
    try {
      await follow(name, print, stop.signal);
    } finally {
      undo();
    }
  });

  return net;
}
