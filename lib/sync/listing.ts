/**
 * What builds left in the guest: one guest command (a Perl walk, NUL-separated, with size,
 * mtime and file count) lists candidate files and bundles under the search roots, never
 * entering pruned folders or following links. See pull.ts for why Perl.
 *
 * The guest is hostile (see DESIGN.md): its `PATH`, its shell's startup files and the
 * environments' env file are its own, so the walk runs as `/usr/bin/perl` under `env -i`, with
 * no preamble; and whatever comes back is still only data. Every record is checked: a path must
 * be normalized, relative and under the search root it is listed under (no `..`, `.`, empty or
 * absolute part, at most 4096 bytes), numbers must be numbers; anything else is skipped and
 * counted. What is read is bounded (bytes, entries, and the candidates kept), so a forged
 * listing of millions of names cannot exhaust the host's memory: past a bound the listing is cut
 * short, and sync says so.
 */

import { CalError } from "../errors.ts";
import type { Guest } from "../guest/ssh.ts";
import { quoteArgs } from "../shell.ts";
import { safeText } from "../terminal.ts";
import { BUNDLE_EXTENSIONS } from "./patterns.ts";

/** Search roots, relative to the guest's home (globs allowed; see the module's docs). */
export const GUEST_ROOTS = [
  "workspace",
  "output",
  "Library/Developer/Xcode/Archives",
  "Library/Developer/Xcode/DerivedData/*/Build/Products",
  // Where `xcodebuild test` and Xcode put result bundles when no -resultBundlePath is given.
  // Only this folder of each project's DerivedData: never its Index.noindex, caches or packages.
  "Library/Developer/Xcode/DerivedData/*/Logs/Test",
];

/** Folders never entered: big, and never artifacts. */
export const PRUNED = [
  ".git",
  "node_modules",
  ".gradle",
  "Pods",
  ".venv",
  "__pycache__",
  ".dart_tool",
  "Intermediates.noindex",
];

/**
 * The guest's listing walk. Prints `home\t$HOME\0`, then per root `root\t<root>\0`, then per
 * candidate `<f|b>\t<bytes>\t<mtime>\t<files>\t<has Info.plist>\t<path>\0` (paths relative to
 * the home). Arguments: bundle extensions, pruned names (comma-separated), then the roots.
 */
export const LISTING_SCRIPT = String.raw`
use strict; use warnings;
my ($bx, $pr, @roots) = @ARGV;
my %bundle = map { lc($_) => 1 } split /,/, $bx;
my %prune = map { $_ => 1 } split /,/, $pr;
binmode STDOUT;
chdir $ENV{HOME} or die "no home: $!\n";
print "home\t$ENV{HOME}\0";
sub entries { my ($d) = @_; opendir(my $h, $d) or return (); my @e = sort grep { $_ ne '.' && $_ ne '..' } readdir $h; closedir $h; return @e; }
sub total { my ($d, $z, $m, $c) = @_;
  for my $n (entries($d)) { my $p = "$d/$n"; my @s = lstat($p) or next;
    $$m = $s[9] if $s[9] > $$m;
    if (-d _) { total($p, $z, $m, $c); } elsif (-f _) { $$z += $s[7]; $$c++; } } }
sub walk { my ($d) = @_;
  for my $n (entries($d)) { my $p = "$d/$n"; my @s = lstat($p) or next;
    if (-d _) {
      next if $prune{$n};
      if ($n =~ /\.([^.]+)$/ && $bundle{lc $1}) {
        my ($z, $m, $c) = (0, $s[9], 0); total($p, \$z, \$m, \$c);
        my $pl = (-f "$p/Info.plist" || -f "$p/Contents/Info.plist" || -f "$p/Resources/Info.plist") ? 1 : 0;
        print "b\t$z\t$m\t$c\t$pl\t$p\0";
      } else { walk($p); }
    } elsif (-f _) { print "f\t$s[7]\t$s[9]\t1\t0\t$p\0"; } } }
for my $root (@roots) {
  for my $r (sort glob($root)) { next if -l $r || ! -d $r; print "root\t$r\0"; walk($r); }
}
`;

export interface Candidate {
  type: "file" | "bundle";
  bytes: number;
  /** Seconds since the epoch. */
  mtime: number;
  files: number;
  /** Bundles: whether an Info.plist exists (a bundle without one is still being written). */
  complete: boolean;
  /** Relative to the guest's home. */
  path: string;
  /** Relative to its search root (what patterns match). */
  rel: string;
}

export interface Listing {
  home: string;
  candidates: Candidate[];
  /** Names the listing could not carry faithfully (not UTF-8): the first few. */
  skipped: string[];
  /** Records refused (not a normalized path under a search root, bad numbers, too long). */
  rejected: number;
  /** The first few refused records (guest text: show them escaped). */
  rejectedExamples: string[];
  /** Set when a bound cut the listing short: what it was. */
  truncated?: string;
}

/** Bounds on what cal reads of a listing. */
export const LISTING_LIMITS = {
  bytes: 64 * 1024 * 1024,
  entries: 500_000,
  /** Matching candidates kept (what a sync could copy in one go). */
  candidates: 20_000,
  /** One record: a 4096-byte path and its fields. */
  record: 4096 + 128,
};

/** Why `p` is not a normalized relative path (undefined when it is one). */
export function relPathProblem(p: string): string | undefined {
  if (!p) return "an empty path";
  if (p.includes("\0")) return "a NUL in the path";
  if (p.startsWith("/")) return "an absolute path";
  if (new TextEncoder().encode(p).length > 4096) return "a path over 4096 bytes";
  for (const part of p.split("/")) {
    if (part === "") return "an empty part in the path";
    if (part === "." || part === "..") return `a "${part}" in the path`;
    if (part.length > 255) return "a name over 255 characters";
  }
  return undefined;
}

/** The search roots as what the listing may name (a glob's `*` is one folder name). */
const ROOTS = GUEST_ROOTS.map((r) =>
  new RegExp(
    "^" + r.split("*").map((s) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("[^/]+") + "$",
  )
);

const short = (s: string) => JSON.stringify(s.length > 120 ? s.slice(0, 120) + "…" : s);

/**
 * Reads the listing script's output as it arrives, keeping the candidates `keep` wants (all by
 * default), within LISTING_LIMITS. `push` returns false once a bound is reached.
 */
export class ListingParser {
  readonly listing: Listing = {
    home: "",
    candidates: [],
    skipped: [],
    rejected: 0,
    rejectedExamples: [],
  };
  private root = "";
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private overlong = false;
  private bytes = 0;
  private entries = 0;
  private seen = new Set<string>();
  private readonly dec = new TextDecoder();

  constructor(
    private keep: (rel: string) => boolean = () => true,
    private limits = LISTING_LIMITS,
  ) {}

  private reject(what: string, example: string) {
    this.listing.rejected++;
    if (this.listing.rejectedExamples.length < 5) {
      this.listing.rejectedExamples.push(`${short(example)} (${what})`);
    }
  }

  private stop(why: string): false {
    this.listing.truncated ??= why;
    return false;
  }

  push(chunk: Uint8Array): boolean {
    if (this.listing.truncated) return false;
    this.bytes += chunk.length;
    if (this.bytes > this.limits.bytes) {
      return this.stop(`it passed ${Math.round(this.limits.bytes / 1048576)} MB`);
    }
    let from = 0;
    for (;;) {
      const z = chunk.indexOf(0, from);
      const end = z < 0 ? chunk.length : z;
      if (!this.overlong) {
        const part = chunk.subarray(from, end);
        if (this.pendingBytes + part.length > this.limits.record) {
          this.overlong = true;
          const head = this.dec.decode(
            [...this.pending, part].reduce((a, b) => new Uint8Array([...a, ...b]).slice(0, 200)),
          );
          this.reject("a record over 4 KB", head);
          this.pending = [];
          this.pendingBytes = 0;
        } else if (part.length) {
          this.pending.push(part.slice());
          this.pendingBytes += part.length;
        }
      }
      if (z < 0) return true;
      if (!this.overlong) {
        const rec = new Uint8Array(this.pendingBytes);
        let o = 0;
        for (const p of this.pending) rec.set(p, o), o += p.length;
        if (!this.record(this.dec.decode(rec))) return false;
      }
      this.pending = [];
      this.pendingBytes = 0;
      this.overlong = false;
      from = z + 1;
    }
  }

  /** One NUL-terminated record; false once a bound is reached. */
  private record(rec: string): boolean {
    if (!rec) return true;
    if (++this.entries > this.limits.entries) {
      return this.stop(`it passed ${this.limits.entries.toLocaleString("en")} entries`);
    }
    const l = this.listing;
    if (rec.startsWith("home\t")) {
      const home = rec.slice(5);
      // The first one counts (a forged one after it is refused); shown in messages and records.
      // deno-lint-ignore no-control-regex
      if (l.home || !home.startsWith("/") || /[\x00-\x1f\x7f-\x9f]/.test(home)) {
        this.reject("a second or unusable home", home);
      } else l.home = home.replace(/\/+$/, "") || "/";
      return true;
    }
    if (rec.startsWith("root\t")) {
      const root = rec.slice(5);
      this.root = !relPathProblem(root) && ROOTS.some((re) => re.test(root)) ? root : "";
      if (!this.root) this.reject("not a search root", root);
      return true;
    }
    const parts = rec.split("\t");
    if (parts.length < 6 || (parts[0] !== "f" && parts[0] !== "b")) {
      this.reject("not a listing record", rec);
      return true;
    }
    const path = parts.slice(5).join("\t");
    if (path.includes("\uFFFD")) {
      if (l.skipped.length < 20) l.skipped.push(path);
      return true;
    }
    const [bytes, mtime, files] = parts.slice(1, 4).map((n) =>
      /^-?\d{1,15}$/.test(n) ? Number(n) : NaN
    );
    const problem = relPathProblem(path) ??
      (!this.root || !path.startsWith(this.root + "/") ? "not under its search root" : undefined) ??
      (!(bytes >= 0) || !(files >= 0) || Number.isNaN(mtime) || !/^[01]$/.test(parts[4])
        ? "bad numbers"
        : undefined);
    if (problem) {
      this.reject(problem, path);
      return true;
    }
    const rel = path.slice(this.root.length + 1);
    if (!this.keep(rel)) return true;
    if (this.seen.has(path)) {
      this.reject("listed twice", path);
      return true;
    }
    if (l.candidates.length >= this.limits.candidates) {
      return this.stop(`it passed ${this.limits.candidates.toLocaleString("en")} artifacts`);
    }
    this.seen.add(path);
    l.candidates.push({
      type: parts[0] === "b" ? "bundle" : "file",
      bytes,
      mtime,
      files,
      complete: parts[0] === "f" || parts[4] === "1",
      path,
      rel,
    });
    return true;
  }
}

/** Parses the listing script's whole output (see ListingParser). */
export function parseListing(text: string, keep?: (rel: string) => boolean): Listing {
  const p = new ListingParser(keep);
  p.push(new TextEncoder().encode(text));
  return p.listing;
}

/** The guest command that runs the walk: system paths only, nothing of the guest's environment. */
export function listingCommand(): string {
  return 'cd "$HOME" && exec /usr/bin/env -i HOME="$HOME" ' + quoteArgs([
    "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
    "LC_ALL=C",
    "/usr/bin/perl",
    "-e",
    LISTING_SCRIPT,
    BUNDLE_EXTENSIONS.join(","),
    PRUNED.join(","),
    ...GUEST_ROOTS,
  ]);
}

/** At most `max` bytes of a stream as text; the rest is read and dropped. */
export async function boundedText(s: ReadableStream<Uint8Array>, max = 64 * 1024): Promise<string> {
  const keep: Uint8Array[] = [];
  let n = 0;
  for await (const c of s) {
    if (n < max) keep.push(c.subarray(0, max - n)), n += Math.min(c.length, max - n);
  }
  const all = new Uint8Array(n);
  let o = 0;
  for (const c of keep) all.set(c, o), o += c.length;
  return new TextDecoder().decode(all);
}

/** Lists the candidates in the guest that `keep` wants. */
export async function listGuest(
  guest: Guest,
  keep?: (rel: string) => boolean,
  timeoutMs = 300_000,
): Promise<Listing> {
  const ssh = new Deno.Command("ssh", {
    args: ["-F", guest.configFile, guest.alias, listingCommand()],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const kill = () => {
    try {
      ssh.kill("SIGKILL");
    } catch { /* gone */ }
  };
  let timedOut = false;
  const timer = setTimeout(() => (timedOut = true, kill()), timeoutMs);
  const parser = new ListingParser(keep);
  const stderr = boundedText(ssh.stderr);
  try {
    for await (const chunk of ssh.stdout) {
      if (!parser.push(chunk)) {
        kill();
        break;
      }
    }
  } catch { /* killed */ }
  const [status, err] = await Promise.all([ssh.status, stderr]);
  clearTimeout(timer);
  const listing = parser.listing;
  if (listing.truncated) return listing;
  if (timedOut) {
    throw new CalError(
      `Listing the build outputs in "${guest.workspace}" took over ${timeoutMs / 1000} s.`,
      {
        workspace: guest.workspace,
        hint: `Check the guest with \`cal-vm ssh ${guest.workspace}\`.`,
      },
    );
  }
  if (status.code === 255 && !listing.home) throw guest.sshError(err);
  if (status.code !== 0) {
    const said = err.trim().split("\n").pop() ?? "";
    throw new CalError(
      `Could not list the build outputs in "${guest.workspace}": exit ${status.code}${
        said ? ` (${safeText(said.slice(0, 300))})` : ""
      }.`,
      {
        workspace: guest.workspace,
        hint: /perl|env|No such file/.test(err)
          ? "cal's listing needs /usr/bin/perl in the guest (macOS ships it)."
          : `Check the guest with \`cal-vm ssh ${guest.workspace}\`.`,
      },
    );
  }
  return listing;
}
