/**
 * Credentials for agents: looked up on the host (its environment, then on macOS the login
 * Keychain, item service "cal", account = the variable's name) and handed to the remote process
 * as environment (see guest/secrets.ts). Never an argument, never a plain-text file on the host.
 */

import { CalError, ExitCode } from "../errors.ts";
import { keychainGet } from "../keychain.ts";
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
