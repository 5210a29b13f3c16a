/**
 * A guest: OpenSSH's sshd in a bubblewrap sandbox, with its own mount, PID, IPC and UTS
 * namespaces. The host's files are invisible except read-only system folders (/usr and a
 * read-only /etc with the guest's own passwd, group, shadow and SSH host keys laid over it);
 * the guest's writable state (home, tool prefixes) lives in a folder on the host. The network
 * namespace is shared (or cut), and sshd listens on the guest's own address.
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

/** The guest's account, as on Tart's macOS images: admin (501, staff) in /Users/admin. */
export const MAC_ADMIN: GuestUser = {
  name: "admin",
  uid: 501,
  gid: 20,
  group: "staff",
  home: "/Users/admin",
};

/** Writable system prefixes the guest installs into, as on a Mac. */
export const MAC_PREFIXES = ["/opt/homebrew", "/usr/local"];

export interface GuestSpec {
  /** The guest's writable state on the host (see `layout`). */
  stateDir: string;
  user: GuestUser;
  hostname: string;
  listen: { host: string; port: number };
  /** Host folders shared into the guest. */
  shares?: { host: string; guest: string; readOnly?: boolean }[];
  /** Writable folders of the state that appear at these guest paths (besides the home). */
  prefixes?: string[];
  /** "none" gives the guest a network namespace of its own with nothing in it. */
  network?: "host" | "none";
}

/** Where things are inside a state folder. */
export const layout = {
  home: (s: GuestSpec) => join(s.stateDir, "home"),
  etc: (s: GuestSpec) => join(s.stateDir, "etc"),
  prefix: (s: GuestSpec, guestPath: string) => join(s.stateDir, "root", guestPath),
};

const SANDBOX_HINT = "Install bubblewrap (`apt-get install bubblewrap`, `dnf install bubblewrap`).";

export function loginShell(): string {
  for (const s of ["/usr/bin/zsh", "/bin/zsh", "/usr/bin/bash", "/bin/bash"]) {
    try {
      if (Deno.statSync(s).isFile) return s;
    } catch { /* next */ }
  }
  return "/bin/sh";
}

async function chownTree(path: string, uid: number, gid: number) {
  if (Deno.uid() !== 0) return;
  const r = await run("chown", ["-R", `${uid}:${gid}`, path]);
  if (r.code !== 0) throw new CalError(`chown ${path} failed: ${r.stderr.trim()}`);
}

/**
 * Creates the guest's state folder: its /etc overlay (accounts, SSH host keys, sshd_config),
 * its home and prefixes. Existing host keys are kept (a copied guest keeps its identity).
 */
export async function prepareGuest(spec: GuestSpec): Promise<void> {
  const etc = layout.etc(spec);
  await Deno.mkdir(join(etc, "ssh"), { recursive: true });
  const u = spec.user;
  const shell = loginShell();
  const root = Deno.uid() === 0;
  const sshdUid = root ? 102 : Deno.uid();
  await Deno.writeTextFile(
    join(etc, "passwd"),
    [
      "root:x:0:0:root:/var/root:/bin/sh",
      `${u.name}:x:${u.uid}:${u.gid}:${u.name}:${u.home}:${shell}`,
      `sshd:x:${sshdUid}:65534::/run/sshd:/usr/sbin/nologin`,
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
    const r = await run("openssl", ["passwd", "-6", "-stdin"], { stdin: u.password + "\n" });
    if (r.code !== 0) throw new CalError(`openssl passwd failed: ${r.stderr.trim()}`);
    hash = r.stdout.trim();
  }
  await Deno.writeTextFile(
    join(etc, "shadow"),
    [
      `root:*:19000:0:99999:7:::`,
      `${u.name}:${hash}:19000:0:99999:7:::`,
      "sshd:*:19000:0:99999:7:::",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  await Deno.writeTextFile(join(etc, "hostname"), spec.hostname + "\n");
  const key = join(etc, "ssh", "ssh_host_ed25519_key");
  try {
    await Deno.stat(key);
  } catch {
    const r = await run("ssh-keygen", [
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-C",
      spec.hostname,
      "-f",
      key,
    ]);
    if (r.code !== 0) throw new CalError(`ssh-keygen failed: ${r.stderr.trim()}`);
  }
  await Deno.copyFile("/etc/ssh/ssh_config", join(etc, "ssh", "ssh_config")).catch(() => {});
  await Deno.writeTextFile(join(etc, "ssh", "sshd_config"), sshdConfig(spec));
  const home = layout.home(spec);
  await Deno.mkdir(home, { recursive: true, mode: 0o755 });
  for (const p of spec.prefixes ?? []) {
    await Deno.mkdir(layout.prefix(spec, p), { recursive: true });
  }
  await chownTree(home, u.uid, u.gid);
  for (const p of spec.prefixes ?? []) await chownTree(layout.prefix(spec, p), u.uid, u.gid);
  // A bind mount keeps host owners; as root the guest user could not write a shared folder.
  // Give it to the guest user, as VirtioFS shows a Tart guest its shares as its own.
  for (const s of spec.shares ?? []) if (!s.readOnly) await chownTree(s.host, u.uid, u.gid);
}

function sshdConfig(spec: GuestSpec): string {
  const root = Deno.uid() === 0;
  return [
    `ListenAddress ${spec.listen.host}:${spec.listen.port}`,
    "HostKey /etc/ssh/ssh_host_ed25519_key",
    "PidFile none",
    "UsePAM no",
    `PasswordAuthentication ${spec.user.password !== undefined && root ? "yes" : "no"}`,
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    "PermitRootLogin no",
    "AuthorizedKeysFile .ssh/authorized_keys",
    "StrictModes yes",
    "Subsystem sftp internal-sftp",
    "AcceptEnv LANG LC_*",
    "PrintMotd no",
    "MaxSessions 64",
    "MaxStartups 64:30:128",
    "LogLevel INFO",
    "",
  ].join("\n");
}

/** The bwrap argument list that runs `command` as the guest. */
export function bwrapArgs(spec: GuestSpec, command: string[]): string[] {
  const etc = layout.etc(spec);
  const root = Deno.uid() === 0;
  const a = [
    // Rootless: a user namespace of its own, the caller mapped to the guest user.
    ...(root
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
    "--symlink",
    "usr/bin",
    "/bin",
    "--symlink",
    "usr/sbin",
    "/sbin",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--ro-bind",
    "/etc",
    "/etc",
  ];
  for (const f of ["passwd", "group", "shadow", "hostname"]) {
    a.push("--ro-bind", join(etc, f), `/etc/${f}`);
  }
  a.push("--ro-bind", join(etc, "ssh"), "/etc/ssh");
  // Other host secrets in /etc stay hidden even from the guest's root.
  for (const f of ["/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers"]) {
    try {
      Deno.statSync(f);
      a.push("--ro-bind", "/dev/null", f);
    } catch { /* absent */ }
  }
  a.push(
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    // World-writable and sticky, as on any Unix: the guest user's tools write temp files.
    "--perms",
    "1777",
    "--tmpfs",
    "/tmp",
    "--tmpfs",
    "/run",
    "--perms",
    "0755",
    "--dir",
    "/run/sshd",
    "--tmpfs",
    "/var",
    "--perms",
    "1777",
    "--dir",
    "/var/tmp",
  );
  // bwrap makes missing parents 0700 root: make them traversable first, as on a real disk.
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
    "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
  );
  a.push("--setenv", "HOME", "/", "--", ...command);
  return a;
}

/** Starts sshd in the sandbox in the foreground; the returned child is the guest. */
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
    args: bwrapArgs(spec, ["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config"]),
    stdin: "null",
    stdout: stdio.stdout ?? "inherit",
    stderr: stdio.stderr ?? "inherit",
  }).spawn();
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
