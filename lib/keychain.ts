/**
 * The macOS login Keychain, for the secrets a user chooses to keep there (agent credentials,
 * GitHub tokens). Reads use `security find-generic-password -w`; writes go through
 * `security -i`, whose command arrives on stdin, so a secret is never in an argument list.
 * Elsewhere there is no Keychain: reads find nothing and writes are refused by the callers.
 */

import { CalError } from "./errors.ts";
import { run } from "./process.ts";

export const hasKeychain = () => Deno.build.os === "darwin";

export async function keychainGet(service: string, account: string): Promise<string | undefined> {
  if (!hasKeychain()) return undefined;
  const r = await run("security", ["find-generic-password", "-s", service, "-a", account, "-w"])
    .catch(() => undefined);
  return r && r.code === 0 ? r.stdout.replace(/\n$/, "") : undefined;
}

export async function keychainSet(service: string, account: string, secret: string): Promise<void> {
  const q = (s: string) => `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
  const cmd = `add-generic-password -U -s ${q(service)} -a ${q(account)} -w ${q(secret)}\n`;
  const r = await run("security", ["-i"], { stdin: cmd });
  if (r.code !== 0) {
    throw new CalError(`Could not store the secret in the Keychain: ${r.stderr.trim()}`);
  }
}
