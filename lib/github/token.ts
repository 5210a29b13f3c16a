/**
 * The one GitHub login on the host that every workspace's broker uses (`cal-gh auth login` with
 * no workspace). The guest never holds it.
 *
 * Where it is kept, looked up in this order:
 * - macOS: the login Keychain (service `cal-github`, account = the host).
 * - Linux: `$CAL_HOME/github/tokens/<host>`, a 0600 file in a 0700 folder (written atomically,
 *   never through a link).
 * - Either: the host's own gh (`gh auth token --hostname <host>`), when nothing above has one.
 */

import { join } from "node:path";
import { calHome } from "../paths.ts";
import { hasKeychain, keychainGet, keychainSet } from "../keychain.ts";
import { run } from "../process.ts";

export const KEYCHAIN_SERVICE = "cal-github";

const HOST = /^[A-Za-z0-9][A-Za-z0-9.-]*(?::\d+)?$/;

function checkHost(host: string): string {
  if (!HOST.test(host) || host.includes("..")) throw new Error(`not a host name: ${host}`);
  return host;
}

export const tokenDir = () => join(calHome(), "github", "tokens");
export const tokenFile = (host: string) => join(tokenDir(), checkHost(host));

/** Where a stored token lives, for messages ("the Keychain", a file, the host's gh). */
export type TokenSource = "keychain" | "file" | "host-gh";

export async function hostToken(
  host: string,
): Promise<{ token: string; source: TokenSource } | undefined> {
  if (hasKeychain()) {
    const t = await keychainGet(KEYCHAIN_SERVICE, host);
    if (t) return { token: t, source: "keychain" };
  } else {
    try {
      const f = tokenFile(host);
      const st = await Deno.lstat(f);
      if (st.isFile) {
        const t = (await Deno.readTextFile(f)).trim();
        if (t) return { token: t, source: "file" };
      }
    } catch { /* none */ }
  }
  // The host's own gh, if it is logged in there (GH_PROMPT_DISABLED: never ask).
  const r = await run("gh", ["auth", "token", "--hostname", host], {
    env: { GH_PROMPT_DISABLED: "1" },
  }).catch(() => undefined);
  const t = r?.code === 0 ? r.stdout.trim() : "";
  return t && /^[\x21-\x7e]+$/.test(t) ? { token: t, source: "host-gh" } : undefined;
}

/** Keeps the host's token: the Keychain on macOS, else the 0600 file. */
export async function saveHostToken(host: string, token: string): Promise<TokenSource> {
  if (hasKeychain()) {
    await keychainSet(KEYCHAIN_SERVICE, host, token);
    return "keychain";
  }
  const dir = tokenDir();
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  const f = tokenFile(host);
  const tmp = `${f}.${crypto.randomUUID()}.tmp`;
  // createNew: never write through something already there (a link).
  const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    await file.write(new TextEncoder().encode(token + "\n"));
  } finally {
    file.close();
  }
  await Deno.rename(tmp, f);
  return "file";
}

/** Forgets the stored token (the file; the Keychain entry on macOS). True when one was there. */
export async function removeHostToken(host: string): Promise<boolean> {
  if (hasKeychain()) {
    const r = await run("security", [
      "delete-generic-password",
      "-s",
      KEYCHAIN_SERVICE,
      "-a",
      host,
    ]).catch(() => undefined);
    return r?.code === 0;
  }
  return await Deno.remove(tokenFile(host)).then(() => true, () => false);
}
