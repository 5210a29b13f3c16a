/**
 * Workspace lifecycle: init, start (with the readiness probe), stop, destroy, cleanup.
 *
 * Each verb holds the workspace's lock while it changes anything, checks state before it acts
 * (exit 4, nothing changed, when the state is wrong), and leaves nothing half-made: init marks
 * its workspace `creating` until it has finished and removes it on failure or interrupt.
 */

import { networkForStart, networkStopped } from "./network/attach.ts";
import { networkReady } from "./network/guest_env.ts";
import { initPolicy } from "./network/manage.ts";
import type { NetworkMode } from "./network/policy.ts";
import { checkEntries } from "./network/settings.ts";
import { basename, join } from "node:path";
import { type Config, resolveVmSettings, type VmSettings } from "./config.ts";
import { CalError, ExitCode, notFound, usageError, wrongState } from "./errors.ts";
import { Guest } from "./guest/ssh.ts";
import { onInterrupt } from "./interrupt.ts";
import { validateName } from "./names.ts";
import type { Output } from "./output.ts";
import { paths } from "./paths.ts";
import type { StartResult } from "./provider.ts";
import { getProvider } from "./providers/registry.ts";
import {
  exists,
  killPoint,
  removeVmDir,
  syncRoot,
  type VmFile,
  withLock,
  writeVm,
} from "./store.ts";
import { load, type Loaded, machineName, toRecord, unfinished } from "./workspace.ts";
import type { WorkspaceRecord } from "./records.ts";
import { provisionEnvironments } from "./environments/manage.ts";

export interface InitOptions {
  settings: Partial<VmSettings>;
  /** The workspace's egress mode (network.json); the config's or allowlist otherwise. */
  network?: NetworkMode;
  /** Rules the workspace allows besides the presets and the config's. */
  allow?: string[];
  template?: { name: string; resources?: Partial<VmSettings> };
  environments?: string[];
  agent?: string;
}

const waitMessage = (out: Output, name: string) => () =>
  out.event("waiting", `Waiting for another cal command on "${name}" to finish…`, {
    workspace: name,
  });

export async function init(
  name: string,
  config: Config,
  opts: InitOptions,
  out: Output,
): Promise<WorkspaceRecord> {
  validateName(name);
  const s = resolveVmSettings(config, opts.template?.resources, opts.settings);
  const provider = getProvider(s.provider);
  await provider.ensureAvailable();
  checkEntries(opts.allow ?? []); // a bad rule: exit 2 before anything is made
  // A sandbox is made from the host's own system folders; a Tart image name means nothing there.
  const image = provider.name === "sandbox" && !opts.settings.base_image
    ? "host-system"
    : s.base_image;
  const machine = machineName(name);

  return await withLock(name, async () => {
    // Under the lock, whatever an earlier command left here has no cal working on it any more.
    await finishLeftovers(name, out);
    // `tart clone` overwrites silently: never clobber a machine cal did not create here.
    if (await provider.get(machine)) {
      throw wrongState(
        `A ${provider.name} machine named "${machine}" already exists, and no workspace owns it.`,
        `Delete it (\`cal-vm cleanup\` removes machines left by cal) or pick another name.`,
        name,
      );
    }
    // A copy of this machine a kill left half-made (e.g. a folder without its settings).
    for (const path of (await provider.leftovers?.()) ?? []) {
      if (basename(path) !== machine) continue;
      out.event("cleanup", `Removing ${path}, left half-made by a killed cal…`, {
        workspace: name,
      });
      await provider.removeLeftover!(path);
    }
    const vm: VmFile = {
      name,
      base_image: image,
      created_at: new Date().toISOString(),
      provider: s.provider,
      vm: machine,
      status: "creating",
      ...(opts.template ? { template: opts.template.name } : {}),
      resources: { cpu: s.cpu, memory: s.memory, disk_size: s.disk_size },
      user: s.user,
      output_dir: join(syncRoot(config.output.sync_dir), name),
      ...(opts.agent ? { agent: opts.agent } : {}),
      environments: opts.environments ?? [],
    };
    await writeVm(vm);
    if (opts.network || opts.allow?.length) {
      await initPolicy(name, { mode: opts.network, allow: opts.allow });
    }
    killPoint("init:recorded");
    const undo = async () => {
      await provider.delete(machine).catch(() => {});
      await removeVmDir(name);
    };
    const dispose = onInterrupt(undo);
    try {
      out.event("clone", `Creating ${machine} from ${image}…`, { workspace: name });
      await provider.clone(
        image,
        machine,
        (line) => out.event("progress", line.trim(), { workspace: name }),
      );
      killPoint("init:cloned");
      await provider.configure(machine, {
        cpu: s.cpu,
        memory: s.memory,
        diskSize: s.disk_size,
        uniqueIdentity: true,
      });
      vm.status = "ready";
      await writeVm(vm);
    } catch (e) {
      await undo();
      throw e;
    } finally {
      dispose();
    }
    return toRecord({ vm, provider, machine }, {
      name: machine,
      state: "stopped",
      cpu: s.cpu,
      memory: s.memory,
      disk: s.disk_size,
    });
  }, waitMessage(out, name));
}

/**
 * What an earlier, killed command left in workspace `name`'s place, finished before init uses
 * the name (the caller holds the lock): a folder without vm.yaml (a killed destroy's or init's)
 * and a half-made workspace are removed; a destroy that was under way is named, to be finished.
 */
async function finishLeftovers(name: string, out: Output): Promise<void> {
  if (!(await exists(paths.vmDir(name)))) return;
  if (!(await exists(paths.vmFile(name)))) {
    out.event("cleanup", `Removing "${name}"'s folder, left without its vm.yaml by a killed cal…`, {
      workspace: name,
    });
    await removeVmDir(name);
    return;
  }
  let w: Loaded;
  try {
    w = await load(name);
  } catch (e) {
    throw wrongState(
      `Workspace "${name}" already exists, and its vm.yaml cannot be read: ${
        e instanceof Error ? e.message : e
      }`,
      `Fix the file, or remove the workspace's folder (${paths.vmDir(name)}) if you no longer ` +
        "need it; then run init again.",
      name,
    );
  }
  if (w.vm.status === "destroying") {
    throw wrongState(
      `An earlier \`cal-vm destroy ${name}\` was interrupted before it had finished.`,
      `Finish it with \`cal-vm destroy ${name} --yes\`, then run init again.`,
      name,
    );
  }
  if (w.vm.status !== "creating") {
    throw wrongState(
      `Workspace "${name}" already exists.`,
      `Use it (\`cal-vm start ${name}\`) or pick another name.`,
      name,
    );
  }
  out.event("cleanup", `An earlier init of "${name}" was interrupted; removing what it left…`, {
    workspace: name,
  });
  if (await w.provider.get(w.machine)) await w.provider.delete(w.machine);
  await removeVmDir(name);
}

/** Refuses (exit 4) a workspace an interrupted command left unfinished, saying how to finish. */
export function usable(w: Loaded): void {
  const problem = unfinished(w);
  if (problem) throw wrongState(problem.message, problem.hint, w.vm.name);
}

export interface StartOptions {
  vnc?: boolean;
  /** Seconds to wait for an IP and an SSH login. */
  timeout?: number;
}

export async function start(
  name: string,
  config: Config,
  opts: StartOptions,
  out: Output,
): Promise<WorkspaceRecord> {
  validateName(name);
  return await withLock(name, async () => {
    const w = await load(name);
    usable(w);
    await w.provider.ensureAvailable();
    const info = await w.provider.get(w.machine);
    if (!info) {
      throw notFound(
        `Workspace "${name}"'s machine ${w.machine} is gone.`,
        `Remove the workspace with \`cal-vm destroy ${name}\` and create it again.`,
        name,
      );
    }
    if (info.state === "running") {
      throw wrongState(
        `Workspace "${name}" is already running.`,
        `Connect with \`cal-vm ssh ${name}\`, or stop it first with \`cal-vm stop ${name}\`.`,
        name,
      );
    }
    const ip = await startMachine(w, config, opts, out);
    // Environments the workspace asked for (template, --env) and the template's post_init.
    await provisionEnvironments(w, out);
    return toRecord(w, await w.provider.get(w.machine), ip);
  }, waitMessage(out, name));
}

/**
 * Starts a stopped workspace's machine and waits until it is ready; returns its address.
 * The caller holds the workspace's lock.
 */
export async function startMachine(
  w: Loaded,
  config: Config,
  opts: StartOptions,
  out: Output,
): Promise<string> {
  const name = w.vm.name;
  if (opts.vnc && !w.provider.screen) {
    throw usageError(
      `Workspace "${name}" runs in a ${w.provider.name}, which has no screen for --vnc.`,
      `Start it without --vnc and use \`cal-vm ssh ${name}\`.`,
    );
  }
  await w.provider.checkCapacity(w.machine);
  const outputDir = w.vm.output_dir ?? join(syncRoot(config.output.sync_dir), name);
  for (const sub of ["builds", "test-results", "logs"]) {
    await Deno.mkdir(join(outputDir, sub), { recursive: true });
  }
  const logFile = join(paths.vmDir(name), "vm.log");
  out.event("start", `Starting ${w.machine}…`, { workspace: name });
  // Interrupted before the guest is ready: stop what this start began.
  const dispose = onInterrupt(async () => {
    if ((await w.provider.get(w.machine))?.state === "running") {
      await w.provider.stop(w.machine, { timeoutSeconds: 0 });
    }
  });
  let ip: string;
  let started: StartResult;
  try {
    started = await w.provider.start(w.machine, {
      outputDir,
      logFile,
      vnc: opts.vnc,
      options: w.vm.options,
      network: await networkForStart(name, w.provider.name, w.vm.options?.network),
    });
    killPoint("start:launched");
    for (const warning of started.warnings ?? []) out.warn(warning, name);
    const timeout = opts.timeout ?? config.vm.boot_timeout;
    ip = await waitReady(w, started, config, timeout, out, logFile);
    await networkReady(name, w.provider, w.machine, w.vm.user);
  } finally {
    dispose();
  }
  if (opts.vnc) {
    const log = await Deno.readTextFile(logFile).catch(() => "");
    const url = log.slice(started.logOffset ?? 0).match(/vnc:\/\/\S+/)?.[0];
    if (url) out.event("vnc", `VNC: ${url.replace(/\.\.\.$/, "")}`, { workspace: name, url });
  }
  return ip;
}

/**
 * Waits until the guest has an address and a real SSH login with the workspace key works,
 * installing the key with the image's password on first contact.
 */
async function waitReady(
  w: Loaded,
  started: StartResult,
  config: Config,
  timeoutSeconds: number,
  out: Output,
  logFile: string,
): Promise<string> {
  const name = w.vm.name;
  const t0 = Date.now();
  const deadline = t0 + timeoutSeconds * 1000;
  let exited: { code: number; log: string } | undefined;
  started.exited?.then((e) => (exited = e));
  let host: string | undefined;
  let keyInstalled = false;
  let lastReason = "";
  let said = false;
  let attempt = 0;
  while (Date.now() < deadline) {
    if (exited) throw startFailed(w, exited, logFile);
    const ep = await w.provider.endpoint(w.machine);
    if (ep) {
      host = ep.host;
      const guest = new Guest(name, ep, w.vm.user);
      await guest.prepare();
      if (w.provider.authorizeKey && !keyInstalled) {
        await w.provider.authorizeKey(w.machine, await Deno.readTextFile(guest.keyFile + ".pub"));
        keyInstalled = true;
      }
      const probe = await guest.probe(2);
      if (probe.ok) {
        const secs = ((Date.now() - t0) / 1000).toFixed(1);
        out.event("ready", `Workspace "${name}" is ready at ${ep.host} (${secs} s).`, {
          workspace: name,
          ip: ep.host,
          seconds: Number(secs),
        });
        return ep.host;
      }
      lastReason = probe.reason;
      // This host's ssh fails the same way on every try: waiting the boot timeout cannot help.
      if (probe.local) throw guest.sshError(probe.reason);
      if (/Permission denied/.test(probe.reason)) {
        if (keyInstalled) {
          throw new CalError(
            `The guest of "${name}" refuses cal's SSH key even after cal installed it.`,
            {
              code: "ssh-failed",
              hint: "Check the guest's sshd settings (PubkeyAuthentication, AuthorizedKeysFile) " +
                `and ~/.ssh permissions; the VM is still running: \`cal-vm stop ${name}\`.`,
              workspace: name,
            },
          );
        }
        out.event("key", `Installing cal's SSH key in "${name}" (first contact)…`, {
          workspace: name,
        });
        await guest.installKey(config.vm.password);
        keyInstalled = true;
        continue;
      }
    } else if (!said) {
      said = true;
      out.event("waiting", `Waiting for "${name}" to get an IP address…`, { workspace: name });
    }
    // Poll quickly at first (a sandbox is up in a moment), then once a second.
    await new Promise((r) => setTimeout(r, Math.min(1000, 100 * 2 ** attempt++)));
  }
  if (exited) throw startFailed(w, exited, logFile);
  throw new CalError(
    host
      ? `Workspace "${name}" got the IP ${host} but no SSH login worked within ${timeoutSeconds} s` +
        (lastReason ? ` (${lastReason.split("\n").pop()}).` : ".")
      : `Workspace "${name}" got no IP address within ${timeoutSeconds} s.`,
    {
      code: "timeout",
      exit: ExitCode.failed,
      hint: `It is still running. Look at its log (${logFile})` +
        (w.provider.screen
          ? ` or its screen (\`cal-vm stop ${name}\`, then \`cal-vm start ${name} --vnc\`)`
          : "") +
        ", or wait longer with --timeout.",
      workspace: name,
    },
  );
}

function startFailed(w: Loaded, e: { code: number; log: string }, logFile: string): CalError {
  const said = e.log.split("\n").map((l) => l.trim()).filter(Boolean).pop() ?? "no message";
  if (/exceeds the system limit/.test(e.log)) {
    return new CalError(`Could not start "${w.vm.name}": ${said}`, {
      code: "vm-limit",
      exit: ExitCode.wrongState,
      hint: "macOS allows two running macOS VMs; stop one with `cal-vm stop NAME` and retry.",
      workspace: w.vm.name,
    });
  }
  if (/already running/.test(e.log)) {
    return wrongState(`Could not start "${w.vm.name}": ${said}`, undefined, w.vm.name);
  }
  return new CalError(`The machine of "${w.vm.name}" stopped while starting: ${said}`, {
    code: "provider-failed",
    hint: `See its log: ${logFile}.`,
    workspace: w.vm.name,
  });
}

export async function stop(
  name: string,
  opts: { force?: boolean },
  out: Output,
): Promise<WorkspaceRecord> {
  validateName(name);
  return await withLock(name, async () => {
    const w = await load(name);
    usable(w);
    const info = await w.provider.get(w.machine);
    if (info?.state !== "running") {
      throw wrongState(
        `Workspace "${name}" is not running (${info ? info.state : "its machine is gone"}).`,
        info ? "Nothing to stop." : `Remove it with \`cal-vm destroy ${name}\`.`,
        name,
      );
    }
    await stopMachine(w, !!opts.force, out);
    return toRecord(w, await w.provider.get(w.machine));
  }, waitMessage(out, name));
}

/** Flushes the guest's disks (unless forced), closes SSH, and stops the machine. */
export async function stopMachine(w: Loaded, force: boolean, out: Output): Promise<void> {
  const ep = await w.provider.endpoint(w.machine);
  if (ep) {
    const guest = new Guest(w.vm.name, ep, w.vm.user);
    await guest.prepare();
    if (!force) {
      // The provider's stop is a hard power-off: recent writes are lost without a flush.
      out.event("sync", `Flushing "${w.vm.name}"'s disks…`, { workspace: w.vm.name });
      const r = await guest.sh("sync", { timeoutMs: 30_000 }).catch((e) => e);
      if (r instanceof Error || r.code !== 0) {
        out.warn(
          `Could not flush the guest's disks; recent writes may be lost. Stopping anyway.`,
          w.vm.name,
        );
      }
    }
    await guest.close();
  }
  out.event("stop", `Stopping ${w.machine}…`, { workspace: w.vm.name });
  await w.provider.stop(w.machine, { timeoutSeconds: force ? 0 : 30 });
  await networkStopped(w.vm.name);
}
