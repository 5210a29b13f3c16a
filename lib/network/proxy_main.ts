/**
 * The proxy process of one workspace (started by daemon.ts, detached, its stderr in
 * `network-proxy.log`):
 *
 *   deno run -A lib/network/proxy_main.ts --workspace=NAME --vm-dir=DIR
 *       [--socket=PATH] [--tcp=HOST:PORT] [--token]
 *
 * It serves until SIGTERM, or until the workspace's folder disappears (checked every second),
 * so a workspace deleted or a cal killed never leaves a proxy behind. The host's HTTPS_PROXY /
 * HTTP_PROXY / NO_PROXY, if set, become its parent proxy.
 *
 * It also swaps agent keys (credentials.ts): the workspace's CA (ca.ts; its trust bundle is
 * written next to the socket, `net/ca.pem`, for the guest) and the control socket
 * `network-proxy.ctl` in the workspace's folder, where cal opens a session per agent run.
 *
 * Test seams (tests only; the host's own environment, never the guest's):
 * CAL_TEST_PROXY_RESOLVE (JSON `{"name": "address"}`: those names resolve there) and
 * CAL_TEST_PROXY_UPSTREAM_CA (a PEM file the upstream leg of a swap trusts instead of the
 * system's roots).
 */

import { paths } from "../paths.ts";
import { writeFileAtomic } from "../store.ts";
import { proxyFiles } from "./daemon.ts";
import { DecisionLog, logFile } from "./log.ts";
import { dirname, join } from "node:path";
import { workspaceCa, writeTrustBundle } from "./ca.ts";
import { controlSocket, serveControl, StandIns } from "./credentials.ts";
import { type Resolve, startProxy, systemResolve } from "./proxy.ts";
import { watchPolicy } from "./settings.ts";

function arg(name: string): string | undefined {
  const a = Deno.args.find((x) => x.startsWith(`--${name}=`));
  return a?.slice(name.length + 3);
}

const name = arg("workspace");
const vmDir = arg("vm-dir");
if (!name || !vmDir || vmDir !== paths.vmDir(name)) {
  console.error("proxy_main: --workspace and a matching --vm-dir are required (CAL_HOME moved?)");
  Deno.exit(2);
}
const files = proxyFiles(name);
const tcpArg = arg("tcp");
const tcp = tcpArg
  ? { host: tcpArg.slice(0, tcpArg.lastIndexOf(":")), port: Number(tcpArg.split(":").pop()) }
  : undefined;
const token = Deno.args.includes("--token") ? Deno.readTextFileSync(files.token).trim() : undefined;
const env = (k: string) => Deno.env.get(k) ?? Deno.env.get(k.toLowerCase());
const parent = env("HTTPS_PROXY") || env("HTTP_PROXY")
  ? { https: env("HTTPS_PROXY"), http: env("HTTP_PROXY"), noProxy: env("NO_PROXY") }
  : undefined;

function testResolve(): Resolve | undefined {
  const map = Deno.env.get("CAL_TEST_PROXY_RESOLVE");
  if (!map) return undefined;
  const names = JSON.parse(map) as Record<string, string>;
  return (host) =>
    names[host]
      ? Promise.resolve([{ address: names[host], family: names[host].includes(":") ? 6 : 4 }])
      : systemResolve(host);
}
const resolve = testResolve();
const upstreamFile = Deno.env.get("CAL_TEST_PROXY_UPSTREAM_CA");

const ca = await workspaceCa(vmDir);
const socketArg = arg("socket");
const netDir = socketArg ? dirname(socketArg) : join(vmDir, "net");
await Deno.mkdir(netDir, { recursive: true, mode: 0o700 });
await writeTrustBundle(netDir, ca);
const standIns = new StandIns();
const control = await serveControl(controlSocket(vmDir), standIns);

const log = new DecisionLog(logFile(name));
const proxy = await startProxy({
  policy: watchPolicy(name),
  onDecision: (e) => log.write(e),
  ...(socketArg ? { socketPath: socketArg } : {}),
  ...(tcp ? { tcp } : {}),
  ...(token ? { token } : {}),
  ...(parent ? { parentProxy: parent } : {}),
  ...(resolve ? { resolve } : {}),
  credentials: {
    ca,
    standIns,
    ...(upstreamFile ? { upstreamCA: Deno.readTextFileSync(upstreamFile) } : {}),
  },
});
await writeFileAtomic(
  files.state,
  JSON.stringify({ pid: Deno.pid, socketPath: proxy.socketPath, tcp: proxy.tcp }) + "\n",
);
console.error(
  `${new Date().toISOString()} proxy for ${name} listening on ` +
    [proxy.socketPath, proxy.tcp && `${proxy.tcp.host}:${proxy.tcp.port}`].filter(Boolean)
      .join(" and "),
);

let stopping = false;
async function stop(why: string) {
  if (stopping) return;
  stopping = true;
  console.error(`${new Date().toISOString()} proxy for ${name} stopping: ${why}`);
  control.close();
  await Deno.remove(controlSocket(vmDir!)).catch(() => {});
  await Promise.race([proxy.close(), new Promise((r) => setTimeout(r, 2000))]);
  log.close();
  Deno.exit(0);
}
Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
setInterval(() => {
  try {
    Deno.statSync(vmDir);
  } catch {
    stop("the workspace's folder is gone");
    return;
  }
  // Replaced by a newer proxy (its pid in the pid file): this one is not needed any more.
  try {
    const owner = Number(Deno.readTextFileSync(files.pid).trim());
    if (owner && owner !== Deno.pid) stop(`replaced by process ${owner}`);
  } catch { /* pid file not written yet, or removed by stopProxy */ }
}, 1000);
