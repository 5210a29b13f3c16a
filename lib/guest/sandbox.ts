/**
 * A guest: OpenSSH's sshd in a bubblewrap sandbox, with its own mount, PID, IPC and UTS
 * namespaces. The host's files are invisible except read-only system folders (/usr and a
 * read-only /etc with the guest's own passwd, group, shadow and SSH host keys laid over it);
 * the guest's writable state (home, tool prefixes) lives in a folder on the host. The network
 * namespace is shared (or cut), and sshd listens on the guest's own address.
 *
 * Three shapes, by who runs it:
 * - as root with `hostId` (the sandbox provider): the guest runs as its own host uid, in a user
 *   namespace that shows it as admin (501), exactly like the rootless shape; a private mount
 *   namespace first makes the state folders reachable for that uid (see `guestCommand`);
 * - rootless: the caller is mapped to the guest user;
 * - as root without `hostId` (the test rig's fake `tart`, whose VMs are these): no user
 *   namespace, sshd as root with the image's password login, as on a real Tart VM.
 *
 * The state folder's own layout (etc/, home/, root/) is never visible to the guest, only what is
 * bound from it; what the guest writes (home, prefixes, shares) the host never follows.
 */

import { join } from "node:path";
import { CalError, wrongState } from "../errors.ts";
import { run, which } from "../process.ts";
import { safeText } from "../terminal.ts";

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
  /**
   * "host" shares the host's network namespace; "none" gives the guest one of its own with
   * nothing in it; "proxy" one of its own whose only way out is cal's egress proxy: a relay on
   * the guest's 127.0.0.1:3128 to the proxy's unix socket in `proxySocketDir` (see PROXY).
   */
  network?: "host" | "none" | "proxy";
  /** The host folder holding the egress proxy's socket (`proxy.sock`), for "proxy". */
  proxySocketDir?: string;
  /** NO_PROXY for "proxy": what the guest's clients reach directly (its own services). */
  noProxy?: string[];
  /**
   * As root: the host uid and gid the guest runs as (shown inside as `user`'s), one per
   * workspace so no two guests share an owner. Without it, root runs the guest as root's
   * sandbox (the fake tart's VMs).
   */
  hostId?: { uid: number; gid: number };
  /**
   * A host folder holding `authorized_keys`: then those are the only keys sshd accepts, read
   * from a read-only bind the guest cannot change (`KEYS_DIR`), and cal never writes into the
   * guest's home for a login. Without it, the guest's own ~/.ssh/authorized_keys (as on Tart).
   */
  keysDir?: string;
}

/**
 * The egress proxy as the guest sees it: its socket's folder, bound read-only (connecting to a
 * socket needs no write access to its file system), and the address the relay listens on.
 */
export const PROXY = {
  dir: "/run/cal-net",
  socket: "/run/cal-net/proxy.sock",
  url: "http://127.0.0.1:3128",
  port: 3128,
};

/** cal's GitHub broker (lib/github/broker.ts) as the guest sees it, next to the proxy. */
export const GITHUB_BROKER = {
  socket: "/run/cal-net/github.sock",
  url: "http://127.0.0.1:3129/",
  port: 3129,
};

/** The variables that send every usual client (curl, git, npm, pip, gh, agents) to the proxy. */
export function proxyEnvironment(
  url = PROXY.url,
  noProxy = ["localhost", "127.0.0.1", "::1"],
): Record<string, string> {
  const none = noProxy.join(",");
  return {
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    ALL_PROXY: url,
    http_proxy: url,
    https_proxy: url,
    all_proxy: url,
    NO_PROXY: none,
    no_proxy: none,
  };
}

/** The host's trust settings a client reads (TLS inspection behind a corporate proxy, say). */
const CA_VARIABLES = [
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "CURL_CA_BUNDLE",
  "GIT_SSL_CAINFO",
  "REQUESTS_CA_BUNDLE",
  "PIP_CERT",
];

/**
 * The host's extra CA settings, for the guest's sessions: only those naming a file or folder
 * under /etc or /usr, which the guest sees read-only as the host's own (a CA bundle is public).
 */
export function hostCaEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of CA_VARIABLES) {
    const v = Deno.env.get(k);
    if (v && /^\/(etc|usr)\/[\w./+-]+$/.test(v) && !v.includes("..")) {
      try {
        Deno.statSync(v);
        env[k] = v;
      } catch { /* not there: leave it out */ }
    }
  }
  return env;
}

/**
 * `command` behind the relay that is the guest's only way out in "proxy" mode: socat on
 * 127.0.0.1:3128 inside the guest's network namespace, to the proxy's socket. (The guest may
 * kill it; it then only loses its own way out.)
 */
export function behindRelay(command: string[]): string[] {
  return [
    "/bin/sh",
    "-c",
    `/usr/bin/socat TCP-LISTEN:${PROXY.port},bind=127.0.0.1,reuseaddr,fork ` +
    `UNIX-CONNECT:${PROXY.socket} & ` +
    `/usr/bin/socat TCP-LISTEN:${GITHUB_BROKER.port},bind=127.0.0.1,reuseaddr,fork ` +
    `UNIX-CONNECT:${GITHUB_BROKER.socket} & exec "$@"`,
    "cal-guest",
    ...command,
  ];
}

/** Where the guest sees `keysDir`: under the read-only root, so sshd's StrictModes holds. */
export const KEYS_DIR = "/.cal-ssh";

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

/** Root's shape without a user namespace (the fake tart's VMs). */
const legacy = (spec: GuestSpec) => Deno.uid() === 0 && !spec.hostId;

/** The host uid and gid that own what the guest writes; undefined when that is the caller. */
function owner(spec: GuestSpec): { uid: number; gid: number } | undefined {
  if (Deno.uid() !== 0) return undefined;
  return spec.hostId ?? { uid: spec.user.uid, gid: spec.user.gid };
}

/**
 * Gives a tree to uid:gid, as root, without following a link anywhere in it (-h -P: links are
 * changed themselves, never traversed), and only when something in it is someone else's, so a
 * start does not rewrite every file. For trees no guest process can change meanwhile.
 */
export async function ownTree(path: string, uid: number, gid: number): Promise<void> {
  if (Deno.uid() !== 0) return;
  const stray = await run("find", [
    "-P",
    path,
    "(",
    "!",
    "-uid",
    String(uid),
    "-o",
    "!",
    "-gid",
    String(gid),
    ")",
    "-print",
    "-quit",
  ]);
  if (stray.code === 0 && !stray.stdout.trim()) return;
  const r = await run("chown", ["-R", "-h", "-P", `${uid}:${gid}`, "--", path]);
  if (r.code !== 0) throw new CalError(`chown ${path} failed: ${r.stderr.trim()}`);
}

/**
 * Makes `base/rel` a real folder, checking every component from `base` down with lstat (a link
 * is refused, never followed), so what cal creates or binds is what it means.
 */
export async function realDir(base: string, rel: string, mode = 0o755): Promise<string> {
  await Deno.mkdir(base, { recursive: true }).catch(() => {}); // the base is cal's own
  let path = base;
  for (const part of ["", ...rel.split("/").filter(Boolean)]) {
    path = part ? join(path, part) : path;
    let info: Deno.FileInfo | undefined;
    try {
      info = await Deno.lstat(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (!info) {
      await Deno.mkdir(path, { mode });
      await Deno.chmod(path, mode); // not the umask's
    } else if (info.isSymlink || !info.isDirectory) {
      throw wrongState(
        `${safeText(path)} is ${
          info.isSymlink ? "a link" : "not a folder"
        }; cal does not follow it.`,
        "The machine's folder was changed outside cal: restore a snapshot, or delete the " +
          "machine and create it again.",
      );
    }
  }
  return path;
}

/**
 * Creates the guest's state folder: its /etc overlay (accounts, SSH host keys, sshd_config),
 * its home and prefixes. Existing host keys are kept (a copied guest keeps its identity).
 * Everything written here is in folders the guest never sees (etc/), checked component by
 * component; in the guest's own folders only their top is created or given to the guest.
 */
export async function prepareGuest(spec: GuestSpec): Promise<void> {
  const etc = await realDir(spec.stateDir, "etc");
  await realDir(etc, "ssh");
  const u = spec.user;
  const shell = loginShell();
  // sshd's privilege-separation user: only used by a root sshd (the fake tart's).
  const sshdUid = legacy(spec) ? 102 : 65534;
  const write = async (file: string, text: string, mode = 0o644) => {
    await Deno.writeTextFile(join(etc, file), text, { mode });
    await Deno.chmod(join(etc, file), mode); // not the umask's: the guest's uid reads them
  };
  await write(
    "passwd",
    [
      "root:x:0:0:root:/var/root:/bin/sh",
      `${u.name}:x:${u.uid}:${u.gid}:${u.name}:${u.home}:${shell}`,
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
      `sshd:x:${sshdUid}:65534::/run/sshd:/usr/sbin/nologin`,
      "",
    ].join("\n"),
  );
  await write(
    "group",
    ["root:x:0:", `${u.group}:x:${u.gid}:${u.name}`, "nogroup:x:65534:", ""].join("\n"),
  );
  let hash = "*";
  if (u.password !== undefined) {
    const r = await run("openssl", ["passwd", "-6", "-stdin"], { stdin: u.password + "\n" });
    if (r.code !== 0) throw new CalError(`openssl passwd failed: ${r.stderr.trim()}`);
    hash = r.stdout.trim();
  }
  await write(
    "shadow",
    [
      `root:*:19000:0:99999:7:::`,
      `${u.name}:${hash}:19000:0:99999:7:::`,
      "sshd:*:19000:0:99999:7:::",
      "",
    ].join("\n"),
    0o600,
  );
  await write("hostname", spec.hostname + "\n");
  const key = join(etc, "ssh", "ssh_host_ed25519_key");
  try {
    await Deno.lstat(key);
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
  // The guest's sshd runs as the guest's uid: its host key must be that uid's to be read.
  const id = owner(spec);
  if (id && spec.hostId) {
    for (const f of [key, key + ".pub"]) await Deno.chown(f, id.uid, id.gid);
  }
  await Deno.copyFile("/etc/ssh/ssh_config", join(etc, "ssh", "ssh_config")).catch(() => {});
  await write("ssh/sshd_config", sshdConfig(spec));
  const home = await realDir(spec.stateDir, "home");
  const tops = [home];
  for (const p of spec.prefixes ?? []) tops.push(await realDir(spec.stateDir, join("root", p)));
  if (id) {
    if (legacy(spec)) {
      for (const t of tops) await ownTree(t, id.uid, id.gid);
    } else {
      // The trees are the guest's since they were made (clone gives them to it): only their
      // tops, which cal may just have created, need giving here.
      for (const t of tops) await Deno.chown(t, id.uid, id.gid);
    }
  }
  // A bind mount keeps host owners; as root the guest user could not write a shared folder.
  // Give it to the guest user, as VirtioFS shows a Tart guest its shares as its own. The share
  // itself is the host's (its path may be a link the person made); its contents are the guest's.
  for (const s of spec.shares ?? []) {
    if (!s.readOnly && id) await ownTree(await Deno.realPath(s.host), id.uid, id.gid);
  }
  if (spec.keysDir) {
    // Host-only (never bound writable): cal's keys, read by the guest's sshd as its own.
    const keys = await realDir(spec.keysDir, "", 0o700);
    if (id) await Deno.chown(keys, id.uid, id.gid);
  }
}

function setEnv(env: Record<string, string>): string[] {
  const pairs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return pairs.length ? [`SetEnv ${pairs.join(" ")}`] : [];
}

function sshdConfig(spec: GuestSpec): string {
  return [
    `ListenAddress ${spec.listen.host}:${spec.listen.port}`,
    "HostKey /etc/ssh/ssh_host_ed25519_key",
    "PidFile none",
    "UsePAM no",
    `PasswordAuthentication ${spec.user.password !== undefined && legacy(spec) ? "yes" : "no"}`,
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    "PermitRootLogin no",
    spec.keysDir
      ? `AuthorizedKeysFile ${KEYS_DIR}/authorized_keys`
      : "AuthorizedKeysFile .ssh/authorized_keys",
    "StrictModes yes",
    "Subsystem sftp internal-sftp",
    "AcceptEnv LANG LC_*",
    "PrintMotd no",
    "MaxSessions 64",
    "MaxStartups 64:30:128",
    "LogLevel INFO",
    // Every session (cal's commands, the agent, a person's shell) learns the way out and the
    // host's trust.
    ...setEnv({
      ...(spec.network === "proxy" ? proxyEnvironment(PROXY.url, spec.noProxy) : {}),
      ...hostCaEnvironment(),
    }),
    "",
  ].join("\n");
}

/**
 * The bwrap argument list that runs `command` as the guest. `from` names where bwrap finds each
 * host folder of the state (identity, or a staged copy of the mount: see `guestCommand`).
 */
export function bwrapArgs(
  spec: GuestSpec,
  command: string[],
  from: (hostDir: string) => string = (d) => d,
): string[] {
  const etc = from(layout.etc(spec));
  const a = [
    // Rootless, or as root with a host uid of its own: a user namespace of its own, its uid
    // mapped to the guest user.
    ...(legacy(spec)
      ? []
      : ["--unshare-user", "--uid", String(spec.user.uid), "--gid", String(spec.user.gid)]),
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    ...(spec.network === "none" || spec.network === "proxy" ? ["--unshare-net"] : []),
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
  a.push("--bind", from(layout.home(spec)), spec.user.home);
  for (const p of spec.prefixes ?? []) {
    parents(p);
    a.push("--bind", from(layout.prefix(spec, p)), p);
  }
  for (const s of spec.shares ?? []) {
    parents(s.guest);
    a.push(s.readOnly ? "--ro-bind" : "--bind", from(s.host), s.guest);
  }
  if (spec.keysDir) a.push("--ro-bind", from(spec.keysDir), KEYS_DIR);
  if (spec.network === "proxy" && spec.proxySocketDir) {
    a.push("--ro-bind", from(spec.proxySocketDir), PROXY.dir);
  }
  // The root itself read-only (as a Mac's system volume): nothing in it is renamed or replaced
  // (the keys' folder, the mount points); /tmp, /run, /var and the binds stay as they are.
  a.push("--remount-ro", "/");
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

/** The host folders a guest's bwrap binds from its state and shares. */
function hostDirs(spec: GuestSpec): string[] {
  return [
    layout.etc(spec),
    layout.home(spec),
    ...(spec.prefixes ?? []).map((p) => layout.prefix(spec, p)),
    ...(spec.shares ?? []).map((s) => s.host),
    ...(spec.keysDir ? [spec.keysDir] : []),
    ...(spec.network === "proxy" && spec.proxySocketDir ? [spec.proxySocketDir] : []),
  ];
}

/**
 * The command line that runs `command` as the guest in the background of a shell that waits
 * for it (`label` is that shell's $0, by which cal finds it in /proc; the host folders are in
 * its arguments). bwrap's --die-with-parent ties the guest to that shell.
 *
 * As root with `hostId`, bwrap runs as that uid, which cannot reach root's folders (~ is 0700):
 * in a private mount namespace of its own, root opens each folder, covers /tmp with an empty
 * tmpfs and binds the open folders there (by /proc/self/fd, so no path is looked up again),
 * then drops to the uid (`setpriv`) and runs bwrap on those. Nothing of it is visible on the
 * host, and it ends with the guest.
 */
export function guestCommand(spec: GuestSpec, command: string[], label: string): string[] {
  if (Deno.uid() !== 0 || !spec.hostId) {
    return ["sh", "-c", '"$@" & wait $!', label, "bwrap", ...bwrapArgs(spec, command)];
  }
  const dirs = hostDirs(spec);
  const stage = (i: number) => `/tmp/${i}`;
  const fd = (i: number) => 10 + i;
  const script = [
    "set -e",
    // One per line: bash opens only the first of several in one `exec`.
    ...dirs.map((_, i) => `exec ${fd(i)}<"\${${i + 1}}"`),
    "mount -t tmpfs -o mode=0755,size=64k cal-stage /tmp",
    `mkdir ${dirs.map((_, i) => stage(i)).join(" ")}`,
    ...dirs.map((_, i) => `mount --no-canonicalize --bind /proc/self/fd/${fd(i)} ${stage(i)}`),
    ...dirs.map((_, i) => `exec ${fd(i)}<&-`),
    `shift ${dirs.length}`,
    '"$@" & wait $!',
  ].join("\n");
  const from = (d: string) => stage(dirs.indexOf(d));
  const { uid, gid } = spec.hostId;
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--",
    "bash",
    "-c",
    script,
    label,
    ...dirs,
    "setpriv",
    `--reuid=${uid}`,
    `--regid=${gid}`,
    "--clear-groups",
    "--",
    "bwrap",
    ...bwrapArgs(spec, command, from),
  ];
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
