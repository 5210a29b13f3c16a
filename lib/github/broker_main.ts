/**
 * The broker process of one workspace (started by broker_daemon.ts, detached, its stderr in
 * `github-broker.log`):
 *
 *   deno run -A lib/github/broker_main.ts --workspace=NAME --vm-dir=DIR [--tcp=HOST:PORT]
 *
 * It serves on `<vmDir>/net/github.sock` (and, with --tcp, on HOST:PORT, paths prefixed with the
 * workspace's secret, `github-broker.secret`) until SIGTERM, or until the workspace's folder is gone
 * (checked every second). The socket gets the `net/` folder's group (the sandbox guest's), 0660.
 */

import { paths } from "../paths.ts";
import { brokerFiles, brokerHandler } from "./broker.ts";

function arg(name: string): string | undefined {
  return Deno.args.find((x) => x.startsWith(`--${name}=`))?.slice(name.length + 3);
}

const name = arg("workspace");
const vmDir = arg("vm-dir");
if (!name || !vmDir || vmDir !== paths.vmDir(name)) {
  console.error("broker_main: --workspace and a matching --vm-dir are required (CAL_HOME moved?)");
  Deno.exit(2);
}
const f = brokerFiles(name);
await Deno.remove(f.socket).catch(() => {});
const server = Deno.serve(
  { path: f.socket, transport: "unix", onListen: () => {} },
  brokerHandler(name),
);
const gid = Deno.statSync(`${vmDir}/net`).gid;
if (Deno.uid() === 0 && gid !== null) Deno.chownSync(f.socket, 0, gid);
Deno.chmodSync(f.socket, 0o660);

// The TCP listener (a Tart VM, a sandbox on the host's network): the port it had before if it is
// free, so the guest's git config stays right; paths carry the workspace's secret.
const tcpArg = arg("tcp");
let tcpServer: Deno.HttpServer<Deno.NetAddr> | undefined;
if (tcpArg) {
  const host = tcpArg.slice(0, tcpArg.lastIndexOf(":"));
  const want = Number(tcpArg.split(":").pop());
  const secret = Deno.readTextFileSync(f.secret).trim();
  const listen = (port: number) =>
    Deno.serve({ hostname: host, port, onListen: () => {} }, brokerHandler(name, secret));
  try {
    tcpServer = listen(want);
  } catch {
    tcpServer = listen(0);
  }
}
Deno.writeTextFileSync(
  f.state,
  JSON.stringify({
    pid: Deno.pid,
    ...(tcpServer ? { tcp: { host: tcpServer.addr.hostname, port: tcpServer.addr.port } } : {}),
  }),
);
Deno.writeTextFileSync(f.pid, String(Deno.pid));

const stop = async () => {
  await tcpServer?.shutdown().catch(() => {});
  await server.shutdown().catch(() => {});
  await Deno.remove(f.socket).catch(() => {});
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
setInterval(() => {
  try {
    Deno.lstatSync(vmDir);
  } catch {
    stop();
  }
}, 1000);
