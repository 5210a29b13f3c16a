/**
 * The proxy's lifetime: one detached proxy process per workspace, started with it, found again
 * by any later cal process, stopped with it, and never orphaned (a proxy whose workspace folder
 * is gone exits by itself).
 *
 * Providers call `ensureProxy(workspace, { socketPath?, tcp? })` before the guest starts and
 * `stopProxy(workspace)` after it stops. State lives in the workspace's folder:
 * `network-proxy.pid` (whose process is checked to really be this workspace's proxy via
 * /proc/<pid>/cmdline), `network-proxy.json` (where it listens, written once it does),
 * `network-proxy.log` (its own stderr) and, when asked for, `network-proxy.token` (0600).
 */

import { join } from "node:path";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { CalError, ExitCode } from "../errors.ts";
import { paths } from "../paths.ts";
import { alive, startDetached } from "../process.ts";
import { readVm } from "../store.ts";

export interface ProxyListen {
  /** A unix socket path (the sandbox bind-mounts it into its network namespace). */
  socketPath?: string;
  /** A TCP address (Tart: the host's address on the VM network); port 0 picks one. */
  tcp?: { host: string; port: number };
}

export interface ProxyInfo {
  workspace: string;
  pid: number;
  socketPath?: string;
  tcp?: { host: string; port: number };
  /** The proxy token, when one was asked for: the guest's proxy URL carries `srt:<token>@`. */
  token?: string;
}

const ENTRY = fileURLToPath(new URL("./proxy_main.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

export const proxyFiles = (name: string) => {
  const dir = paths.vmDir(name);
  return {
    dir,
    pid: join(dir, "network-proxy.pid"),
    state: join(dir, "network-proxy.json"),
    log: join(dir, "network-proxy.log"),
    token: join(dir, "network-proxy.token"),
    lock: join(dir, "network-proxy.lock"),
  };
};

/** The argument that marks a proxy process as this workspace's (see `isOurs`). */
const marker = (name: string) => `--vm-dir=${paths.vmDir(name)}`;

function isOurs(pid: number, name: string): boolean {
  try {
    const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
    return argv.includes(ENTRY) && argv.includes(marker(name));
  } catch {
    // No /proc (macOS): a live pid from our own pid file is taken as ours.
    return Deno.build.os !== "linux" && alive(pid);
  }
}

interface State {
  pid: number;
  socketPath?: string;
  tcp?: { host: string; port: number };
}

function readState(name: string): State | undefined {
  try {
    const s = JSON.parse(Deno.readTextFileSync(proxyFiles(name).state));
    return typeof s?.pid === "number" ? s : undefined;
  } catch {
    return undefined;
  }
}

/** The running proxy's pid, when there is one and it is really this workspace's proxy. */
export function proxyPid(name: string): number | undefined {
  try {
    const pid = Number(Deno.readTextFileSync(proxyFiles(name).pid).trim());
    return pid && alive(pid) && isOurs(pid, name) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Where the running proxy listens, or undefined when none runs. */
export function runningProxy(name: string): ProxyInfo | undefined {
  const pid = proxyPid(name);
  const state = readState(name);
  if (!pid || state?.pid !== pid) return undefined;
  let token: string | undefined;
  try {
    token = Deno.readTextFileSync(proxyFiles(name).token).trim() || undefined;
  } catch { /* no token */ }
  return { workspace: name, ...state, ...(token ? { token } : {}) };
}

function sameListen(info: ProxyInfo, want: ProxyListen, token: boolean): boolean {
  if ((info.socketPath ?? "") !== (want.socketPath ?? "")) return false;
  if (!!info.tcp !== !!want.tcp) return false;
  if (info.tcp && want.tcp) {
    if (info.tcp.host !== want.tcp.host) return false;
    if (want.tcp.port !== 0 && info.tcp.port !== want.tcp.port) return false;
  }
  return !!info.token === token;
}

async function withProxyLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const f = await Deno.open(proxyFiles(name).lock, { create: true, write: true, truncate: false });
  try {
    await f.lock(true);
    return await fn();
  } finally {
    f.close();
  }
}

/** Whether something accepts connections at the proxy's address. */
function accepts(info: ProxyListen): Promise<boolean> {
  return new Promise((resolve) => {
    const s = info.socketPath
      ? connect({ path: info.socketPath })
      : connect({ host: info.tcp!.host, port: info.tcp!.port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

async function tail(file: string, bytes = 2000): Promise<string> {
  const text = await Deno.readTextFile(file).catch(() => "");
  return text.slice(-bytes).trim();
}

/**
 * Starts the workspace's proxy unless it already runs where asked, and waits until it accepts
 * connections. A proxy listening elsewhere is replaced.
 */
export async function ensureProxy(
  name: string,
  listen: ProxyListen,
  opts: { token?: boolean; timeoutMs?: number } = {},
): Promise<ProxyInfo> {
  if (!listen.socketPath && !listen.tcp) {
    throw new Error("ensureProxy needs a socketPath or a tcp address");
  }
  await readVm(name); // an unknown workspace: exit 3 with the usual hint
  const f = proxyFiles(name);
  return await withProxyLock(name, async () => {
    const running = runningProxy(name);
    if (running && sameListen(running, listen, !!opts.token)) return running;
    if (running) await stopUnlocked(name);
    await Deno.remove(f.state).catch(() => {});
    if (opts.token) {
      const token = Array.from(crypto.getRandomValues(new Uint8Array(24)))
        .map((b) => b.toString(16).padStart(2, "0")).join("");
      await Deno.writeTextFile(f.token, token, { mode: 0o600 });
    } else {
      await Deno.remove(f.token).catch(() => {});
    }
    const args = [
      "run",
      "--allow-all",
      "--no-prompt",
      "--config",
      CONFIG,
      ENTRY,
      `--workspace=${name}`,
      marker(name),
      ...(listen.socketPath ? [`--socket=${listen.socketPath}`] : []),
      ...(listen.tcp ? [`--tcp=${listen.tcp.host}:${listen.tcp.port}`] : []),
      ...(opts.token ? ["--token"] : []),
    ];
    const started = await startDetached(Deno.execPath(), args, f.log);
    const pid = started.pid!;
    await Deno.writeTextFile(f.pid, String(pid));
    let exited: { code: number; log: string } | undefined;
    started.exited?.then((e) => (exited = e));
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      if (exited) break;
      const state = readState(name);
      if (state?.pid === pid && await accepts(state)) {
        return runningProxy(name) ?? { workspace: name, ...state };
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
    const why = exited ? `it exited (status ${exited.code})` : "it did not start listening in time";
    throw new CalError(`The network proxy of "${name}" did not start: ${why}.`, {
      code: "failed",
      exit: ExitCode.failed,
      workspace: name,
      hint: `Its log says: ${(await tail(f.log)) || "(nothing)"}`,
    });
  });
}

async function stopUnlocked(name: string): Promise<boolean> {
  const f = proxyFiles(name);
  const pid = proxyPid(name);
  const state = readState(name);
  if (pid) {
    try {
      Deno.kill(pid, "SIGTERM");
    } catch { /* gone */ }
    const deadline = Date.now() + 5000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    if (alive(pid)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
      while (alive(pid)) await new Promise((r) => setTimeout(r, 25));
    }
  }
  if (state?.socketPath && (!pid || state.pid === pid)) {
    await Deno.remove(state.socketPath).catch(() => {});
  }
  for (const p of [f.pid, f.state, f.token]) await Deno.remove(p).catch(() => {});
  return pid !== undefined;
}

/** Stops the workspace's proxy; true when one was running. A missing workspace is fine. */
export async function stopProxy(name: string): Promise<boolean> {
  try {
    await Deno.lstat(paths.vmDir(name));
  } catch {
    return false; // no folder: its proxy, if any, exits by itself
  }
  return await withProxyLock(name, () => stopUnlocked(name));
}
