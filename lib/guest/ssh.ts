/**
 * Talking to a guest over the system's OpenSSH.
 *
 * One ControlMaster per workspace (one handshake per session), a per-workspace key and
 * known_hosts under the workspace's folder, `BatchMode` for non-interactive work. The image's
 * password is used once, through `SSH_ASKPASS` reading it from the environment (never argv), to
 * install the workspace key; key-only after that. Remote commands are built from argument arrays
 * and quoted by `shell.ts`, behind a preamble that sets PATH (never by sourcing rc files).
 */

import { join } from "node:path";
import { CalError, ExitCode } from "../errors.ts";
import { calHome, paths } from "../paths.ts";
import { run, type RunResult } from "../process.ts";
import type { Endpoint } from "../provider.ts";
import { quoteArgs } from "../shell.ts";
import { writeFileAtomic } from "../store.ts";
import { safeText } from "../terminal.ts";

const SSH_HINT = "Install OpenSSH's client (`apt-get install openssh-client`; macOS ships it).";

/**
 * Prepended to every non-interactive remote command: Homebrew's paths (macOS guests do not read
 * profiles for `ssh host cmd`) and the environments' env file that cal writes.
 */
export const PREAMBLE =
  'export PATH="/opt/homebrew/bin:/opt/homebrew/sbin:/usr/local/bin:$HOME/.local/bin:' +
  '$HOME/.cargo/bin:$HOME/go/bin:$PATH"; ' +
  '[ -r "$HOME/.cal-env/env" ] && . "$HOME/.cal-env/env"; ' +
  '[ -r "$HOME/.cal-env/network" ] && . "$HOME/.cal-env/network"; ';

/** ssh's own failures (exit 255), as opposed to a remote command's exit code. */
const SSH_FAILURE =
  /^(ssh: |kex_exchange_identification|Connection (refused|closed|timed out|reset)|(\S+: )?Permission denied \(|Host key verification failed|.*port \d+: (Connection refused|Operation timed out|No route))/m;

/**
 * ssh's failures on this host, before or after any guest had a say: the same on every try, so a
 * wait for the guest ends at once.
 */
const LOCAL_FAILURE =
  /too long for Unix domain socket|ControlPath too long|Bad configuration option|bad configuration options|no argument after keyword|Unsupported option|Bad owner or permissions on|Could not create directory|Too many arguments|keyword \S+ extra arguments/i;

export interface ExecOptions {
  /** Text for the remote command's stdin (how secrets reach the guest). */
  stdin?: string;
  timeoutMs?: number;
  onLine?: (line: string) => void;
}

export class Guest {
  readonly dir: string;
  readonly alias: string;

  constructor(readonly workspace: string, readonly endpoint: Endpoint, readonly user: string) {
    this.dir = join(paths.vmDir(workspace), "ssh");
    this.alias = `cal-${workspace}`;
  }

  get keyFile(): string {
    return join(this.dir, "id_ed25519");
  }
  get configFile(): string {
    return join(this.dir, "config");
  }

  /** Creates the workspace key (once) and writes the ssh config for the current endpoint. */
  async prepare(): Promise<void> {
    await Deno.mkdir(this.dir, { recursive: true, mode: 0o700 });
    try {
      await Deno.stat(this.keyFile);
    } catch {
      const r = await run(
        "ssh-keygen",
        ["-q", "-t", "ed25519", "-N", "", "-C", this.alias, "-f", this.keyFile],
        { installHint: SSH_HINT },
      );
      if (r.code !== 0) throw new CalError(`Could not create the workspace's SSH key: ${r.stderr}`);
    }
    const q = (s: string) => `"${s}"`;
    const lines = [
      `Host ${this.alias}`,
      `  HostName ${this.endpoint.host}`,
      `  Port ${this.endpoint.port}`,
      `  User ${this.user}`,
      ...(this.endpoint.proxyCommand
        ? [`  ProxyCommand ${quoteArgs(this.endpoint.proxyCommand)}`]
        : []),
      `  IdentityFile ${q(this.keyFile)}`,
      `  IdentitiesOnly yes`,
      `  UserKnownHostsFile ${q(join(this.dir, "known_hosts"))}`,
      // Pin the host key to the workspace, not to an IP that changes between boots.
      `  HostKeyAlias ${this.alias}`,
      `  StrictHostKeyChecking accept-new`,
      `  ControlMaster auto`,
      `  ControlPath ${q(join(await controlDir(), "%C"))}`,
      `  ControlPersist 120`,
      `  BatchMode yes`,
      `  ConnectTimeout 5`,
      `  ServerAliveInterval 15`,
      `  ServerAliveCountMax 4`,
      `  LogLevel ERROR`,
    ];
    // Second line of defence (vm.yaml's rules are the first): a value with a newline or another
    // control character would be a config line of its own (a ProxyCommand, say), so none passes.
    // deno-lint-ignore no-control-regex
    const bad = lines.find((l) => /[\x00-\x1f\x7f]/.test(l));
    if (bad !== undefined) {
      throw new CalError(
        `cal refused to write an ssh config for "${this.workspace}": a value holds a newline or ` +
          `control character (${safeText(bad.trim().slice(0, 80))}).`,
        {
          code: "invalid-config",
          exit: ExitCode.usage,
          hint: `Check the user and addresses in ${paths.vmFile(this.workspace)}; nothing was run.`,
          workspace: this.workspace,
        },
      );
    }
    const config = lines.join("\n") + "\n";
    const current = await Deno.readTextFile(this.configFile).catch(() => "");
    if (current !== config) await writeFileAtomic(this.configFile, config, 0o600);
  }

  private base(): string[] {
    return ["-F", this.configFile];
  }

  /** Runs an argument vector in the guest (no shell interpretation of its words). */
  exec(argv: string[], opts: ExecOptions = {}): Promise<RunResult> {
    return this.sh(quoteArgs(argv), opts);
  }

  /** Runs a shell command line in the guest, behind the PATH preamble. */
  async sh(command: string, opts: ExecOptions = {}): Promise<RunResult> {
    const r = await run("ssh", [...this.base(), this.alias, PREAMBLE + command], {
      stdin: opts.stdin,
      timeoutMs: opts.timeoutMs,
      installHint: SSH_HINT,
      onLine: opts.onLine,
    });
    if (r.code === 255 && SSH_FAILURE.test(r.stderr)) throw this.sshError(r.stderr);
    return r;
  }

  /**
   * Runs with the terminal passed straight through (`ssh -t` when stdin is a terminal), for
   * interactive shells and commands; returns the remote exit code. `raw` is a complete remote
   * command line that already carries the preamble.
   */
  async interactive(command?: string, raw?: string): Promise<number> {
    const tty = Deno.stdin.isTerminal();
    const args = [...this.base(), "-q", tty ? "-t" : "-T", this.alias];
    if (raw !== undefined) args.push(raw);
    else if (command !== undefined) args.push(PREAMBLE + command);
    // The child gets Ctrl-C itself; cal must outlive it to pass its exit code on.
    const ignore = () => {};
    Deno.addSignalListener("SIGINT", ignore);
    try {
      const child = new Deno.Command("ssh", {
        args,
        stdin: "inherit",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn();
      return (await child.status).code;
    } finally {
      Deno.removeSignalListener("SIGINT", ignore);
    }
  }

  private homeDir?: string;

  /** The guest user's home folder (asked once). */
  async home(): Promise<string> {
    if (this.homeDir) return this.homeDir;
    const r = await this.sh('printf %s "$HOME"');
    if (r.code !== 0 || !r.stdout.startsWith("/")) {
      throw new CalError(`Could not read the guest's home folder: ${r.stderr.trim()}`);
    }
    return (this.homeDir = r.stdout);
  }

  /** A real login with the workspace key: `true` when it works. */
  async probe(
    timeoutSeconds = 5,
  ): Promise<{ ok: boolean; reason: string; local: boolean }> {
    const r = await run(
      "ssh",
      [...this.base(), "-o", `ConnectTimeout=${timeoutSeconds}`, this.alias, "true"],
      { timeoutMs: (timeoutSeconds + 5) * 1000, installHint: SSH_HINT },
    );
    return {
      ok: r.code === 0,
      reason: r.timedOut ? "timed out" : r.stderr.trim(),
      // Waiting cannot help: this ssh fails the same way on every try, whatever the guest does.
      local: r.code === 255 && LOCAL_FAILURE.test(r.stderr),
    };
  }

  /**
   * Installs the workspace key with the image's password, once. The password reaches ssh through
   * SSH_ASKPASS from this process's environment, never through argv or a file.
   */
  async installKey(password: string): Promise<void> {
    const askpass = join(this.dir, "askpass");
    await writeFileAtomic(askpass, '#!/bin/sh\nprintf "%s\\n" "$CAL_SSH_PASSWORD"\n', 0o700);
    const pub = (await Deno.readTextFile(this.keyFile + ".pub")).trim();
    // Also repairs permissions: sshd's StrictModes ignores keys in a writable file or folder.
    const script = "umask 077; mkdir -p ~/.ssh && chmod 700 ~/.ssh && k=$(cat) && " +
      '{ grep -qxF "$k" ~/.ssh/authorized_keys 2>/dev/null || ' +
      'printf "%s\\n" "$k" >> ~/.ssh/authorized_keys; } && chmod 600 ~/.ssh/authorized_keys';
    const r = await run("ssh", [
      ...this.base(),
      "-o",
      "BatchMode=no",
      "-o",
      "PubkeyAuthentication=no",
      "-o",
      "PreferredAuthentications=password,keyboard-interactive",
      "-o",
      "NumberOfPasswordPrompts=1",
      "-o",
      "ControlPath=none",
      this.alias,
      script,
    ], {
      stdin: pub + "\n",
      env: {
        SSH_ASKPASS: askpass,
        SSH_ASKPASS_REQUIRE: "force",
        DISPLAY: Deno.env.get("DISPLAY") ?? ":0",
        CAL_SSH_PASSWORD: password,
      },
      timeoutMs: 30_000,
      installHint: SSH_HINT,
    });
    if (r.code !== 0) {
      if (/Permission denied/.test(r.stderr)) {
        throw new CalError(
          `The guest refused the password for "${this.user}" while cal installed its key.`,
          {
            code: "ssh-failed",
            hint: "Set the image's login in ~/.cal/config.yaml (isolation.defaults.vm.user and " +
              "password), then run `cal-vm start " + this.workspace + "` again.",
            workspace: this.workspace,
          },
        );
      }
      throw this.sshError(r.stderr);
    }
  }

  /** Closes the ControlMaster, if one is running. */
  async close(): Promise<void> {
    await run("ssh", [...this.base(), "-O", "exit", this.alias]).catch(() => {});
  }

  sshError(stderr: string): CalError {
    const lines = stderr.trim().split("\n").filter(Boolean);
    const said = safeText(
      lines.find((l) => LOCAL_FAILURE.test(l)) ?? lines.pop() ?? "no message",
    );
    let hint = `Check that the workspace is running: \`cal-vm status ${this.workspace}\`.`;
    if (/Unix domain socket|ControlPath too long/.test(said)) {
      hint = "The path of cal's folder (CAL_HOME) is too long for ssh's control socket: set " +
        "CAL_HOME to a shorter path.";
    } else if (LOCAL_FAILURE.test(said)) {
      hint = `ssh on this host refused its settings (${this.configFile}): this is a bug in cal ` +
        "unless that file was edited; `cal-vm start` writes it again.";
    } else if (/Permission denied/.test(said)) {
      hint = "The guest refused the workspace's key. Restart the workspace (`cal-vm stop " +
        `${this.workspace} && cal-vm start ${this.workspace}\`): start re-installs the key ` +
        "with the image's password.";
    } else if (/Host key verification failed/.test(said)) {
      hint = `The guest's host key changed. If you expected that, remove ${
        join(this.dir, "known_hosts")
      } and retry.`;
    }
    return new CalError(`SSH to workspace "${this.workspace}" failed: ${said}`, {
      code: "ssh-failed",
      exit: ExitCode.failed,
      hint,
      workspace: this.workspace,
    });
  }
}

/**
 * A Unix socket's path, its NUL included, fits in sockaddr_un's sun_path: 104 bytes on macOS and
 * the BSDs, 108 on Linux.
 */
const SUN_PATH = Deno.build.os === "linux" ? 108 : 104;

/**
 * What ssh adds to the ControlPath folder: `/`, the 40 hex characters of %C, and while it binds
 * the socket a temporary suffix (`.` and 16 characters), then the NUL.
 */
const SOCKET_SUFFIX = 1 + 40 + 1 + 16 + 1;

/** Whether ssh can bind a control socket in `dir` (its length in bytes, as the kernel counts). */
export function controlDirFits(dir: string): boolean {
  return new TextEncoder().encode(dir).length + SOCKET_SUFFIX <= SUN_PATH;
}

/**
 * The folder for ControlMaster sockets. Unix socket paths are limited, so when `~/.cal/run` is
 * too long a short per-user folder under /tmp is used instead.
 */
async function controlDir(): Promise<string> {
  let dir = join(calHome(), "run");
  if (!controlDirFits(dir)) {
    const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(calHome()));
    const hex = [...new Uint8Array(digest)].slice(0, 4).map((b) => b.toString(16).padStart(2, "0"))
      .join("");
    dir = `/tmp/cal-${Deno.uid() ?? "u"}-${hex}`;
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}
