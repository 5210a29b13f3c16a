/**
 * `cal-agent run`: the spec's interaction flow. Check the workspace is running and isolated,
 * show the launch confirmation, take the session-start snapshot, configure the agent, show the
 * banner, run the agent in the repository over SSH (a real terminal, or headless with its JSON
 * parsed into a `run` record), and after an interactive session offer to keep, roll back or
 * name a snapshot.
 */

import { join } from "node:path";
import type { Config } from "../config.ts";
import { CalError, wrongState } from "../errors.ts";
import { commit } from "../github/repos.ts";
import { type Launch, launch as launchIn } from "../guest/launch.ts";
import type { Guest } from "../guest/ssh.ts";
import { ago, type Output } from "../output.ts";
import { calHome } from "../paths.ts";
import { canPrompt } from "../prompt.ts";
import type { RunRecord } from "../records.ts";
import { autoSnapshot, createSnapshot, restoreSnapshot } from "../snapshots.ts";
import { updateVm } from "../store.ts";
import { connect, load, type Loaded } from "../workspace.ts";
import { configureAgent } from "./configure.ts";
import { cannotSwap, handOff, resolveCredentials } from "./credentials.ts";
import { contextFor, detect, notInstalled } from "./manage.ts";
import { launchEnv } from "./plugin.ts";
import { getAgent } from "./registry.ts";
import { safeLines } from "../terminal.ts";
import { effectiveMode } from "../network/manage.ts";
import {
  askLaunch,
  banner,
  type BannerState,
  confirmationScreen,
  titleSequence,
} from "./screen.ts";

export interface RunOptions {
  agent?: string;
  prompt?: string;
  autonomous?: boolean;
  /** Skip the confirmation screen. */
  yes?: boolean;
  /** Headless: seconds before the agent is stopped. */
  timeout?: number;
  repo?: string;
  /** Skip the session-start snapshot for this run. */
  noSnapshot?: boolean;
  /** Put the real keys into the guest (when cal's proxy cannot keep them on the host). */
  passKey?: boolean;
}

const enc = new TextEncoder();
const say = (s: string) => Deno.stderr.writeSync(enc.encode(s));

/**
 * Proves the guest cannot see the host's files: a marker written on the host must be invisible
 * at the same path inside.
 */
export async function checkIsolation(guest: Guest, workspace: string): Promise<void> {
  const dir = join(calHome(), "run");
  await Deno.mkdir(dir, { recursive: true });
  const marker = join(dir, `isolation-${crypto.randomUUID()}`);
  await Deno.writeTextFile(marker, "host");
  try {
    const r = await guest.exec(["test", "-e", marker]);
    if (r.code === 0) {
      throw new CalError(
        `Isolation check failed: "${workspace}" can see the host's file ${marker}.`,
        {
          hint: "Do not run an agent here; check the provider's mounts.",
          workspace,
        },
      );
    }
  } finally {
    await Deno.remove(marker).catch(() => {});
  }
}

function repoLabel(w: Loaded, repo?: string): string {
  const r = (w.vm.github?.repos ?? []).find((x) => !repo || x.name === repo);
  if (!r) return "(none cloned: the agent starts in ~/workspace)";
  const slug = r.url.replace(/^(https?:\/\/)?[^/]+\//, "").replace(/\.git$/, "");
  return `${slug} (branch: ${r.branch ?? "default"})`;
}

function lastBackup(w: Loaded): string {
  const s = [...(w.vm.snapshots ?? [])].sort((a, b) => b.created_at.localeCompare(a.created_at))[0];
  return s ? `${ago(s.created_at)} (${s.auto ? "auto-snapshot" : s.name})` : "none yet";
}

export async function runAgent(
  name: string,
  opts: RunOptions,
  config: Config,
  out: Output,
): Promise<RunRecord | undefined> {
  let w = await load(name);
  const agentName = opts.agent ?? w.vm.agent;
  if (!agentName) {
    throw wrongState(
      `Workspace "${name}" has no agent chosen.`,
      `Install one (\`cal-agent install ${name} claude-code\`) or pass --agent.`,
      name,
    );
  }
  const plugin = await getAgent(agentName);
  const credentials = await resolveCredentials(plugin);
  const info = await w.provider.get(w.machine);
  if (info?.state !== "running") {
    throw wrongState(
      `Workspace "${name}" is not running (${info?.state ?? "its machine is gone"}).`,
      `Start it first: \`cal-vm start ${name}\`.`,
      name,
    );
  }
  let guest = await connect(w);
  await checkIsolation(guest, name);
  if (!(await detect(guest, plugin))) throw notInstalled(plugin, name);
  // Before anything starts: a run whose keys cannot stay on the host needs --pass-key.
  const swapProblem = cannotSwap(name, w.provider.name, plugin, Object.keys(credentials));
  if (swapProblem && !opts.passKey) {
    await handOff(name, w.provider.name, plugin, credentials, { warn: () => {} }); // throws
  }

  const interactive = opts.prompt === undefined;
  const network = await effectiveMode(name, w.vm.options?.network);
  let snapshot: string | undefined;
  if (!opts.yes && canPrompt()) {
    say(
      confirmationScreen({
        workspace: name,
        vmState: "running",
        isolation: isolationWords(w),
        environments: w.vm.environments ?? [],
        agent: plugin.displayName,
        repository: repoLabel(w, opts.repo),
        lastBackup: lastBackup(w),
        autonomous: !!opts.autonomous,
        network,
      }) + "\n" +
        // Only reached with --pass-key when the key cannot stay on the host: say so here too.
        (swapProblem
          ? `  ⚠️  The REAL key goes into the guest (--pass-key): ${swapProblem}.\n`
          : ""),
    );
    const choice = await askLaunch();
    if (choice === "quit") {
      say("Not launched.\n");
      return undefined;
    }
    if (choice === "backup") {
      snapshot = (await createSnapshot(name, undefined, config, out)).record.snapshot;
    }
  }
  const interactiveTty = interactive && Deno.stderr.isTerminal();
  const showBanner = (state: BannerState) => {
    if (!interactiveTty) return;
    const i = {
      workspace: name,
      environments: w.vm.environments ?? [],
      sandbox: w.provider.name === "sandbox",
      network,
    };
    say(banner(i, state, Deno.consoleSize?.().columns ?? 80) + "\n");
  };
  showBanner("starting");
  if (!snapshot && !opts.noSnapshot) snapshot = (await autoSnapshot(name, config, out))?.snapshot;
  if (snapshot) {
    // The snapshot restarted the workspace: reconnect to its (possibly new) address.
    w = await load(name);
    guest = await connect(w);
  }

  // The keys' session: opened after the snapshot (which restarts the workspace and its proxy),
  // held while the agent runs, ended with it (its stand-ins are worthless from then on).
  const keys = await handOff(name, w.provider.name, plugin, credentials, {
    passKey: opts.passKey,
    warn: (m) => out.warn(m, name),
  });
  const detected = (await detect(guest, plugin))!;
  const ctx = {
    ...await contextFor(w, guest, plugin, config, {
      repo: opts.repo,
      version: detected.version,
      credentials,
    }),
    ...(keys.mode === "swapped" ? { standIns: keys.secrets } : {}),
  };
  const files = await configureAgent(guest, plugin, ctx);
  out.event("configure", `Configured ${plugin.displayName}: ${files.join(", ")}`, {
    workspace: name,
  });
  const request = { prompt: opts.prompt, autonomous: !!opts.autonomous };
  const argv = [detected.binary, ...plugin.args(ctx, request)];
  const env = { ...launchEnv(plugin, ctx, request), ...keys.env };
  const launch = async (g: Guest, l: Omit<Launch, "secrets">) => {
    try {
      return await launchIn(g, { ...l, secrets: keys.secrets });
    } finally {
      keys.close();
    }
  };

  await updateVm(name, (vm) => {
    vm.last_run = {
      agent: plugin.name,
      ...(opts.prompt !== undefined ? { prompt: opts.prompt } : {}),
      ...(snapshot ? { snapshot } : {}),
      at: new Date().toISOString(),
    };
  });
  const t0 = performance.now();
  const base = {
    kind: "run" as const,
    workspace: name,
    agent: plugin.name,
    mode: interactive ? "interactive" as const : "headless" as const,
    autonomous: !!opts.autonomous,
    ...(snapshot ? { snapshot } : {}),
    ...(w.vm.github?.repos?.length ? { repo: ctx.workdir.split("/").pop() } : {}),
  };
  if (interactive) {
    if (interactiveTty) say(titleSequence(name));
    showBanner("running");
    const r = await launch(guest, {
      argv,
      cwd: ctx.workdir,
      env,
      interactive: true,
    });
    const record: RunRecord = { ...base, exit: r.code, duration_s: seconds(t0) };
    // Back in cal: red when the agent failed (Ctrl-C is not a failure), yellow while winding up.
    showBanner(r.code !== 0 && r.code !== 130 ? "error" : "stopping");
    if (r.code !== 0 && r.code !== 130 && interactiveTty) {
      say(`${plugin.displayName} exited with code ${r.code}.\n`);
    }
    if (canPrompt()) await afterSession(w, guest, ctx.workdir, snapshot, config, out);
    return record;
  }
  const r = await launch(guest, {
    argv,
    cwd: ctx.workdir,
    env,
    interactive: false,
    ...(opts.timeout ? { timeoutMs: opts.timeout * 1000 } : {}),
    // The agent's stderr is guest text: shown, never acted on by the terminal.
    onStderr: (text) => out.json ? undefined : say(safeLines(text)),
  });
  const report = plugin.parseHeadless(r.stdout);
  return {
    ...base,
    exit: r.code,
    duration_s: seconds(t0),
    ...(r.timedOut ? { timed_out: true } : {}),
    ...clean(report),
  };
}

const seconds = (t0: number) => Math.round((performance.now() - t0) / 100) / 10;

function clean<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function isolationWords(w: Loaded): string {
  return w.provider.name === "tart" ? "Host filesystem protected" : w.provider.isolation;
}

/**
 * After an interactive session: with changes in a cloned repository, commit them (and push, on
 * request); then keep, roll back to the session snapshot, or save a named snapshot. What fails
 * here is reported and the next question still comes; the agent's exit code stays cal's.
 */
async function afterSession(
  w: Loaded,
  guest: Guest,
  workdir: string,
  snapshot: string | undefined,
  config: Config,
  out: Output,
): Promise<void> {
  const name = w.vm.name;
  const reported = async (step: () => Promise<void>) => {
    try {
      await step();
    } catch (e) {
      if (!(e instanceof CalError)) throw e;
      out.error(e);
    }
  };
  const st = await guest.exec(["git", "-C", workdir, "status", "--porcelain"]).catch(() =>
    undefined
  );
  const changed = st && st.code === 0 ? st.stdout.split("\n").filter(Boolean).length : 0;
  const repo = (w.vm.github?.repos ?? []).find((r) => workdir.endsWith(`/workspace/${r.name}`));
  if (changed) say(`\n${changed} file(s) changed in ${workdir}.\n`);
  if (changed && repo) {
    say("[C]ommit   Commit and [P]ush   [L]eave them uncommitted ");
    const key = await readKey();
    say("\n");
    if (key === "c" || key === "p") {
      say("Commit message: ");
      const message = (await readLine()).trim();
      if (!message) say("No message: nothing was committed.\n");
      else {
        await reported(async () => {
          // The GitHub workflow's own commit: never to a protected branch, never forced.
          const push = key === "p";
          const rs = await commit(name, { message, repo: repo.name, push }, config, out);
          const r = rs.find((x) => x.kind === "repo");
          if (r?.kind === "repo") {
            say(
              `Committed ${r.commit?.slice(0, 7)} on ${r.branch}${
                r.pushed ? " and pushed it" : ""
              }.\n`,
            );
          }
        });
      }
    }
  }
  const options = [
    "[K]eep changes",
    ...(snapshot ? [`[R]oll back to ${snapshot}`] : []),
    "[S]ave a named snapshot",
  ];
  say(`Session ended. ${options.join("   ")} `);
  const key = await readKey();
  say("\n");
  await reported(async () => {
    if (key === "r" && snapshot) {
      const { seconds } = await restoreSnapshot(name, snapshot, { force: true }, config, out);
      say(`Restored to snapshot: ${snapshot} (${seconds} seconds)\n`);
    } else if (key === "s") {
      say("Snapshot name: ");
      const label = (await readLine()).trim();
      if (label) {
        const { record } = await createSnapshot(name, label, config, out);
        say(`Saved snapshot "${record.snapshot}".\n`);
      }
    }
  });
}

async function readKey(): Promise<string> {
  Deno.stdin.setRaw(true);
  try {
    const buf = new Uint8Array(8);
    const n = await Deno.stdin.read(buf);
    return n ? String.fromCharCode(buf[0]).toLowerCase() : "k";
  } finally {
    Deno.stdin.setRaw(false);
  }
}

async function readLine(): Promise<string> {
  const buf = new Uint8Array(256);
  const n = await Deno.stdin.read(buf);
  return new TextDecoder().decode(buf.subarray(0, n ?? 0));
}
