/**
 * The host side of Tart's VM network (Apple's vmnet "shared" mode, which Softnet also uses): the
 * gateway address a VM reaches the host at, where cal's proxy listens for a Tart workspace.
 *
 * macOS keeps it in `/Library/Preferences/SystemConfiguration/com.apple.vmnet.plist`
 * (`Shared_Net_Address`, 192.168.64.1 unless someone changed it). The bridge carrying it
 * (bridge100) exists only while some VM runs, so the proxy binds after the VM started
 * (`waitBindable`). `CAL_TART_GATEWAY` overrides the address. Tart runs only on macOS: on any
 * other host the `tart` on PATH is the test rig's fake, whose VMs live on the host's loopback
 * (127.x.y.z), and its gateway is 127.0.64.1 (a loopback address nothing else uses, so the fake
 * can let a VM reach only what listens there).
 */

import { run } from "../process.ts";

export const VMNET_PLIST = "/Library/Preferences/SystemConfiguration/com.apple.vmnet.plist";
export const DEFAULT_GATEWAY = "192.168.64.1";
/** The fake tart's gateway (tests/faketart), on hosts other than macOS. */
export const FAKE_GATEWAY = "127.0.64.1";

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** The vmnet gateway: CAL_TART_GATEWAY, else the plist's Shared_Net_Address, else the default. */
export async function vmnetGateway(): Promise<string> {
  const forced = Deno.env.get("CAL_TART_GATEWAY")?.trim();
  if (forced && IPV4.test(forced)) return forced;
  if (Deno.build.os !== "darwin") return FAKE_GATEWAY;
  const r = await run("plutil", ["-extract", "Shared_Net_Address", "raw", "-o", "-", VMNET_PLIST])
    .catch(() => undefined);
  const said = r?.code === 0 ? r.stdout.trim() : "";
  return IPV4.test(said) ? said : DEFAULT_GATEWAY;
}

/**
 * Waits until `host` is one of this host's addresses (something can bind it): the vmnet bridge
 * appears when the first VM's network starts. False after `timeoutMs`.
 */
export async function waitBindable(host: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      Deno.listen({ hostname: host, port: 0 }).close();
      return true;
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrNotAvailable) || Date.now() >= deadline) return false;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
