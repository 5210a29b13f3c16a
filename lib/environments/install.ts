/**
 * Installing, checking and removing environments inside a guest, step by step.
 *
 * Per environment, in this order: Homebrew formulae, casks, the env file, the post_install
 * lines, the checks, and last the marker `~/.cal-env/<name>.installed` (version, variant,
 * options, time, disk used). A failed step leaves no marker, records why in
 * `~/.cal-env/<name>.failed`, and running the install again resumes: formulae and casks already
 * present are skipped (`brew list --versions`), and post_install lines that succeeded are listed
 * in `~/.cal-env/<name>.progress` and not run twice.
 *
 * Every value cal puts into a guest command goes through `shell.ts`; a manifest's own command
 * lines run as one quoted argument of `/bin/sh -c`, with options as `CAL_OPT_<NAME>` variables
 * and secrets (host variables the manifest names) on stdin.
 */

import { CalError, ExitCode } from "../errors.ts";
import type { Output } from "../output.ts";
import { reason } from "../process.ts";
import { quote, quoteArgs } from "../shell.ts";
import { ENV_DIR, ENV_FILE } from "./envfile.ts";
import { effectiveInstall, effectiveVerify, type Manifest, type Verify } from "./manifest.ts";
import {
  ENV_HOME,
  type GuestShell,
  type Marker,
  markerFile as file,
  writeEnvFile,
  writeGuestFile,
} from "./state.ts";

export interface InstallItem {
  name: string;
  manifest: Manifest;
  variant?: string;
  /** Option values given on the command line (defaults fill the rest). */
  options?: Record<string, string>;
}

export interface InstallContext {
  out: Output;
  /** `update` upgrades what is there and re-runs every post_install line. */
  mode: "install" | "update";
  /** The env file with this environment included. */
  envFile: string;
  /** What an earlier, unfinished install left. */
  progress?: Set<string>;
  /** Host environment, for the manifest's secrets (defaults to this process's). */
  env?: (name: string) => string | undefined;
}

/** The option values an install uses: defaults, then the given ones (checked). */
export function optionValues(
  m: Manifest,
  given: Record<string, string> = {},
): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [k, o] of Object.entries(m.options ?? {})) values[k] = o.default;
  for (const [k, v] of Object.entries(given)) {
    const o = m.options?.[k];
    if (!o) {
      const known = Object.keys(m.options ?? {});
      throw new CalError(`Environment "${m.name}" has no option "${k}".`, {
        code: "usage",
        exit: ExitCode.usage,
        hint: known.length ? `Its options: ${known.join(", ")}.` : "It takes no options.",
      });
    }
    if (o.pattern && !new RegExp(`^(?:${o.pattern})$`).test(v)) {
      throw new CalError(`Option ${k}=${JSON.stringify(v)} of "${m.name}" is not valid.`, {
        code: "usage",
        exit: ExitCode.usage,
        hint: `It must match ${o.pattern}${o.example ? `, e.g. ${o.example}` : ""}.`,
      });
    }
    values[k] = v;
  }
  return values;
}

/** A short, stable digest of a post_install line, to remember it ran. */
export async function digest(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The argv prefix that hands options to a manifest's command lines. */
function envArgs(name: string, variant: string | undefined, options: Record<string, string>) {
  return [
    "env",
    `CAL_ENV=${name}`,
    `CAL_VARIANT=${variant ?? ""}`,
    ...Object.entries(options).map(([k, v]) => `CAL_OPT_${k.toUpperCase()}=${v}`),
  ];
}

/** `export` lines for the secrets the manifest names that are set on the host. */
export function secretsScript(names: string[], env: (n: string) => string | undefined): string {
  return names
    .map((n) => [n, env(n)] as const)
    .filter((e): e is readonly [string, string] => e[1] !== undefined)
    .map(([n, v]) => `export ${n}=${quote(v)}\n`)
    .join("");
}

export class StepFailed extends CalError {
  constructor(
    readonly environment: string,
    readonly step: string,
    readonly reason: string,
    workspace: string,
    mode: "install" | "update",
  ) {
    super(
      `${mode === "update" ? "Updating" : "Installing"} ${environment} stopped at ` +
        `\`${step}\`: ${reason}`,
      {
        code: "failed",
        exit: ExitCode.failed,
        workspace,
        hint: `${environment} is not marked installed and nothing after that step ran. Fix the ` +
          `cause, then run \`cal-env install ${workspace} ${environment}\` again: it resumes ` +
          "where it stopped.",
      },
    );
  }
}

/**
 * Installs (or updates) one environment in the guest. The marker is written last, so a failure
 * anywhere leaves the environment not installed, and a second run picks up where this stopped.
 */
export async function installOne(
  g: GuestShell,
  item: InstallItem,
  ctx: InstallContext,
): Promise<Marker> {
  const { name, manifest: m, variant } = item;
  const ws = g.workspace;
  const out = ctx.out;
  const steps = effectiveInstall(m, variant);
  const options = optionValues(m, item.options);
  const extra = { workspace: ws, environment: name };
  const event = (step: string, message: string) =>
    out.event("environment", message, { ...extra, step });
  const stream = (line: string) => {
    if (line.trim()) out.event("output", line, extra);
  };
  const fail = async (step: string, why: string): Promise<never> => {
    await g.sh(
      `mkdir -p ${ENV_HOME} && printf '%s\\n' ${quote(`${step}: ${why}`)} > ` +
        file(name, ".failed"),
    ).catch(() => undefined);
    throw new StepFailed(name, step, why, ws, ctx.mode);
  };

  // Preflight: the failed marker goes (this is a new attempt); the disk is measured.
  const needsBrew = steps.brew.length + steps.cask.length > 0;
  const pre = await g.sh(
    `rm -f ${file(name, ".failed")}` +
      (ctx.mode === "update" ? ` ${file(name, ".progress")}` : "") +
      `; ${needsBrew ? "command -v brew >/dev/null 2>&1 || { echo NO-BREW; exit 0; }; " : ""}` +
      `df -Pk "$HOME" 2>/dev/null | awk 'NR==2 {print $4}'`,
    { timeoutMs: 60_000 },
  );
  if (pre.stdout.includes("NO-BREW")) {
    await fail(
      "brew",
      "Homebrew is not installed in the guest; environments need a macOS image with Homebrew " +
        "(the cirruslabs macos-*-base images have it).",
    );
  }
  const freeBefore = Number(pre.stdout.trim().split("\n").pop());
  const progress = ctx.mode === "update" ? new Set<string>() : new Set(ctx.progress ?? []);

  const brewEnv = [
    "env",
    "HOMEBREW_NO_AUTO_UPDATE=1",
    "HOMEBREW_NO_INSTALL_CLEANUP=1",
    "NONINTERACTIVE=1",
  ];
  const packages = [
    ...steps.brew.map((p) => ({ p, cask: false })),
    ...steps.cask.map((p) => ({ p, cask: true })),
  ];
  for (const { p, cask } of packages) {
    const kind = cask ? ["--cask"] : [];
    const what = `${cask ? "cask" : "formula"} ${p}`;
    const has = await g.sh(
      quoteArgs(["brew", "list", ...kind, "--versions", p]) + " >/dev/null 2>&1",
      {
        timeoutMs: 120_000,
      },
    );
    let verb: string;
    if (has.code === 0) {
      if (ctx.mode === "install") {
        event("skip", `${name}: ${what} is already installed`);
        continue;
      }
      verb = "upgrade";
    } else verb = "install";
    const argv = ["brew", verb, ...kind, p];
    event(verb, `${name}: brew ${verb}${cask ? " --cask" : ""} ${p}`);
    const r = await g.sh(quoteArgs([...brewEnv, ...argv]) + " 2>&1", { onLine: stream });
    if (r.code !== 0) await fail(argv.join(" "), reason(r));
  }

  event("env", `${name}: writing ~/${ENV_FILE}`);
  await writeEnvFile(g, ctx.envFile);

  const prefix = envArgs(name, variant, options);
  const secrets = secretsScript(steps.secrets, ctx.env ?? ((n) => Deno.env.get(n)));
  const record = (h: string) => quoteArgs(["printf", "%s\\n", h]);
  for (const line of steps.post_install) {
    const h = await digest(line);
    if (progress.has(h)) {
      event("skip", `${name}: already done: ${line}`);
      continue;
    }
    event("run", `${name}: ${line}`);
    const script = steps.secrets.length ? `eval "$(cat)"\n${line}` : line;
    const r = await g.sh(
      `cd "$HOME" && ${quoteArgs([...prefix, "/bin/sh", "-c", script])} 2>&1 && ` +
        `{ ${record(h)} >> ${file(name, ".progress")}; }`,
      { onLine: stream, ...(steps.secrets.length ? { stdin: secrets } : {}) },
    );
    if (r.code !== 0) await fail(line, reason(r));
    progress.add(h);
  }

  const checks = effectiveVerify(m, variant);
  if (checks.length) event("verify", `${name}: checking (${checks.length})`);
  for (const c of await runChecks(g, checks)) {
    if (!c.ok) await fail(c.command, c.output);
  }

  const after = await g.sh(`df -Pk "$HOME" 2>/dev/null | awk 'NR==2 {print $4}'`, {
    timeoutMs: 60_000,
  });
  const freeAfter = Number(after.stdout.trim());
  const marker: Marker = {
    name,
    version: m.version,
    ...(variant ? { variant } : {}),
    ...(Object.keys(options).length ? { options } : {}),
    installed_at: new Date().toISOString(),
    ...(Number.isFinite(freeBefore) && Number.isFinite(freeAfter)
      ? { size_kb: Math.max(0, freeBefore - freeAfter) }
      : {}),
  };
  await writeGuestFile(g, `${ENV_DIR}/${name}.installed`, JSON.stringify(marker) + "\n");
  await g.sh(`rm -f ${file(name, ".progress")} ${file(name, ".failed")}`).catch(() => undefined);
  event("installed", `${name}: installed (${m.version}${variant ? `, ${variant}` : ""})`);
  return marker;
}

export interface CheckResult {
  command: string;
  ok: boolean;
  /** The line that shows the version (or the first line), or why the check failed. */
  output: string;
}

/** Runs checks in the guest, each by `/bin/sh -c`, stdout and stderr together. */
export async function runChecks(g: GuestShell, checks: Verify[]): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const c of checks) {
    const r = await g.sh(`cd "$HOME" && ${quoteArgs(["/bin/sh", "-c", c.command])} 2>&1`, {
      timeoutMs: 120_000,
    });
    const lines = r.stdout.split("\n").map((l) => l.trim()).filter(Boolean);
    const shown = (c.expect_contains
      ? lines.find((l) => l.includes(c.expect_contains!))
      : undefined) ??
      lines[0] ?? "";
    if (r.code !== 0) {
      results.push({
        command: c.command,
        ok: false,
        output: r.timedOut
          ? "timed out"
          : `exit status ${r.code}${lines.length ? `: ${lines.at(-1)}` : ""}`,
      });
    } else if (c.expect_contains && !r.stdout.includes(c.expect_contains)) {
      results.push({
        command: c.command,
        ok: false,
        output: `its output lacks "${c.expect_contains}"${shown ? ` (said: ${shown})` : ""}`,
      });
    } else {
      results.push({ command: c.command, ok: true, output: shown.slice(0, 100) });
    }
  }
  return results;
}

/** What an environment still lacks in the guest: formulae, casks, post_install lines. */
export async function missingParts(
  g: GuestShell,
  m: Manifest,
  variant: string | undefined,
  progress: Set<string> | undefined,
): Promise<string[]> {
  const steps = effectiveInstall(m, variant);
  const missing: string[] = [];
  for (const [list, kind] of [[steps.brew, []], [steps.cask, ["--cask"]]] as const) {
    for (const p of list) {
      const r = await g.sh(
        quoteArgs(["brew", "list", ...kind, "--versions", p]) + " >/dev/null 2>&1",
        {
          timeoutMs: 120_000,
        },
      );
      if (r.code !== 0) missing.push(`${kind.length ? "cask" : "formula"} ${p}`);
    }
  }
  let todo = 0;
  for (const line of steps.post_install) if (!progress?.has(await digest(line))) todo++;
  if (todo) missing.push(`${todo} of ${steps.post_install.length} post_install steps`);
  return missing;
}

/**
 * Removes one environment: its uninstall lines, then the formulae and casks no other installed
 * environment uses, then its markers; the caller rewrites the env file.
 */
export async function removeOne(
  g: GuestShell,
  item: { name: string; manifest: Manifest; variant?: string },
  keep: { brew: Set<string>; cask: Set<string> },
  opts: { out: Output; force?: boolean },
): Promise<void> {
  const { name, manifest: m } = item;
  const extra = { workspace: g.workspace, environment: name };
  const steps = effectiveInstall(m, item.variant);
  for (const line of m.uninstall ?? []) {
    opts.out.event("environment", `${name}: ${line}`, { ...extra, step: "uninstall" });
    const r = await g.sh(`cd "$HOME" && ${quoteArgs(["/bin/sh", "-c", line])} 2>&1`);
    if (r.code !== 0) {
      if (!opts.force) {
        throw new CalError(`Removing ${name} stopped at \`${line}\`: ${reason(r)}`, {
          workspace: g.workspace,
          hint: `${name} is still marked installed. Fix the cause and retry, or pass --force to ` +
            "carry on past failing steps.",
        });
      }
      opts.out.warn(
        `${name}: \`${line}\` failed (${reason(r)}); carrying on (--force).`,
        g.workspace,
      );
    }
  }
  const packages = [
    ...steps.cask.filter((p) => !keep.cask.has(p)).map((p) => ["--cask", p]),
    ...steps.brew.filter((p) => !keep.brew.has(p)).reverse().map((p) => [p]),
  ];
  for (const args of packages) {
    const argv = ["brew", "uninstall", ...args];
    opts.out.event("environment", `${name}: ${argv.join(" ")}`, { ...extra, step: "uninstall" });
    const r = await g.sh(quoteArgs(["env", "HOMEBREW_NO_AUTO_UPDATE=1", ...argv]) + " 2>&1");
    if (r.code !== 0) {
      opts.out.warn(
        `${name}: \`${argv.join(" ")}\` failed (${reason(r)}); left in place.`,
        g.workspace,
      );
    }
  }
  const r = await g.sh(
    `rm -f ${file(name, ".installed")} ${file(name, ".progress")} ${file(name, ".failed")}`,
  );
  if (r.code !== 0) {
    throw new CalError(`Could not remove ${name}'s marker: ${reason(r)}`, {
      workspace: g.workspace,
    });
  }
}

/** Runs a template's post_init lines once (a marker remembers they ran). */
export async function runPostInit(
  g: GuestShell,
  template: { name: string; post_init?: string[] },
  out: Output,
): Promise<void> {
  const lines = template.post_init ?? [];
  if (!lines.length) return;
  const marker = file(`template-${template.name}`, ".done");
  const done = await g.sh(`[ -f ${marker} ]`);
  if (done.code === 0) return;
  for (const line of lines) {
    out.event("post-init", `post_init: ${line}`, { workspace: g.workspace, step: "post_init" });
    const r = await g.sh(`cd "$HOME" && ${quoteArgs(["/bin/sh", "-c", line])} 2>&1`, {
      onLine: (l) => l.trim() && out.event("output", l, { workspace: g.workspace }),
    });
    if (r.code !== 0) {
      throw new CalError(`The template's post_init step \`${line}\` failed: ${reason(r)}`, {
        workspace: g.workspace,
        hint: `Fix it in the template "${template.name}"; it runs again at the next start.`,
      });
    }
  }
  await g.sh(`mkdir -p ${ENV_HOME} && date -u > ${marker}`);
}
