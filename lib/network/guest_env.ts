/**
 * A Tart guest's way out, written into the guest over SSH once it is up: cal's proxy runs at the
 * vmnet gateway (vmnet.ts; Softnet lets the VM reach that address only, see providers/tart.ts),
 * and the guest learns it from one cal-owned file, `~/.cal-env/network`, which
 *
 * - cal's own commands source (the preamble in guest/ssh.ts),
 * - every zsh (`~/.zshenv`) and sh/bash login shell (`~/.profile`) sources,
 * - launchd jobs get through `launchctl setenv` (macOS; the fake tart has no launchctl),
 *
 * plus the host's CA files (NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, …), copied into
 * `~/.cal-env/ca-N.pem`, so clients trust what the host trusts (TLS inspection), and the
 * proxy's own trust bundle (`~/.cal-env/proxy-ca.pem`) for agents whose keys it swaps.
 *
 * Everything here is the guest's: it may change or delete it, which only changes its own reach
 * through the proxy, never the policy. The proxy's token keeps other machines on the vmnet
 * network out; it goes to the guest on stdin, never in an argv.
 *
 * The sandbox needs none of this: its sshd hands every session the variables (guest/sandbox.ts).
 */

import { loadConfig } from "../config.ts";
import { CalError, ExitCode } from "../errors.ts";
import { Guest } from "../guest/ssh.ts";
import { proxyEnvironment } from "../guest/sandbox.ts";
import { reason } from "../process.ts";
import type { Provider } from "../provider.ts";
import { quote } from "../shell.ts";
import { join } from "node:path";
import { paths } from "../paths.ts";
import { BUNDLE_NAME } from "./ca.ts";
import { ensureProxy } from "./daemon.ts";
import { loadPolicy } from "./settings.ts";
import { vmnetGateway, waitBindable } from "./vmnet.ts";

export const NETWORK_FILE = ".cal-env/network";
/**
 * The proxy's trust bundle (its workspace CA, then the host's roots; network/ca.ts), copied for
 * an agent whose keys the proxy swaps: no variable points at it, the agent's hand-off does.
 */
export const PROXY_BUNDLE_FILE = ".cal-env/proxy-ca.pem";

/** The variables cal sets (and unsets again when the network is opened). */
const PROXY_VARIABLES = Object.keys(proxyEnvironment("http://x"));

/** Host variables naming a CA bundle file that clients in the guest read the same way. */
const CA_FILE_VARIABLES = [
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "CURL_CA_BUNDLE",
  "GIT_SSL_CAINFO",
  "REQUESTS_CA_BUNDLE",
  "PIP_CERT",
];
const CA_MAX_BYTES = 8 * 1024 * 1024;

/** The host's CA files by variable: each distinct file once, in order. */
export function hostCaFiles(): { vars: Record<string, number>; files: string[] } {
  const files: string[] = [];
  const vars: Record<string, number> = {};
  for (const k of CA_FILE_VARIABLES) {
    const v = Deno.env.get(k);
    if (!v) continue;
    try {
      const st = Deno.statSync(v);
      if (!st.isFile || st.size > CA_MAX_BYTES) continue;
    } catch {
      continue;
    }
    if (!files.includes(v)) files.push(v);
    vars[k] = files.indexOf(v);
  }
  return { vars, files };
}

/** The file's text: `export` lines, single-quoted (no value can expand anything). */
export function renderNetworkFile(env: Record<string, string>, note: string): string {
  return [
    "# Written by cal at each start of this workspace; changes here are lost.",
    `# ${note}`,
    ...Object.entries(env).map(([k, v]) => `export ${k}=${quote(v)}`),
  ].join("\n") + "\n";
}

const HOOK = `[ -r "$HOME/${NETWORK_FILE}" ] && . "$HOME/${NETWORK_FILE}" # cal: the network`;

/** Shell text that hooks the file into zsh and login shells and hands it to launchd. */
function applyScript(set: boolean): string {
  const vars = PROXY_VARIABLES.concat(CA_FILE_VARIABLES).join(" ");
  return [
    `for rc in "$HOME/.zshenv" "$HOME/.profile"; do`,
    `  grep -qsF ${quote(HOOK)} "$rc" || printf '%s\\n' ${quote(HOOK)} >> "$rc" || exit 1`,
    "done",
    "if command -v launchctl >/dev/null 2>&1; then",
    `  for k in ${vars}; do launchctl unsetenv "$k" 2>/dev/null; done`,
    ...(set
      ? [
        `  . "$HOME/${NETWORK_FILE}"`,
        `  for k in ${vars}; do eval "v=\\\${$k-}"; [ -n "$v" ] && launchctl setenv "$k" "$v"; done`,
      ]
      : []),
    "fi",
    "exit 0",
  ].join("\n");
}

async function write(g: Guest, rel: string, content: string, mode: "600" | "644") {
  const r = await g.sh(
    `umask 077; mkdir -p "$HOME"/.cal-env && cat > "$HOME"/${quote(rel)}.tmp && ` +
      `chmod ${mode} "$HOME"/${quote(rel)}.tmp && mv -f "$HOME"/${quote(rel)}.tmp "$HOME"/${
        quote(rel)
      }`,
    { stdin: content, timeoutMs: 60_000 },
  );
  if (r.code !== 0) {
    throw new CalError(`Could not write ~/${rel} in "${g.workspace}": ${reason(r)}`, {
      workspace: g.workspace,
      hint:
        `The VM is running; look at it with \`cal-vm ssh ${g.workspace}\`, then start it again.`,
    });
  }
}

/**
 * After a start, once SSH works: on Tart, runs the workspace's proxy at the vmnet gateway
 * (allowlist and none) and tells the guest where it is, or clears what an earlier start set
 * (open). Other providers: nothing to do.
 */
export async function networkReady(
  name: string,
  provider: Provider,
  machine: string,
  user: string,
): Promise<void> {
  if (provider.name !== "tart") return;
  const { mode } = await loadPolicy(name);
  const ep = await provider.endpoint(machine);
  if (!ep) return; // stopped again already: the next start does this
  const g = new Guest(name, ep, user);
  if (mode === "open") {
    await write(g, NETWORK_FILE, renderNetworkFile({}, "The network is open: no proxy."), "644");
    await g.sh(applyScript(false), { timeoutMs: 60_000 });
    return;
  }
  const gateway = await vmnetGateway();
  if (!(await waitBindable(gateway, 30_000))) {
    throw new CalError(
      `cal's proxy for "${name}" cannot listen at ${gateway}: it is no address of this host.`,
      {
        code: "failed",
        exit: ExitCode.failed,
        workspace: name,
        hint: "The VM's network (vmnet's bridge) should carry it once the VM runs; check " +
          "`ifconfig bridge100` and Shared_Net_Address in the vmnet settings, or set " +
          "CAL_TART_GATEWAY to the gateway your VMs use. The VM is running: " +
          `\`cal-vm stop ${name}\`.`,
      },
    );
  }
  const proxy = await ensureProxy(name, { tcp: { host: gateway, port: 0 } }, { token: true });
  const url = `http://srt:${proxy.token}@${gateway}:${proxy.tcp!.port}`;
  // NO_PROXY as the config says (what the guest reaches directly: its own services).
  const env = proxyEnvironment(url, (await loadConfig()).network.no_proxy);
  const bundle = await Deno.readTextFile(join(paths.vmDir(name), "net", BUNDLE_NAME))
    .catch(() => "");
  if (bundle) await write(g, PROXY_BUNDLE_FILE, bundle, "644");
  const ca = hostCaFiles();
  for (const [i, file] of ca.files.entries()) {
    await write(g, `.cal-env/ca-${i}.pem`, await Deno.readTextFile(file), "644");
  }
  for (const [k, i] of Object.entries(ca.vars)) env[k] = `${await g.home()}/.cal-env/ca-${i}.pem`;
  await write(
    g,
    NETWORK_FILE,
    renderNetworkFile(env, `The way out is cal's proxy (${mode}); only the policy decides.`),
    "600",
  );
  const r = await g.sh(applyScript(true), { timeoutMs: 60_000 });
  if (r.code !== 0) {
    throw new CalError(
      `Could not hook ~/${NETWORK_FILE} into the shells of "${name}": ${reason(r)}`,
      { workspace: name },
    );
  }
}
