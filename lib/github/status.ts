/** Each repository's state in the guest: branch, changes, last commit, ahead/behind. */

import type { Guest } from "../guest/ssh.ts";
import { ago } from "../output.ts";
import type { RepoRecord } from "../records.ts";
import { connect, load } from "../workspace.ts";
import { ghError } from "./gh.ts";

const repoDir = (home: string, repo: string) => `${home}/workspace/${repo}`;

/**
 * What ahead/behind is counted against: the branch's upstream, else the remote's default branch
 * (`origin/HEAD`, what `cal-gh clone --new-branch` cut the branch from, so a branch that was never
 * pushed still shows its own commits), else nothing. Prints the ref and the counts on two lines.
 */
const COMPARE =
  'base=$(git rev-parse --abbrev-ref --symbolic-full-name "@{upstream}" 2>/dev/null) ' +
  "|| base=$(git symbolic-ref --short -q refs/remotes/origin/HEAD 2>/dev/null) || base=; " +
  'if [ -n "$base" ]; then echo "$base"; ' +
  'git rev-list --left-right --count "$base...HEAD" 2>/dev/null; fi';

/** One repository's state: branch, changes, last commit, ahead/behind (see COMPARE). */
export async function repoState(
  guest: Guest,
  ws: string,
  r: { name: string; url: string },
  dir: string,
): Promise<RepoRecord> {
  const script =
    "command -v git >/dev/null || { echo 'cal-status: git: not found' >&2; exit 127; }; " +
    'git rev-parse --abbrev-ref HEAD; echo "--"; git status --porcelain; echo "--"; ' +
    'git log -1 --format="%s%x09%cI" 2>/dev/null; echo "--"; ' + COMPARE;
  const res = await guest.exec(["sh", "-c", `cd "$1" && { ${script}; }`, "cal-status", dir]);
  if (res.code !== 0 && !res.stdout) throw ghError(`Reading ${r.name}`, res, ws);
  const [branch, status, last, compare] = res.stdout.split("--\n").map((s) => s.trim());
  const lines = status ? status.split("\n") : [];
  const count = (re: RegExp) => lines.filter((l) => re.test(l.slice(0, 2))).length;
  const [subject, at] = (last ?? "").split("\t");
  const [base, counts] = (compare ?? "").split("\n").map((s) => s.trim());
  const [behind, ahead] = (counts ?? "").split(/\s+/).map(Number);
  return {
    kind: "repo",
    workspace: ws,
    repo: r.name,
    url: r.url,
    branch: branch ?? "?",
    modified: count(/M/),
    added: count(/A/),
    deleted: count(/D/),
    untracked: count(/\?\?/),
    ...(Number.isFinite(ahead) && Number.isFinite(behind)
      ? { ahead, behind, compared_with: base }
      : {}),
    ...(subject ? { last_commit: subject, last_commit_at: at } : {}),
  };
}

export async function repoStatuses(name: string): Promise<RepoRecord[]> {
  const w = await load(name);
  const repos = w.vm.github?.repos ?? [];
  if (!repos.length) return [];
  const guest = await connect(w);
  const home = await guest.home();
  const out: RepoRecord[] = [];
  for (const r of repos) out.push(await repoState(guest, name, r, repoDir(home, r.name)));
  return out;
}

/** The spec's status lines for one repository. */
export function repoText(r: RepoRecord): string {
  const plural = (n: number, what: string) => `${n} file${n === 1 ? "" : "s"} ${what}`;
  const lines = [`  ${r.repo} (branch: ${r.branch})`];
  if (r.modified) lines.push(`    - ${plural(r.modified, "modified")}`);
  if (r.added + r.untracked) lines.push(`    - ${plural(r.added + r.untracked, "added")}`);
  if (r.deleted) lines.push(`    - ${plural(r.deleted, "deleted")}`);
  if (r.last_commit_at) {
    lines.push(`    - Last commit: ${ago(r.last_commit_at).replace(/ ago$/, "")} ago`);
  }
  if (r.ahead !== undefined) {
    // Against its own remote branch, or (never pushed) the branch it was cut from, named.
    const own = !r.compared_with || r.compared_with.endsWith(`/${r.branch}`);
    lines.push(
      `    - ${r.ahead} ahead, ${r.behind} behind ${own ? "the remote" : r.compared_with}`,
    );
  }
  return lines.join("\n");
}
