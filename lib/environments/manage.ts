/**
 * Environments in a workspace: list, info, install, remove, verify, update, and the first-start
 * provisioning of what a template or `--env` asked for.
 *
 * The guest's markers (`~/.cal-env/`) are the truth about what is installed. The workspace's
 * `environments:` in vm.yaml is what it asked for (template, `--env`, `cal-env install`), which
 * `start` installs when missing; `environments.yaml` beside it caches the guest's last known
 * state, so `cal-env list` can answer for a stopped workspace.
 */

import { CalError, ExitCode, notFound, usageError, wrongState } from "../errors.ts";
import type { Output } from "../output.ts";
import type { EnvironmentRecord } from "../records.ts";
import { readVm, type VmFile, withLock, writeVm } from "../store.ts";
import { load, type Loaded, withGuest } from "../workspace.ts";
import { readCache, saveCache } from "./cache.ts";
import { renderEnvFile } from "./envfile.ts";
import { type PlanItem, resolve } from "./graph.ts";
import {
  installOne,
  missingParts,
  removeOne,
  runChecks,
  runPostInit,
  StepFailed,
} from "./install.ts";
import { quote } from "../shell.ts";
import { type GuestShell, type GuestState, readGuestState, writeEnvFile } from "./state.ts";
import { effectiveInstall, effectiveVerify, type Manifest, splitDependency } from "./manifest.ts";
import { environmentRecord, unknownRecord } from "./records.ts";
import { loadRegistry, type Registry } from "./registry.ts";
import { loadTemplates } from "./templates.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

const waitMessage = (out: Output, name: string) => () =>
  out.event("waiting", `Waiting for another cal command on "${name}" to finish…`, {
    workspace: name,
  });

/** Installed environments in dependency order (those whose plugin is known). */
function installedInOrder(registry: Registry, state: GuestState): PlanItem[] {
  const names = [...state.installed.keys()].filter((n) => registry.get(n)).sort();
  const set = new Set(names);
  let ordered: string[];
  try {
    ordered = resolve(names, (n) => registry.manifest(n), { selected: names, noOptional: true })
      .map((p) => p.name).filter((n) => set.has(n));
  } catch {
    ordered = names;
  }
  return ordered.map((name) => ({
    name,
    manifest: registry.manifest(name)!,
    requested: true,
    variant: state.installed.get(name)?.variant,
  }));
}

function envFileFor(registry: Registry, state: GuestState, plus?: PlanItem): string {
  const items = installedInOrder(registry, state).filter((i) => i.name !== plus?.name);
  if (plus) items.push(plus);
  return renderEnvFile(items.map((i) => ({ manifest: i.manifest, variant: i.variant })));
}

/** Which of the given names each target defines as an option; unknown keys are errors. */
function optionsFor(
  targets: string[],
  registry: Registry,
  options: Record<string, string>,
): Record<string, Record<string, string>> {
  const per: Record<string, Record<string, string>> = {};
  for (const [k, v] of Object.entries(options)) {
    const owners = targets.filter((t) => registry.manifest(t)?.options?.[k]);
    if (!owners.length) {
      const known = targets.flatMap((t) => Object.keys(registry.manifest(t)?.options ?? {}));
      throw usageError(
        `No environment among ${targets.join(", ")} takes the option "${k}".`,
        known.length ? `Options there: ${[...new Set(known)].join(", ")}.` : "They take none.",
      );
    }
    for (const t of owners) (per[t] ??= {})[k] = v;
  }
  return per;
}

export interface InstallOptions {
  variant?: string;
  /** `key=value` settings of the environments' options. */
  options?: Record<string, string>;
  /** Skip optional dependencies nobody asked for. */
  noOptional?: boolean;
}

/**
 * Installs `targets` (and what they need) in a connected guest; the caller holds the lock.
 * Adds them to the workspace's `environments:` first, so an interrupted install resumes at the
 * next `start` or `cal-env install`.
 */
async function converge(
  g: GuestShell,
  vm: VmFile,
  registry: Registry,
  state: GuestState,
  targets: string[],
  opts: InstallOptions,
  out: Output,
): Promise<{ plan: PlanItem[]; installed: string[] }> {
  const ws = vm.name;
  const plan = resolve(targets, (n) => registry.manifest(n), {
    selected: [...(vm.environments ?? []), ...state.installed.keys()],
    noOptional: opts.noOptional,
    variants: Object.fromEntries(targets.map((t) => [t, opts.variant])),
  });
  const perTarget = optionsFor(targets, registry, opts.options ?? {});
  const wanted = [...(vm.environments ?? [])];
  for (const p of plan) if (!wanted.includes(p.name)) wanted.push(p.name);
  if (wanted.join("\n") !== (vm.environments ?? []).join("\n")) {
    vm.environments = wanted;
    await writeVm(vm);
  }
  const todo = plan.filter((p) => !state.installed.has(p.name));
  for (const p of plan.filter((p) => state.installed.has(p.name) && p.requested)) {
    out.event(
      "environment",
      `${p.name} is already installed (${state.installed.get(p.name)?.version}); ` +
        `\`cal-env update ${ws} ${p.name}\` upgrades it.`,
      { workspace: ws, environment: p.name, step: "skip" },
    );
  }
  const installed: string[] = [];
  let n = 0;
  for (const p of todo) {
    n++;
    const why = p.requiredBy ? ` (required by ${p.requiredBy})` : "";
    out.event(
      "environment",
      `Installing ${p.name} ${p.manifest.version}${why} [${n}/${todo.length}]…`,
      { workspace: ws, environment: p.name, step: "start" },
    );
    try {
      const marker = await installOne(g, { ...p, options: perTarget[p.name] }, {
        out,
        mode: "install",
        envFile: envFileFor(registry, state, p),
        progress: state.progress.get(p.name),
      });
      state.installed.set(p.name, marker);
      state.failed.delete(p.name);
      state.progress.delete(p.name);
      installed.push(p.name);
    } catch (e) {
      if (e instanceof StepFailed) state.failed.set(p.name, `${e.step}: ${e.reason}`);
      await saveCache(ws, state).catch(() => undefined);
      throw e;
    }
    await saveCache(ws, state);
  }
  return { plan, installed };
}

function statusOf(
  name: string,
  state: GuestState,
  wanted: string[],
): EnvironmentRecord["status"] {
  if (state.installed.has(name)) return "installed";
  if (state.failed.has(name)) return "failed";
  if (wanted.includes(name)) return "missing";
  return "available";
}

/** The guest's state, or undefined when the workspace is not running. */
async function stateIfRunning(w: Loaded): Promise<GuestState | undefined> {
  try {
    return await withGuest(w, (g) => readGuestState(g));
  } catch (e) {
    if (e instanceof CalError && (e.exit === ExitCode.wrongState || e.exit === ExitCode.notFound)) {
      return undefined;
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

/** Every environment; with a workspace, its status there. */
export async function listEnvironments(
  ws: string | undefined,
  out: Output,
): Promise<EnvironmentRecord[]> {
  const registry = await loadRegistry();
  const plugins = [...registry.plugins.values()];
  if (!ws) return plugins.map((p) => environmentRecord(p));
  const w = await load(ws);
  let state = await stateIfRunning(w);
  if (state) {
    await saveCache(ws, state);
  } else {
    state = await readCache(ws);
    out.warn(
      `Workspace "${ws}" is not running; showing what cal last saw in it` +
        (state ? "." : " (nothing yet)."),
      ws,
    );
  }
  const s = state ?? { installed: new Map(), failed: new Map(), progress: new Map() };
  const wanted = w.vm.environments ?? [];
  return plugins.map((p) =>
    environmentRecord(p, {
      workspace: ws,
      status: statusOf(p.manifest.name, s, wanted),
      marker: s.installed.get(p.manifest.name),
      detail: s.failed.get(p.manifest.name),
    })
  );
}

export interface EnvironmentInfo {
  record: EnvironmentRecord;
  manifest: Manifest;
  file: string;
}

export async function environmentInfo(name: string): Promise<EnvironmentInfo> {
  const registry = await loadRegistry();
  const p = registry.require(name);
  return { record: environmentRecord(p), manifest: p.manifest, file: p.file };
}

/** Installs environments (and what they need) into a running workspace. */
export async function installEnvironments(
  ws: string,
  targets: string[],
  opts: InstallOptions,
  out: Output,
): Promise<EnvironmentRecord[]> {
  if (!targets.length) throw usageError("Which environments?", "Name one or more.");
  const registry = await loadRegistry();
  for (const t of targets) registry.require(t);
  return await withLock(ws, async () => {
    const w = await load(ws);
    return await withGuest(w, async (g) => {
      const state = await readGuestState(g);
      const { plan, installed } = await converge(g, w.vm, registry, state, targets, opts, out);
      return plan.map((p) =>
        environmentRecord(registry.get(p.name)!, {
          workspace: ws,
          status: "installed",
          marker: state.installed.get(p.name),
          ...(installed.includes(p.name) ? {} : { detail: "already installed" }),
        })
      );
    });
  }, waitMessage(out, ws));
}

/** Removes an environment; refused while an installed environment requires it (unless force). */
export async function removeEnvironment(
  ws: string,
  name: string,
  opts: { force?: boolean },
  out: Output,
): Promise<EnvironmentRecord> {
  const registry = await loadRegistry();
  return await withLock(ws, async () => {
    const w = await load(ws);
    return await withGuest(w, async (g) => {
      const state = await readGuestState(g);
      const wanted = w.vm.environments ?? [];
      const plugin = registry.get(name);
      const dropWanted = async () => {
        if (wanted.includes(name)) {
          w.vm.environments = wanted.filter((n) => n !== name);
          await writeVm(w.vm);
        }
      };
      if (!state.installed.has(name)) {
        if (!wanted.includes(name) && !state.failed.has(name) && !state.progress.has(name)) {
          throw notFound(
            `Environment "${name}" is not installed in "${ws}".`,
            `See what is: \`cal-env list ${ws}\`.`,
            ws,
          );
        }
        // Asked for but never finished: forget it, and what its install left.
        await g.sh(
          `rm -f "$HOME"/.cal-env/${quote(`${name}.failed`)} "$HOME"/.cal-env/${
            quote(`${name}.progress`)
          }`,
        );
        state.failed.delete(name);
        state.progress.delete(name);
        await dropWanted();
        await saveCache(ws, state);
        out.event("environment", `${name} was not installed; it is no longer asked for.`, {
          workspace: ws,
          environment: name,
        });
        return plugin
          ? environmentRecord(plugin, { workspace: ws, status: "available" })
          : { ...unknownRecord(name), workspace: ws };
      }
      if (!plugin) {
        throw notFound(
          `Environment "${name}" is installed in "${ws}" but cal has no plugin for it any more.`,
          "Put its plugin back under ~/.cal/environments/plugins/community/ to remove it.",
          ws,
        );
      }
      const others = installedInOrder(registry, state).filter((i) => i.name !== name);
      const dependents = others.filter((i) =>
        (i.manifest.requires ?? []).map(splitDependency).some((d) => d.name === name && !d.optional)
      );
      if (dependents.length && !opts.force) {
        throw wrongState(
          `Cannot remove ${name}: ${dependents.map((d) => d.name).join(", ")} ` +
            `${dependents.length === 1 ? "requires" : "require"} it.`,
          `Remove ${dependents.map((d) => d.name).join(", ")} first, or pass --force to ` +
            "remove it anyway.",
          ws,
        );
      }
      const users = others.filter((i) =>
        (i.manifest.requires ?? []).map(splitDependency).some((d) => d.name === name)
      );
      for (const u of users.filter((u) => !dependents.includes(u))) {
        out.warn(`${u.name} uses ${name} when it is there; it loses that target.`, ws);
      }
      const keep = { brew: new Set<string>(), cask: new Set<string>() };
      for (const o of others) {
        const s = effectiveInstall(o.manifest, o.variant);
        s.brew.forEach((b) => keep.brew.add(b));
        s.cask.forEach((c) => keep.cask.add(c));
      }
      const marker = state.installed.get(name)!;
      await removeOne(g, { name, manifest: plugin.manifest, variant: marker.variant }, keep, {
        out,
        force: opts.force,
      });
      state.installed.delete(name);
      state.failed.delete(name);
      state.progress.delete(name);
      await writeEnvFile(g, envFileFor(registry, state));
      await dropWanted();
      await saveCache(ws, state);
      out.event("environment", `${name}: removed`, { workspace: ws, environment: name });
      return environmentRecord(plugin, { workspace: ws, status: "available" });
    });
  }, waitMessage(out, ws));
}

/** Runs each environment's checks; one record per environment, with the checks. */
export async function verifyEnvironments(
  ws: string,
  names: string[],
  _out: Output,
): Promise<EnvironmentRecord[]> {
  const registry = await loadRegistry();
  for (const n of names) registry.require(n);
  const w = await load(ws);
  return await withGuest(w, async (g) => {
    const state = await readGuestState(g);
    await saveCache(ws, state);
    const wanted = w.vm.environments ?? [];
    let targets = names.length
      ? names
      : [...new Set([...wanted, ...state.installed.keys(), ...state.failed.keys()])];
    // Dependency order reads best (java before android).
    const order = resolveOrderSafe(registry, targets);
    targets = [
      ...order.filter((n) => targets.includes(n)),
      ...targets.filter((n) => !order.includes(n)),
    ];
    const records: EnvironmentRecord[] = [];
    for (const name of targets) {
      const plugin = registry.get(name);
      if (!plugin) continue;
      const marker = state.installed.get(name);
      if (marker) {
        const checks = await runChecks(g, effectiveVerify(plugin.manifest, marker.variant));
        const failed = checks.filter((c) => !c.ok);
        records.push({
          ...environmentRecord(plugin, {
            workspace: ws,
            status: failed.length ? "failed" : "installed",
            marker,
            ...(failed.length
              ? { detail: failed.map((c) => `\`${c.command}\`: ${c.output}`).join("; ") }
              : {}),
          }),
          checks,
        });
        continue;
      }
      const lacks = await missingParts(g, plugin.manifest, undefined, state.progress.get(name));
      const reason = state.failed.get(name);
      records.push({
        ...environmentRecord(plugin, {
          workspace: ws,
          status: reason ? "failed" : "missing",
          detail: [
            reason ? `install stopped: ${reason}` : "not installed",
            lacks.length ? `lacks ${lacks.join(", ")}` : "",
          ].filter(Boolean).join("; "),
        }),
        checks: [],
      });
    }
    return records;
  });
}

function resolveOrderSafe(registry: Registry, names: string[]): string[] {
  try {
    return resolve(names.filter((n) => registry.get(n)), (n) => registry.manifest(n), {
      selected: names,
      noOptional: true,
    }).map((p) => p.name);
  } catch {
    return names;
  }
}

/** Upgrades installed environments (all of them when none is named). */
export async function updateEnvironments(
  ws: string,
  names: string[],
  out: Output,
): Promise<EnvironmentRecord[]> {
  const registry = await loadRegistry();
  for (const n of names) registry.require(n);
  return await withLock(ws, async () => {
    const w = await load(ws);
    return await withGuest(w, async (g) => {
      const state = await readGuestState(g);
      for (const n of names) {
        if (!state.installed.has(n)) {
          throw wrongState(
            `Environment "${n}" is not installed in "${ws}".`,
            `Install it: \`cal-env install ${ws} ${n}\`.`,
            ws,
          );
        }
      }
      const items = installedInOrder(registry, state)
        .filter((i) => !names.length || names.includes(i.name));
      const records: EnvironmentRecord[] = [];
      for (const item of items) {
        const old = state.installed.get(item.name)!;
        out.event(
          "environment",
          `Updating ${item.name} ${old.version} → ${item.manifest.version}…`,
          { workspace: ws, environment: item.name, step: "start" },
        );
        const marker = await installOne(g, { ...item, options: old.options }, {
          out,
          mode: "update",
          envFile: envFileFor(registry, state, item),
        });
        state.installed.set(item.name, marker);
        await saveCache(ws, state);
        records.push(
          environmentRecord(registry.get(item.name)!, {
            workspace: ws,
            status: "installed",
            marker,
          }),
        );
      }
      return records;
    });
  }, waitMessage(out, ws));
}

// ---------------------------------------------------------------------------------------------
// First start

/**
 * Called by `start` once the guest answers (the caller holds the workspace's lock): installs the
 * environments the workspace asked for that are not there yet, then the template's post_init
 * (once). Does nothing, and opens no connection, when there is nothing to do.
 */
export async function provisionEnvironments(w: Loaded, out: Output): Promise<void> {
  const wanted = w.vm.environments ?? [];
  const template = w.vm.template ? (await loadTemplates()).get(w.vm.template)?.template : undefined;
  if (w.vm.template && !template) {
    out.warn(
      `The workspace's template "${w.vm.template}" no longer exists; skipping it.`,
      w.vm.name,
    );
  }
  if (!wanted.length && !template?.post_init?.length) return;
  const registry = await loadRegistry();
  await withGuest(w, async (g) => {
    if (wanted.length) {
      const state = await readGuestState(g);
      const missing = wanted.filter((n) => !state.installed.has(n));
      if (missing.length) {
        out.event(
          "environment",
          `Installing environments into "${w.vm.name}": ${missing.join(", ")}`,
          { workspace: w.vm.name, step: "provision" },
        );
        // Reread vm.yaml: converge() may record more environments in it.
        const vm = await readVm(w.vm.name);
        await converge(g, vm, registry, state, missing, {}, out);
        w.vm.environments = vm.environments;
      }
    }
    if (template) await runPostInit(g, template, out);
  });
}
