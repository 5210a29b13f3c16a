/**
 * cal-env: development environments in workspaces, and VM templates. Thin: parses arguments,
 * calls lib/environments, emits records.
 *
 *   cal-env list [WS]          cal-env info ENV            cal-env templates
 *   cal-env install WS ENV... [--variant V] [--option K=V]... [--no-optional]
 *   cal-env remove WS ENV [--force]     cal-env verify WS [ENV...]     cal-env update WS [ENV...]
 */

import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import pc from "picocolors";
import {
  type Context,
  newContext,
  outputOptions,
  rootProgram,
  runAsProcess,
  runProgram,
} from "../lib/cli.ts";
import { ENV_NAME } from "../lib/environments/manifest.ts";
import {
  environmentInfo,
  installEnvironments,
  listEnvironments,
  removeEnvironment,
  updateEnvironments,
  verifyEnvironments,
} from "../lib/environments/manage.ts";
import { estimate, listTemplates } from "../lib/environments/records.ts";
import { table } from "../lib/output.ts";
import type { EnvironmentRecord, TemplateRecord } from "../lib/records.ts";

function envName(v: string): string {
  if (!ENV_NAME.test(v)) {
    throw new InvalidArgumentError(`"${v}" is not an environment name (like android, python-ml).`);
  }
  return v;
}

/** Parses each word of a variadic environment argument. */
const variadic = (v: string, prev: string[] = []) => [...prev, envName(v)];

function option(v: string, prev: Record<string, string> = {}): Record<string, string> {
  const m = v.match(/^([a-z][a-z0-9_]*)=(.*)$/s);
  if (!m) throw new InvalidArgumentError(`--option takes KEY=VALUE (like api_level=34).`);
  return { ...prev, [m[1]]: m[2] };
}

const statusColor = (s: EnvironmentRecord["status"]) =>
  s === "installed" ? pc.green(s) : s === "failed" ? pc.red(s) : s === "missing" ? pc.yellow(s) : s;

export function environmentTable(rs: EnvironmentRecord[]): string {
  const problems = rs.filter((r) => r.detail && r.status !== "installed");
  return table(
    ["environment", "status", "size", "description", "source"],
    rs.map((r) => [
      r.environment,
      statusColor(r.status),
      r.size,
      r.display_name +
      (r.requires.length ? ` (requires: ${r.requires.join(", ")})` : ""),
      r.source,
    ]),
  ) + problems.map((r) => `\n${r.environment}: ${r.detail}`).join("");
}

export function verifyText(rs: EnvironmentRecord[]): string {
  if (!rs.length) return "No environments installed or asked for.";
  return rs.map((r) => {
    const ok = r.status === "installed";
    const mark = ok ? pc.green("✓") : pc.red("✗");
    if (!ok) return `${mark} ${r.environment}: ${r.detail ?? r.status}`;
    const versions = (r.checks ?? []).map((c) => c.output).filter(Boolean);
    return `${mark} ${r.environment}: ${
      versions.length ? versions.join(", ") : `installed ${r.version}`
    }`;
  }).join("\n");
}

function infoText(
  r: EnvironmentRecord,
  m: Awaited<ReturnType<typeof environmentInfo>>["manifest"],
  file: string,
) {
  const lines = [
    pc.bold(r.display_name),
    ...(m.description ? [m.description] : []),
    `Provides: ${r.provides.join(", ") || "-"}`,
    `Requires: ${r.requires.join(", ") || "-"}`,
    ...(r.recommends.length ? [`Recommends: ${r.recommends.join(", ")}`] : []),
    `Size: ${estimate(m.size_estimate)}`,
    `Version: ${r.version} (${r.source}: ${file})`,
  ];
  const steps = m.install ?? {};
  if (steps.brew?.length) lines.push(`Homebrew formulae: ${steps.brew.join(", ")}`);
  if (steps.cask?.length) lines.push(`Homebrew casks: ${steps.cask.join(", ")}`);
  for (const [k, o] of Object.entries(m.options ?? {})) {
    lines.push(`Option ${k}: ${o.description} (default ${o.default})`);
  }
  for (const [k, v] of Object.entries(m.variants ?? {})) {
    lines.push(`Variant ${k}: ${v.description}`);
  }
  if (m.artifacts?.patterns.length) lines.push(`Artifacts: ${m.artifacts.patterns.join(", ")}`);
  if (m.notes) lines.push("", m.notes.trim());
  return lines.join("\n");
}

export function templateTable(rs: TemplateRecord[]): string {
  return table(
    ["template", "environments", "resources", "description"],
    rs.map((t) => [
      t.template,
      t.environments.join(", ") || "(none)",
      t.resources
        ? [
          t.resources.cpu ? `${t.resources.cpu} CPU` : "",
          t.resources.memory ? `${t.resources.memory} MB` : "",
          t.resources.disk_size ? `${t.resources.disk_size} GB` : "",
        ].filter(Boolean).join(", ")
        : "-",
      t.description + (t.source === "user" ? " (yours)" : ""),
    ]),
  );
}

export function program(ctx: Context): Command {
  const out = ctx.out;
  const p = rootProgram(
    "cal-env",
    "Development environments (iOS, Android, Node, ...) in workspaces, and VM templates.",
  );

  outputOptions(
    p.command("list").alias("ls").description(
      "list environments; with a workspace, their status in it",
    ).argument("[workspace]", "workspace name"),
  ).action(async (ws) => {
    out.records(await listEnvironments(ws, out), environmentTable);
  });

  outputOptions(
    p.command("info").description("what an environment provides, requires and takes")
      .argument("<environment>", "environment name", envName),
  ).action(async (name) => {
    const { record, manifest, file } = await environmentInfo(name);
    out.records([record], ([r]) => infoText(r, manifest, file));
  });

  outputOptions(
    p.command("install").description(
      "install environments into a running workspace (what they require comes first)",
    )
      .argument("<workspace>", "workspace name")
      .argument("<environments...>", "environment names", variadic)
      .option("--variant <name>", "a variant of the named environments (python --variant ml)")
      .option("--option <key=value>", "an option of the named environments (repeatable)", option)
      .option("--no-optional", "skip optional dependencies nobody asked for"),
  ).action(async (ws, envs, o) => {
    const rs = await installEnvironments(ws, envs, {
      ...(o.variant ? { variant: o.variant } : {}),
      ...(o.option ? { options: o.option } : {}),
      noOptional: o.optional === false,
    }, out);
    out.records(
      rs,
      (rs) =>
        rs.map((r) =>
          r.detail === "already installed"
            ? `${r.environment} was already installed (${r.version}).`
            : `Installed ${r.environment} ${r.version}${r.variant ? ` (${r.variant})` : ""}.`
        ).join("\n"),
    );
  });

  outputOptions(
    p.command("remove").alias("rm").description(
      "remove an environment (refused while an installed one requires it)",
    )
      .argument("<workspace>", "workspace name")
      .argument("<environment>", "environment name", envName)
      .option("--force", "remove it even when others require it or an uninstall step fails"),
  ).action(async (ws, name, o) => {
    const r = await removeEnvironment(ws, name, { force: o.force }, out);
    out.records([r], ([r]) => `Removed ${r.environment} from "${ws}".`);
  });

  outputOptions(
    p.command("verify").description("run each environment's checks: one line per environment")
      .argument("<workspace>", "workspace name")
      .argument("[environments...]", "only these (default: installed and asked for)", variadic),
  ).action(async (ws, envs = []) => {
    const rs = await verifyEnvironments(ws, envs, out);
    out.records(rs, verifyText);
    if (rs.some((r) => r.status !== "installed")) ctx.exitCode = 1;
  });

  outputOptions(
    p.command("update").description(
      "upgrade installed environments: their formulae and casks, post_install, checks",
    )
      .argument("<workspace>", "workspace name")
      .argument("[environments...]", "only these (default: all installed)", variadic),
  ).action(async (ws, envs = []) => {
    const rs = await updateEnvironments(ws, envs, out);
    out.records(
      rs,
      (rs) =>
        rs.length
          ? rs.map((r) => `Updated ${r.environment} (${r.version}).`).join("\n")
          : "No environments installed.",
    );
  });

  outputOptions(
    p.command("templates").description(
      "list VM templates (use one with `cal-vm init NAME --template T`)",
    ),
  ).action(async () => {
    out.records(await listTemplates(), templateTable);
  });

  return p;
}

export async function main(args: string[]): Promise<number> {
  const ctx = newContext(args);
  return await runProgram(program(ctx), args, ctx);
}

if (import.meta.main) await runAsProcess(main);
