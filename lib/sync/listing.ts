/**
 * What builds left in the guest: one guest command (a Perl walk, NUL-separated, with size,
 * mtime and file count) lists candidate files and bundles under the search roots, never
 * entering pruned folders or following links. See pull.ts for why Perl.
 */

import { CalError } from "../errors.ts";
import { reason } from "../process.ts";
import type { Guest } from "../guest/ssh.ts";
import { quoteArgs } from "../shell.ts";
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
  /** Names the listing could not carry faithfully (not UTF-8). */
  skipped: string[];
}

/** Parses the listing script's output. */
export function parseListing(text: string): Listing {
  const listing: Listing = { home: "", candidates: [], skipped: [] };
  let root = "";
  for (const rec of text.split("\0")) {
    if (!rec) continue;
    if (rec.startsWith("home\t")) {
      listing.home = rec.slice(5);
      continue;
    }
    if (rec.startsWith("root\t")) {
      root = rec.slice(5);
      continue;
    }
    const parts = rec.split("\t");
    if (parts.length < 6 || (parts[0] !== "f" && parts[0] !== "b")) continue;
    const path = parts.slice(5).join("\t");
    if (path.includes("\uFFFD")) {
      listing.skipped.push(path);
      continue;
    }
    const rel = root && path.startsWith(root + "/") ? path.slice(root.length + 1) : path;
    listing.candidates.push({
      type: parts[0] === "b" ? "bundle" : "file",
      bytes: Number(parts[1]),
      mtime: Number(parts[2]),
      files: Number(parts[3]),
      complete: parts[0] === "f" || parts[4] === "1",
      path,
      rel,
    });
  }
  return listing;
}

/** What was synced before, kept in the workspace's folder. */

/** Lists the candidates in the guest. */
export async function listGuest(guest: Guest): Promise<Listing> {
  const cmd = quoteArgs([
    "perl",
    "-e",
    LISTING_SCRIPT,
    BUNDLE_EXTENSIONS.join(","),
    PRUNED.join(","),
    ...GUEST_ROOTS,
  ]);
  const r = await guest.sh(cmd, { timeoutMs: 300_000 });
  if (r.code !== 0) {
    throw new CalError(
      `Could not list the build outputs in "${guest.workspace}": ${reason(r)}.`,
      {
        workspace: guest.workspace,
        hint: /perl: (command )?not found|No such file/.test(r.stderr)
          ? "cal's listing needs /usr/bin/perl in the guest (macOS ships it)."
          : `Check the guest with \`cal-vm ssh ${guest.workspace}\`.`,
      },
    );
  }
  return parseListing(r.stdout);
}
