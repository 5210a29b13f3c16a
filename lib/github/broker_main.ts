/**
 * The broker process of one workspace (started by broker_daemon.ts, detached, its stderr in
 * `github-broker.log`):
 *
 *   deno run -A lib/github/broker_main.ts --workspace=NAME --vm-dir=DIR
 *
 * It serves on `<vmDir>/net/github.sock` until SIGTERM, or until the workspace's folder is gone
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
Deno.writeTextFileSync(f.pid, String(Deno.pid));

const stop = async () => {
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
