/**
 * A guest: OpenSSH's sshd in a bubblewrap sandbox, with its own mount, PID, IPC and UTS
 * namespaces. Nothing of the host is visible except read-only system folders (/usr, and /etc
 * with the guest's own accounts and SSH files laid over it and the host's secrets masked); the
 * guest's writable state lives in a folder on the host whose layout mirrors the guest's paths:
 *
 *   <state>/Users/admin/   → /Users/admin   (the user's home; any `user.home`)
 *   <state>/opt/homebrew/  → /opt/homebrew  (each of `prefixes`)
 *   <state>/usr/local/     → /usr/local
 *   <state>/Volumes/       → /Volumes       (shared host folders are mounted inside)
 *   <state>/etc/           generated passwd, group, shadow, hostname; etc/ssh: host keys (made
 *                          once, so a copied state keeps its identity), sshd_config, ssh_config
 *
 * The network namespace is shared with the host (sshd listens on the guest's own address,
 * e.g. a 127.x.y.z loopback address) or, with `network: "none"`, empty.
 *
 * The sandbox's first process is a tiny init (`guestCommand`) that runs sshd and owns the
 * guest's power button: a FIFO at /run/guest-power where `halt` ends the guest (exit 0) and
 * `reboot` restarts it. The host presses it with `requestPower`; `tart exec`-like access goes
 * through `execArgs` (nsenter into the guest's namespaces).
 *
 * Used by the Linux sandbox provider and by the test rig's fake `tart`, whose VMs are these.
 */

import { join } from "node:path";
import { CalError } from "../errors.ts";
import { run, which } from "../process.ts";

export interface GuestUser {
  name: string;
  uid: number;
  gid: number;
  group: string;
  home: string;
  /** Login password, or undefined for key-only logins. */
  password?: string;
}

export interface GuestShare {
  host: string;
  guest: string;
  readOnly?: boolean;
}

export interface GuestSpec {
  /** The guest's writable state on the host (see `layout`). */
  stateDir: string;
  user: GuestUser;
  hostname: string;
  /** Where sshd listens; with a shared network this is a host address, e.g. 127.x.y.z:22. */
  listen: { host: string; port: number };
  /** Host folders shared into the guest. */
  shares?: GuestShare[];
  /** Writable guest folders (besides the home) kept in the state, e.g. /opt/homebrew. */
  prefixes?: string[];
  /** "none" gives the guest a network namespace of its own with nothing in it. */
  network?: "host" | "none";
  /** PATH of SSH sessions before any profile runs. */
  sessionPath?: string;
}

/** What macOS's sshd gives a session, plus /usr/local/bin where stand-in tools live. */
export const DEFAULT_SESSION_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/** The guest-side FIFO that powers the guest off (`halt`) or restarts it (`reboot`). */
export const POWER_FIFO = "/run/guest-power";

const SSHD = "/usr/sbin/sshd";
const SANDBOX_HINT = "Install bubblewrap (`apt-get install bubblewrap`, `dnf install bubblewrap`).";

/** Where things are inside a state folder: the guest's own paths under `stateDir`. */
export const layout = {
  home: (s: GuestSpec) => join(s.stateDir, s.user.home),
  etc: (s: GuestSpec) => join(s.stateDir, "etc"),
  prefix: (s: GuestSpec, guestPath: string) => join(s.stateDir, guestPath),
  volumes: (s: GuestSpec) => join(s.stateDir, "Volumes"),
};

const isRoot = () => Deno.uid() === 0;

const exists = (p: string) => {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

/** The guest user's shell: zsh as on macOS when the host has it, else bash. */
export function loginShell(): string {
  return exists("/bin/zsh") ? "/bin/zsh" : "/bin/bash";
}

async function must(cmd: string, args: string[], stdin?: string): Promise<string> {
  const r = await run(cmd, args, { stdin });
  if (r.code !== 0) throw new CalError(`${cmd} ${args[0] ?? ""} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Lays out a guest state folder: the folders, then `image` (a folder mirroring guest paths,
 * copied in as-is), then the generated /etc files and host keys, and finally gives the home
 * and prefixes to the guest user. Safe to run on an existing state: host keys and files are
 * kept, accounts and sshd_config are regenerated.
 */
export async function buildGuestRoot(
  spec: GuestSpec,
  opts: { image?: string } = {},
): Promise<void> {
  const writable = [layout.home(spec), ...(spec.prefixes ?? []).map((p) => layout.prefix(spec, p))];
  for (const d of [join(layout.etc(spec), "ssh"), layout.volumes(spec), ...writable]) {
    await Deno.mkdir(d, { recursive: true });
  }
  if (opts.image) await must("cp", ["-a", "--", `${opts.image}/.`, `${spec.stateDir}/`]);
  await writeEtc(spec);
  await Deno.chmod(layout.home(spec), 0o755);
  // The whole tree only when building (an image's files); later starts fix the top folders.
  if (isRoot()) {
    const who = `${spec.user.uid}:${spec.user.gid}`;
    await must("chown", opts.image ? ["-R", who, ...writable] : [who, ...writable]);
  }
}

/** Refreshes a state before a start (accounts, sshd_config for the current address). */
export async function prepareGuest(spec: GuestSpec): Promise<void> {
  await buildGuestRoot(spec);
}

async function writeEtc(spec: GuestSpec): Promise<void> {
  const etc = layout.etc(spec);
  const u = spec.user;
  // sshd refuses to start without its privilege-separation user; rootless it is the caller.
  const sshdUid = isRoot() ? 75 : Deno.uid();
  await Deno.writeTextFile(
    join(etc, "passwd"),
    [
      "root:x:0:0:System Administrator:/var/root:/bin/sh",
      `${u.name}:x:${u.uid}:${u.gid}:${u.name}:${u.home}:${loginShell()}`,
      `sshd:x:${sshdUid}:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin`,
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
      "",
    ].join("\n"),
  );
  await Deno.writeTextFile(
    join(etc, "group"),
    ["root:x:0:", `${u.group}:x:${u.gid}:${u.name}`, "nogroup:x:65534:", ""].join("\n"),
  );
  let hash = "*";
  if (u.password !== undefined) {
    hash = (await must("openssl", ["passwd", "-6", "-stdin"], u.password + "\n")).trim();
  }
  await Deno.writeTextFile(
    join(etc, "shadow"),
    [
      "root:*:19000:0:99999:7:::",
      `${u.name}:${hash}:19000:0:99999:7:::`,
      "sshd:*:19000:0:99999:7:::",
      "nobody:*:19000:0:99999:7:::",
      "",
    ].join("\n"),
  );
  await Deno.chmod(join(etc, "shadow"), 0o600);
  await Deno.writeTextFile(join(etc, "gshadow"), "");
  await Deno.chmod(join(etc, "gshadow"), 0o600);
  await Deno.writeTextFile(join(etc, "hostname"), spec.hostname + "\n");
  const ssh = join(etc, "ssh");
  for (const type of ["ed25519", "ecdsa"]) {
    const key = join(ssh, `ssh_host_${type}_key`);
    if (exists(key)) continue;
    await must("ssh-keygen", [
      "-q",
      "-t",
      type,
      "-N",
      "",
      "-C",
      `root@${spec.hostname}`,
      "-f",
      key,
    ]);
  }
  // Clients in the guest (git over ssh, …) read this; the host's own file is not shown.
  await Deno.writeTextFile(
    join(ssh, "ssh_config"),
    "Host *\n    SendEnv LANG LC_*\n    HashKnownHosts yes\n",
  );
  await Deno.writeTextFile(join(ssh, "sshd_config"), sshdConfig(spec));
}

function sshdConfig(spec: GuestSpec): string {
  return [
    `ListenAddress ${spec.listen.host}:${spec.listen.port}`,
    "HostKey /etc/ssh/ssh_host_ed25519_key",
    "HostKey /etc/ssh/ssh_host_ecdsa_key",
    "PidFile none",
    "UsePAM no",
    // Rootless, sshd runs as the user and cannot check passwords: keys only.
    `PasswordAuthentication ${spec.user.password !== undefined && isRoot() ? "yes" : "no"}`,
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    "PermitRootLogin no",
    "AuthorizedKeysFile .ssh/authorized_keys",
    "StrictModes yes",
    "Subsystem sftp internal-sftp",
    "AcceptEnv LANG LC_*",
    // Debian's sshd would give sessions /usr/games; set what macOS's gives (profiles add more).
    `SetEnv PATH=${spec.sessionPath ?? DEFAULT_SESSION_PATH}`,
    "PrintMotd no",
    "PrintLastLog no",
    "MaxSessions 64",
    "MaxStartups 64:30:128",
    "LogLevel INFO",
    "",
  ].join("\n");
}

/** Host files and folders in /etc that stay hidden even from the guest's root. */
const HOST_SECRETS = [
  "/etc/shadow-",
  "/etc/gshadow-",
  "/etc/sudoers",
  "/etc/sudoers.d",
  "/etc/ssl/private",
  "/etc/security/opasswd",
];

/**
 * The guest's init (pid 2 of the sandbox, under bwrap's pid 1): runs sshd and waits for it or
 * for a power request on the FIFO. `halt` → exit 0; `reboot` → every guest process is killed
 * and sshd starts again; sshd dying on its own → its exit status.
 */
export function guestCommand(): string[] {
  const script = `
power=${POWER_FIFO}
mkfifo -m 0622 "$power" || exit 1
while :; do
  ${SSHD} -D -e -f /etc/ssh/sshd_config &
  sshd=$!
  ( read -r req <"$power"; printf '%s\\n' "$req" >"$power.req"; kill -TERM "$sshd" ) &
  watcher=$!
  wait "$sshd"
  rc=$?
  kill "$watcher" 2>/dev/null
  req=$(cat "$power.req" 2>/dev/null)
  rm -f "$power.req"
  case "$req" in
    halt*|poweroff*) exit 0 ;;
    reboot*) kill -9 -1 2>/dev/null; sleep 0.1 ;;
    *) echo "guest: sshd exited with status $rc" >&2; exit "$rc" ;;
  esac
done`;
  return ["/bin/sh", "-c", script];
}

/** The bwrap argument list that runs `command` (by default `guestCommand()`) as the guest. */
export function bwrapArgs(spec: GuestSpec, command: string[] = guestCommand()): string[] {
  const etc = layout.etc(spec);
  const a = [
    // Rootless: a user namespace of its own, the caller mapped to the guest user.
    ...(isRoot()
      ? []
      : ["--unshare-user", "--uid", String(spec.user.uid), "--gid", String(spec.user.gid)]),
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    ...(spec.network === "none" ? ["--unshare-net"] : []),
    "--die-with-parent",
    "--hostname",
    spec.hostname,
    "--ro-bind",
    "/usr",
    "/usr",
  ];
  // Merged /usr (Debian 12, Fedora): /bin, /lib… are symlinks; otherwise bind them as they are.
  for (const d of ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]) {
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(`/${d}`);
    } catch {
      continue;
    }
    if (st.isSymlink) a.push("--symlink", Deno.readLinkSync(`/${d}`), `/${d}`);
    else a.push("--ro-bind", `/${d}`, `/${d}`);
  }
  a.push("--ro-bind", "/etc", "/etc");
  for (const f of ["passwd", "group", "shadow", "gshadow", "hostname"]) {
    a.push("--ro-bind", join(etc, f), `/etc/${f}`);
  }
  // The host's SSH host keys are hidden behind the guest's own folder.
  a.push("--ro-bind", join(etc, "ssh"), "/etc/ssh");
  for (const p of HOST_SECRETS) {
    let st: Deno.FileInfo;
    try {
      st = Deno.statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory) a.push("--tmpfs", p);
    else a.push("--ro-bind", "/dev/null", p);
  }
  a.push(
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--perms",
    "1777",
    "--tmpfs",
    "/tmp",
    "--perms",
    "0755",
    "--tmpfs",
    "/run",
    "--perms",
    "0755",
    "--dir",
    "/run/sshd",
    "--perms",
    "0755",
    "--tmpfs",
    "/var",
    "--perms",
    "1777",
    "--dir",
    "/var/tmp",
    "--symlink",
    "../run",
    "/var/run",
  );
  // bwrap makes missing parents 0700: make them traversable first, as on a real disk.
  const made = new Set(["/", "/usr", "/etc", "/tmp", "/run", "/var", "/proc", "/dev"]);
  const parents = (p: string) => {
    const parts = p.split("/").filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const dir = "/" + parts.slice(0, i).join("/");
      if (!made.has(dir)) {
        made.add(dir);
        a.push("--perms", "0755", "--dir", dir);
      }
    }
  };
  parents(spec.user.home);
  a.push("--bind", layout.home(spec), spec.user.home);
  for (const p of spec.prefixes ?? []) {
    parents(p);
    a.push("--bind", layout.prefix(spec, p), p);
  }
  a.push("--bind", layout.volumes(spec), "/Volumes");
  made.add("/Volumes");
  for (const s of spec.shares ?? []) {
    parents(s.guest);
    a.push(s.readOnly ? "--ro-bind" : "--bind", s.host, s.guest);
  }
  a.push(
    "--chdir",
    "/",
    "--clearenv",
    "--setenv",
    "PATH",
    "/usr/bin:/bin:/usr/sbin:/sbin",
    "--",
    ...command,
  );
  return a;
}

/**
 * Starts the guest (bwrap running `guestCommand()`), in a process group of its own so a
 * terminal's Ctrl+C reaches only the caller; the guest dies with the caller.
 */
export function startGuest(
  spec: GuestSpec,
  stdio: { stdout?: "inherit" | "null" | "piped"; stderr?: "inherit" | "null" | "piped" } = {},
): Deno.ChildProcess {
  const bwrap = which("bwrap");
  if (!bwrap) {
    throw new CalError("bubblewrap (`bwrap`) is not installed.", {
      code: "tool-missing",
      hint: SANDBOX_HINT,
    });
  }
  return new Deno.Command(bwrap, {
    args: bwrapArgs(spec),
    stdin: "null",
    stdout: stdio.stdout ?? "inherit",
    stderr: stdio.stderr ?? "inherit",
    detached: true,
  }).spawn();
}

/** The sandbox's pid 1 (bwrap's child), whose namespaces are the guest's; undefined if gone. */
export function sandboxInitPid(bwrapPid: number): number | undefined {
  try {
    const kids = Deno.readTextFileSync(`/proc/${bwrapPid}/task/${bwrapPid}/children`).trim();
    const first = Number(kids.split(/\s+/)[0]);
    return first > 0 ? first : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The host command that runs `argv` inside a running guest as its user: nsenter into the
 * sandbox's namespaces and root, no shell in between, the home as working folder.
 */
export function execArgs(
  spec: GuestSpec,
  initPid: number,
  argv: string[],
  path = "/bin:/usr/bin:/usr/sbin:/usr/local/bin:/opt/homebrew/bin",
): string[] {
  const u = spec.user;
  return [
    "nsenter",
    "-t",
    String(initPid),
    "-m",
    "-u",
    "-i",
    "-n",
    "-p",
    "-r",
    "-w",
    ...(isRoot() ? ["-S", String(u.uid), "-G", String(u.gid)] : ["-U", "--preserve-credentials"]),
    "--",
    "/usr/bin/env",
    "-i",
    "-C",
    u.home,
    "--",
    `PATH=${path}`,
    `HOME=${u.home}`,
    `USER=${u.name}`,
    `LOGNAME=${u.name}`,
    `SHELL=${loginShell()}`,
    ...argv,
  ];
}

/**
 * Presses the guest's power button from the host (through the sandbox's root as seen in
 * /proc). Returns false when the guest has no listener (it is gone or still starting).
 */
export async function requestPower(initPid: number, what: "halt" | "reboot"): Promise<boolean> {
  const fifo = `/proc/${initPid}/root${POWER_FIFO}`;
  // Opening a FIFO blocks until the guest reads it; `timeout` bounds that wait.
  const r = await run("timeout", [
    "3",
    "/bin/sh",
    "-c",
    'printf "%s\\n" "$1" >"$2"',
    "sh",
    what,
    fifo,
  ]);
  return r.code === 0;
}

/** Whether a socket is listening on exactly host:port (IPv4), per the kernel's table. */
export async function sshdListening(host: string, port: number): Promise<boolean> {
  const want = host.split(".").map((o) => Number(o).toString(16).padStart(2, "0").toUpperCase())
    .reverse().join("") + ":" + port.toString(16).padStart(4, "0").toUpperCase();
  try {
    const table = await Deno.readTextFile("/proc/net/tcp");
    return table.split("\n").some((l) => {
      const f = l.trim().split(/\s+/);
      return f[1] === want && f[3] === "0A";
    });
  } catch {
    return false;
  }
}

/** Whether something accepts TCP connections at host:port. */
export async function listening(host: string, port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: host, port });
    c.close();
    return true;
  } catch {
    return false;
  }
}
