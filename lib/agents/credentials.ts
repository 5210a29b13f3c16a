/**
 * Credentials for agents: looked up on the host (its environment, then on macOS the login
 * Keychain, item service "cal", account = the variable's name), and kept there: the agent gets
 * a per-session stand-in in its environment (through launch.ts's FIFO) and the workspace's
 * proxy swaps it for the real value toward the credential's own API hosts only
 * (network/credentials.ts). Only `--pass-key` puts the real value into the guest. Never an
 * argument, never a plain-text file on the host.
 */

import { CalError, ExitCode } from "../errors.ts";
import { MAC_ADMIN, PROXY } from "../guest/sandbox.ts";
import { keychainGet } from "../keychain.ts";
import { BUNDLE_NAME } from "../network/ca.ts";
import { controlSocket, openSession } from "../network/credentials.ts";
import { runningProxy } from "../network/daemon.ts";
import { PROXY_BUNDLE_FILE } from "../network/guest_env.ts";
import { paths } from "../paths.ts";
import type { AgentPlugin } from "./plugin.ts";

export const KEYCHAIN_SERVICE = "cal";

const fromKeychain = (name: string) => keychainGet(KEYCHAIN_SERVICE, name);

/** Where cal looks, for the error message. */
export function lookedIn(): string {
  return Deno.build.os === "darwin"
    ? `the environment and the login Keychain (service "${KEYCHAIN_SERVICE}")`
    : "the environment";
}

/**
 * The first credential alternative the host can satisfy, as name → value. Missing → exit 2,
 * naming the variables and where cal looked, before anything starts.
 */
export async function resolveCredentials(plugin: AgentPlugin): Promise<Record<string, string>> {
  for (const alternative of plugin.credentials) {
    const found: Record<string, string> = {};
    for (const name of alternative) {
      const v = Deno.env.get(name) || await fromKeychain(name);
      if (v) found[name] = v;
    }
    if (Object.keys(found).length === alternative.length) return found;
  }
  const names = plugin.credentials.map((a) => a.join(" + ")).join(" or ");
  const first = plugin.credentials[0]?.[0] ?? "THE_KEY";
  throw new CalError(`${plugin.displayName} needs ${names}; cal looked in ${lookedIn()}.`, {
    code: "usage",
    exit: ExitCode.usage,
    hint: Deno.build.os === "darwin"
      ? `Export it in your shell, or store it once: \`security add-generic-password -s ${KEYCHAIN_SERVICE} -a ${first} -w\`.`
      : `Export it in the shell that runs cal (e.g. \`read -rs ${first} && export ${first}\`).`,
  });
}

/** What the agent's launch gets: the values for its environment, and the session to close. */
export interface HandOff {
  /** name → value given to the agent (stand-ins, or the real keys with --pass-key). */
  secrets: Record<string, string>;
  /** Non-secret variables (the trust bundle's path). */
  env: Record<string, string>;
  /** "swapped": stand-ins, the real keys stay on the host; "passed": the real keys went in. */
  mode: "swapped" | "passed";
  /** Ends the session: its stand-ins are worthless from then on. */
  close(): void;
}

/** Where a provider's guest sees the proxy's trust bundle, when its agent goes through the proxy. */
function guestBundle(provider: string): string | undefined {
  // The sandbox sees `<vmDir>/net` read-only at /run/cal-net (lib/guest/sandbox.ts, PROXY.dir);
  // a Tart VM gets a copy in its admin's home at each start (network/guest_env.ts).
  if (provider === "sandbox") return `${PROXY.dir}/${BUNDLE_NAME}`;
  if (provider === "tart") return `${MAC_ADMIN.home}/${PROXY_BUNDLE_FILE}`;
  return undefined;
}

/**
 * Why `plugin`'s keys cannot stay on the host in workspace `name` (undefined when they can):
 * the plugin does not say how its keys travel, or the workspace's agent does not go through a
 * cal proxy that can swap them.
 */
export function cannotSwap(
  name: string,
  provider: string,
  plugin: AgentPlugin,
  names: string[],
): string | undefined {
  const unrouted = names.filter((n) => !plugin.keyRoutes?.[n]);
  if (unrouted.length) {
    return plugin.keyRoutesMissing ??
      `${plugin.displayName} does not say how ${unrouted.join(", ")} reaches its API`;
  }
  if (!guestBundle(provider)) {
    return `the ${provider} provider does not send agents through cal's proxy yet`;
  }
  const proxy = runningProxy(name);
  if (!(proxy?.socketPath || proxy?.tcp) || !exists(controlSocket(paths.vmDir(name)))) {
    return `the workspace's network does not go through cal's proxy (its mode is open, or the proxy is not running)`;
  }
  return undefined;
}

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Hands the credentials to a run: by default stand-ins, with the real values held by the
 * workspace's proxy for this session only; with `passKey`, the real values (warned about). A
 * run that cannot keep its keys on the host stops here (exit 2) unless `passKey`.
 */
export async function handOff(
  name: string,
  provider: string,
  plugin: AgentPlugin,
  real: Record<string, string>,
  opts: { passKey?: boolean; warn: (message: string) => void },
): Promise<HandOff> {
  const names = Object.keys(real);
  const why = cannotSwap(name, provider, plugin, names);
  if (opts.passKey) {
    opts.warn(
      `--pass-key: the real ${names.join(", ")} goes into "${name}"; the agent can read it and ` +
        "send it anywhere its network allows.",
    );
    return { secrets: real, env: {}, mode: "passed", close() {} };
  }
  if (why) {
    throw new CalError(`${plugin.displayName}'s key cannot stay on the host here: ${why}.`, {
      code: "usage",
      exit: ExitCode.usage,
      workspace: name,
      hint: "Pass --pass-key to put the real key into the guest (the agent can then read it), " +
        `or let cal's proxy swap it: network mode allowlist (\`cal-vm net mode ${name} allowlist\`, then restart).`,
    });
  }
  const session = await openSession(
    controlSocket(paths.vmDir(name)),
    names.map((n) => ({ name: n, value: real[n], ...plugin.keyRoutes![n] })),
  ).catch((e) => {
    throw new CalError(`Could not open a key session with the proxy of "${name}": ${e.message}.`, {
      workspace: name,
      hint:
        `Restart the workspace (\`cal-vm stop ${name} && cal-vm start ${name}\`) and try again.`,
    });
  });
  const bundle = guestBundle(provider)!;
  const env = Object.fromEntries(
    (plugin.trustEnv ?? ["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"]).map((k) => [k, bundle]),
  );
  return { secrets: session.standIns, env, mode: "swapped", close: () => session.close() };
}
