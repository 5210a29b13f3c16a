/**
 * The broker's lifetime: one detached broker per workspace, started by the cal-gh commands that
 * need it (clone, commit, push, pr), found again through its pid file and /proc, and gone with
 * the workspace's folder. Its settings (host, push rules) are rewritten on every ensure, so a
 * branch cal creates counts as the workspace's own from then on.
 */

import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import type { Config } from "../config.ts";
import { CalError, ExitCode } from "../errors.ts";
import { paths } from "../paths.ts";
import { alive, startDetached } from "../process.ts";
import { readVm, writeFileAtomic } from "../store.ts";
import { brokerFiles, type BrokerSettings } from "./broker.ts";

const ENTRY = fileURLToPath(new URL("./broker_main.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const marker = (name: string) => `--vm-dir=${paths.vmDir(name)}`;

function brokerPid(name: string): number | undefined {
  try {
    const pid = Number(Deno.readTextFileSync(brokerFiles(name).pid).trim());
    if (!pid || !alive(pid)) return undefined;
    try {
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      return argv.includes(ENTRY) && argv.includes(marker(name)) ? pid : undefined;
    } catch {
      return Deno.build.os !== "linux" ? pid : undefined;
    }
  } catch {
    return undefined;
  }
}

function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export interface BrokerInfo {
  /** The TCP listener, when one was asked for, and the secret its paths start with. */
  tcp?: { host: string; port: number };
  secret?: string;
}

function readState(
  name: string,
): { pid: number; tcp?: { host: string; port: number } } | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(brokerFiles(name).state));
  } catch {
    return undefined;
  }
}

function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** The workspace's secret for the TCP listener: made once (0600), kept across restarts. */
async function secretOf(name: string): Promise<string> {
  const file = brokerFiles(name).secret;
  try {
    const st = await Deno.lstat(file);
    if (st.isFile) return (await Deno.readTextFile(file)).trim();
  } catch { /* make it */ }
  const secret = Array.from(crypto.getRandomValues(new Uint8Array(16)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  await Deno.remove(file).catch(() => {});
  await Deno.writeTextFile(file, secret + "\n", { createNew: true, mode: 0o600 });
  return secret;
}

/**
 * Writes the broker's settings and starts it unless it runs (with a TCP listener on `tcpHost`
 * when asked: a Tart VM's gateway, or the host's loopback); waits until it accepts.
 */
export async function ensureBroker(
  name: string,
  host: string,
  config: Config,
  tcpHost?: string,
  /** A repository being cloned now (OWNER/REPO), served besides those in vm.yaml. */
  cloning?: string,
): Promise<BrokerInfo> {
  const vm = await readVm(name);
  const f = brokerFiles(name);
  const settings: BrokerSettings = {
    host,
    rules: {
      prefix: config.github.default_branch_prefix,
      own: (vm.github?.repos ?? []).map((r) => r.branch).filter((b): b is string => !!b),
      protected: config.github.protected_branches,
    },
    // A repository's record is `host/OWNER/REPO`.
    repos: [
      ...(vm.github?.repos ?? []).map((r) => r.url.split("/").slice(1).join("/")),
      ...(cloning ? [cloning] : []),
    ],
  };
  await Deno.mkdir(`${f.dir}/net`, { recursive: true, mode: 0o700 });
  await writeFileAtomic(f.settings, JSON.stringify(settings, null, 2) + "\n");
  const lock = await Deno.open(`${f.dir}/github-broker.lock`, { create: true, write: true });
  try {
    await lock.lock(true);
    const secret = tcpHost ? await secretOf(name) : undefined;
    const info = (): BrokerInfo | undefined => {
      const st = readState(name);
      if (tcpHost && st?.tcp?.host !== tcpHost) return undefined;
      return tcpHost ? { tcp: st!.tcp, secret } : {};
    };
    const up = async (pid: number | undefined) => {
      if (!pid || brokerPid(name) !== pid || !await accepts(f.socket)) return undefined;
      const i = info();
      if (i?.tcp && !await tcpAccepts(i.tcp.host, i.tcp.port)) return undefined;
      return i;
    };
    const running = brokerPid(name);
    const now = await up(running);
    if (now) return now;
    if (running) await stopBroker(name);
    const previous = readState(name)?.tcp;
    const started = await startDetached(Deno.execPath(), [
      "run",
      "--allow-all",
      "--no-prompt",
      "--config",
      CONFIG,
      ENTRY,
      `--workspace=${name}`,
      marker(name),
      ...(tcpHost ? [`--tcp=${tcpHost}:${previous?.host === tcpHost ? previous.port : 0}`] : []),
    ], f.log);
    let exited = false;
    started.exited?.then(() => (exited = true));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !exited) {
      const i = await up(started.pid);
      if (i) return i;
      await new Promise((r) => setTimeout(r, 25));
    }
    try {
      Deno.kill(started.pid!, "SIGKILL");
    } catch { /* gone */ }
    const log = (await Deno.readTextFile(f.log).catch(() => "")).slice(-1500).trim();
    throw new CalError(`cal's GitHub broker for "${name}" did not start.`, {
      code: "failed",
      exit: ExitCode.failed,
      workspace: name,
      hint: `Its log says: ${log || "(nothing)"}`,
    });
  } finally {
    lock.close();
  }
}

/** Stops the workspace's broker; true when one ran. */
export async function stopBroker(name: string): Promise<boolean> {
  const pid = brokerPid(name);
  if (!pid) return false;
  try {
    Deno.kill(pid, "SIGTERM");
  } catch { /* gone */ }
  const deadline = Date.now() + 5000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  return true;
}

/**
 * For a workspace's start (after a host restart, say): brings its broker back, listening as it
 * did before, when the workspace uses one (no login of its own, a repository cloned through it).
 */
export async function resumeBroker(name: string, config: Config): Promise<void> {
  const vm = await readVm(name);
  if (vm.github?.authenticated || !(vm.github?.repos ?? []).length) return;
  const previous = readState(name)?.tcp?.host;
  await ensureBroker(name, vm.github?.host ?? config.github.host ?? "github.com", config, previous);
}
