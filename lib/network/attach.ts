/**
 * A workspace's network at start and stop: the egress mode its policy says, and cal's proxy
 * running where the provider's guest can reach it.
 *
 * - allowlist and none: the proxy runs (none refuses every connection, and logs it), so a change
 *   between the two takes effect in the running workspace; the guest's only way out is the proxy.
 * - open: no proxy; the guest has the host's network as it is (a restart switches to or from it).
 *
 * The sandbox reaches the proxy through a unix socket bound into its own network namespace
 * (`<vmDir>/net/proxy.sock`). A Tart VM reaches it over TCP at the vmnet gateway (vmnet.ts),
 * the only address Softnet lets it reach; that address exists only once a VM's network is up,
 * so the proxy starts after the VM (`networkReady` in guest_env.ts), with a token that keeps
 * everything else on that network out.
 */

import { join } from "node:path";
import { loadConfig } from "../config.ts";
import { paths } from "../paths.ts";
import type { StartOptions } from "../provider.ts";
import { ensureProxy, runningProxy, stopProxy } from "./daemon.ts";
import { effectiveMode } from "./manage.ts";
import { vmnetGateway } from "./vmnet.ts";

/** The proxy's socket for a workspace (its folder is bound into a sandbox guest). */
export const proxySocket = (name: string) => join(paths.vmDir(name), "net", "proxy.sock");

/**
 * Prepares the network for starting `name` on `provider`; returns what the provider needs.
 * `initNetwork` is the workspace's `--network host|none` from before policies (vm.yaml's
 * options), which counts as the workspace's own mode when network.json names none.
 */
export async function networkForStart(
  name: string,
  provider: string,
  initNetwork?: unknown,
): Promise<NonNullable<StartOptions["network"]>> {
  // A damaged policy refuses the start, naming its file.
  const mode = await effectiveMode(name, initNetwork);
  if (mode !== "open" && provider === "tart") {
    // Softnet is told the gateway; the port is the running proxy's, or picked when it starts.
    const host = await vmnetGateway();
    const running = runningProxy(name)?.tcp;
    return { mode, proxyTcp: { host, port: running?.host === host ? running.port : 0 } };
  }
  if (mode === "open" || provider !== "sandbox") {
    await stopProxy(name);
    return { mode };
  }
  const socketPath = proxySocket(name);
  await Deno.mkdir(join(paths.vmDir(name), "net"), { recursive: true, mode: 0o700 });
  await ensureProxy(name, { socketPath });
  const { network } = await loadConfig();
  return { mode, proxySocket: socketPath, noProxy: network.no_proxy };
}

/** After the workspace's machine stopped: its proxy goes too. */
export async function networkStopped(name: string): Promise<void> {
  await stopProxy(name);
}
