/**
 * GitHub authentication: the host's one login (no workspace named), which every workspace's
 * broker uses while the guest holds no token (see token.ts for where it is kept), or a login
 * inside one workspace, for people who want gh itself in the guest (the agent can then read that
 * token).
 *
 * Inside a workspace, a token reaches `gh auth login --with-token` through SSH's stdin: never an
 * argument, never a plain-text file on the host. `--keychain` on macOS keeps it in the login
 * Keychain (written through `security -i`'s stdin, so not in argv either), the same entry the
 * host's login uses.
 */

import type { Config } from "../config.ts";
import { CalError, ExitCode, usageError } from "../errors.ts";
import type { Output } from "../output.ts";
import { keychainGet, keychainSet } from "../keychain.ts";
import type { AuthRecord } from "../records.ts";
import { quoteArgs } from "../shell.ts";
import { updateVm } from "../store.ts";
import { connect, load } from "../workspace.ts";
import { gh, ghError } from "./gh.ts";
import { hostToken, KEYCHAIN_SERVICE, removeHostToken, saveHostToken, tokenFile } from "./token.ts";
import { viewer } from "./api.ts";
import { forgetBroker } from "./repos.ts";

export { KEYCHAIN_SERVICE };

/** The host gh should use: the flag, then config; undefined leaves gh's default alone. */
export function hostOf(config: Config, flag?: string): string | undefined {
  return flag ?? config.github.host;
}

const keychainToken = (host: string) => keychainGet(KEYCHAIN_SERVICE, host);
const keychainStore = (host: string, token: string) => keychainSet(KEYCHAIN_SERVICE, host, token);

export interface LoginOptions {
  /** The token, read by the command from its stdin. */
  token?: string;
  keychain?: boolean;
  hostname?: string;
}

export async function login(
  name: string,
  opts: LoginOptions,
  config: Config,
  out: Output,
): Promise<AuthRecord> {
  const w = await load(name);
  const host = hostOf(config, opts.hostname);
  if (opts.keychain && Deno.build.os !== "darwin") {
    throw usageError(
      "--keychain needs macOS's Keychain.",
      "Pipe the token with --token-stdin instead.",
    );
  }
  let token = opts.token;
  const account = host ?? "github.com";
  if (!token && opts.keychain) {
    token = await keychainToken(account);
    if (!token) {
      throw usageError(
        `No token for ${account} in the Keychain yet.`,
        `Store one once: \`cal-gh auth login ${name} --keychain --token-stdin < token.txt\`.`,
      );
    }
  }
  out.warn(
    `gh in "${name}" will hold the token: the agent there can read it and use it for anything ` +
      "the token may do. Without this login, the workspace uses the host's login through cal's " +
      "broker, which allows pushes to the workspace's own branches only.",
    name,
  );
  const guest = await connect(w);
  const hostArgs = host ? ["--hostname", host] : [];
  if (token) {
    const r = await gh(guest, ["auth", "login", ...hostArgs, "--with-token"], {
      host,
      stdin: token + "\n",
    });
    if (r.code !== 0) throw ghError("gh auth login", r, name);
    if (opts.keychain && opts.token) await keychainStore(account, token);
  } else {
    // Interactive: gh's own flow (browser or device code) on the user's terminal.
    if (!Deno.stdin.isTerminal()) {
      throw usageError(
        "An interactive login needs a terminal.",
        "Pipe a token instead: --token-stdin < token.txt.",
      );
    }
    const argv = ["env", ...(host ? [`GH_HOST=${host}`] : []), "gh", "auth", "login", ...hostArgs];
    const code = await guest.interactive(quoteArgs(argv));
    if (code !== 0) throw new CalError(`gh auth login exited with ${code}.`, { workspace: name });
  }
  const setup = await gh(guest, ["auth", "setup-git", ...hostArgs], { host });
  if (setup.code !== 0) throw ghError("gh auth setup-git", setup, name);
  // Its git uses this login from now on, not cal's broker.
  await forgetBroker(guest);
  await updateVm(name, (vm) => {
    vm.github = { ...vm.github, authenticated: true, ...(host ? { host } : {}) };
  });
  out.event("auth", `Logged in to ${account} in "${name}"; git pushes use gh's credentials.`, {
    workspace: name,
  });
  return await status(name, config, opts.hostname);
}

export async function status(name: string, config: Config, hostname?: string): Promise<AuthRecord> {
  const w = await load(name);
  if (!w.vm.github?.authenticated) {
    // No login of its own: the workspace uses the host's, through cal's broker.
    const h = await hostStatus(config, hostname ?? w.vm.github?.host);
    return {
      ...h,
      workspace: name,
      detail: h.logged_in
        ? `${h.detail} "${name}" uses it through cal's broker (the guest holds no token).`
        : `No login: neither the host's (\`cal-gh auth login --token-stdin\`) nor "${name}"'s own.`,
    };
  }
  const host = hostOf(config, hostname) ?? w.vm.github?.host;
  const guest = await connect(w);
  const r = await gh(guest, ["auth", "status", ...(host ? ["--hostname", host] : [])], { host });
  const text = (r.stderr + r.stdout).trim();
  const user = /Logged in to \S+ (?:account|as) (\S+)/.exec(text)?.[1];
  return {
    kind: "auth",
    workspace: name,
    host: host ?? /Logged in to (\S+)/.exec(text)?.[1] ?? "github.com",
    logged_in: r.code === 0,
    ...(user ? { user } : {}),
    detail: text,
  };
}

export async function logout(name: string, config: Config, hostname?: string): Promise<AuthRecord> {
  const w = await load(name);
  const host = hostOf(config, hostname) ?? w.vm.github?.host ?? "github.com";
  const guest = await connect(w);
  const r = await gh(guest, ["auth", "logout", "--hostname", host], { host, stdin: "y\n" });
  if (r.code !== 0 && !/not logged in/i.test(r.stderr + r.stdout)) {
    throw ghError("gh auth logout", r, name);
  }
  await updateVm(name, (vm) => {
    vm.github = { ...vm.github, authenticated: false };
  });
  return { kind: "auth", workspace: name, host, logged_in: false };
}

const where = (source: string, host: string) =>
  source === "keychain"
    ? "the login Keychain"
    : source === "file"
    ? tokenFile(host)
    : "the host's own gh (`gh auth token`)";

/**
 * The host's login: a token from stdin is checked against the API, then kept (the Keychain on
 * macOS, else a 0600 file); without one, the host's own gh must already be logged in.
 */
export async function hostLogin(
  opts: { token?: string; hostname?: string },
  config: Config,
  out: Output,
): Promise<AuthRecord> {
  const host = hostOf(config, opts.hostname) ?? "github.com";
  if (opts.token) {
    const v = await viewer(host, "", opts.token);
    if (!v) {
      throw new CalError(`${host} did not accept the token (GET /user failed).`, {
        code: "auth-failed",
        hint: "Check the token and the host (--hostname), then run the command again.",
      });
    }
    const source = await saveHostToken(host, opts.token);
    out.event("auth", `Logged in to ${host} as ${v.login} on the host (${where(source, host)}).`);
    return { kind: "auth", workspace: "", host, logged_in: true, user: v.login, detail: source };
  }
  const t = await hostToken(host);
  if (!t) {
    throw usageError(
      `No login for ${host} on this host yet.`,
      `Pipe a token: \`gh auth token | cal-gh auth login --token-stdin --hostname ${host}\`.`,
    );
  }
  return await hostStatus(config, opts.hostname);
}

export async function hostStatus(config: Config, hostname?: string): Promise<AuthRecord> {
  const host = hostOf(config, hostname) ?? "github.com";
  const t = await hostToken(host);
  if (!t) return { kind: "auth", workspace: "", host, logged_in: false, detail: "no login" };
  const v = await viewer(host, "", t.token);
  return {
    kind: "auth",
    workspace: "",
    host,
    logged_in: !!v,
    ...(v ? { user: v.login } : {}),
    detail: `${v ? `Logged in to ${host} as ${v.login}` : `${host} refused the token`}, from ${
      where(t.source, host)
    }.`,
  };
}

export async function hostLogout(config: Config, hostname?: string): Promise<AuthRecord> {
  const host = hostOf(config, hostname) ?? "github.com";
  await removeHostToken(host);
  // The host's own gh still answers: say so rather than claim a logout.
  const still = await hostToken(host);
  if (still) {
    throw new CalError(
      `cal forgot its login for ${host}, but ${where(still.source, host)} still has one.`,
      {
        code: "wrong-state",
        exit: ExitCode.wrongState,
        hint:
          `Log that out too (\`gh auth logout --hostname ${host}\`) if the broker should stop using it.`,
      },
    );
  }
  return { kind: "auth", workspace: "", host, logged_in: false };
}
