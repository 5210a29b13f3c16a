/**
 * The GitHub workflow in the guest: clone into ~/workspace/<repo> on a branch, commit, push
 * (never to a protected branch, never forced), open a pull request whose body ends with a run
 * record, and report each repository's state. The source never touches the host.
 *
 * Two ways to GitHub. A workspace logged in itself (`cal-gh auth login WS`) uses gh and its
 * token inside the guest. Every other workspace goes through cal's broker (broker.ts) with the
 * host's one login: the guest's git config sends the GitHub host's URLs to the broker, which
 * checks every push; pull requests and the commit identity come from the host's API.
 */

import type { Config } from "../config.ts";
import { CalError, ExitCode, notFound, usageError, wrongState } from "../errors.ts";
import type { Guest } from "../guest/ssh.ts";
import type { Output } from "../output.ts";
import type { PullRequestRecord, RepoRecord } from "../records.ts";
import { updateVm, type VmFile } from "../store.ts";
import { connect, load, type Loaded } from "../workspace.ts";
import { VERSION } from "../version.ts";
import { hostOf } from "./auth.ts";
import { repoState } from "./status.ts";
import { reason, type RunResult } from "../process.ts";
import { gh, ghError, git } from "./gh.ts";
import { noLogin, openPull, viewer, webBase } from "./api.ts";
import { ensureBroker } from "./broker_daemon.ts";
import { ALWAYS_PROTECTED } from "./push_rules.ts";
import { hostToken } from "./token.ts";
import { GITHUB_BROKER } from "../guest/sandbox.ts";
import { vmnetGateway, waitBindable } from "../network/vmnet.ts";
import { safeText } from "../terminal.ts";

/**
 * GitHub's rules for OWNER/REPO: an owner of letters, digits and single inner hyphens (at most
 * 39); a repository of letters, digits, `.`, `_`, `-` (at most 100), not `.` or `..`, not
 * starting with `-` (gh would read it as an option).
 */
const OWNER = /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/;
const REPO_NAME = /^(?!-)(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$/;

/** Checks `--repo OWNER/REPO` before anything runs (exit 2); returns the repository's name. */
export function checkRepoSlug(slug: string): string {
  const [owner, repo, ...rest] = slug.split("/");
  const name = (repo ?? "").replace(/\.git$/, "");
  if (rest.length || !OWNER.test(owner) || !REPO_NAME.test(repo ?? "") || !REPO_NAME.test(name)) {
    throw usageError(
      `"${slug}" is not a GitHub repository (OWNER/REPO).`,
      "Pass --repo OWNER/REPO, e.g. --repo octo/app.",
    );
  }
  return name;
}
/** git's own rules for branch names, checked before git sees them. */
const BRANCH =
  /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)(?!.*\.lock$)(?!.*\/$)(?!.*\.$)[A-Za-z0-9._\/-]+$/;

function checkBranch(b: string): string {
  if (!BRANCH.test(b) || b.length > 200) {
    throw usageError(
      `"${b}" is not a valid branch name.`,
      "Use letters, digits, '-', '_', '.' and '/' (e.g. agent/fix-login).",
    );
  }
  return b;
}

/** `feature-work` → `agent/feature-work`; names that already have a prefix stay. */
export function withPrefix(branch: string, prefix: string): string {
  return branch.startsWith(prefix) || branch.includes("/") ? branch : prefix + branch;
}

function repoDir(home: string, repo: string) {
  return `${home}/workspace/${repo}`;
}

export interface CloneOptions {
  repo: string;
  branch?: string;
  newBranch?: string;
  hostname?: string;
}

export async function clone(
  name: string,
  o: CloneOptions,
  config: Config,
  out: Output,
): Promise<RepoRecord> {
  const repoName = checkRepoSlug(o.repo);
  if (o.branch && o.newBranch) {
    throw usageError("--branch and --new-branch exclude each other.", "Pass one.");
  }
  const newBranch = o.newBranch
    ? checkBranch(withPrefix(o.newBranch, config.github.default_branch_prefix))
    : undefined;
  if (o.branch) checkBranch(o.branch);
  if (newBranch && isProtected(newBranch, config)) {
    throw usageError(
      `"${newBranch}" is a protected branch name.`,
      "Work on a new branch like agent/my-change.",
    );
  }
  const w = await load(name);
  const host = hostOf(config, o.hostname) ?? w.vm.github?.host;
  if ((w.vm.github?.repos ?? []).some((r) => r.name === repoName)) {
    throw wrongState(
      `"${name}" already has a clone of ${repoName}.`,
      `Use it (~/workspace/${repoName}) or clone under another workspace.`,
      name,
    );
  }
  const guest = await connect(w);
  const home = await guest.home();
  const dir = repoDir(home, repoName);
  const exists = await guest.exec(["test", "-e", dir]);
  if (exists.code === 0) {
    throw wrongState(
      `${dir} already exists in the guest.`,
      "Move it aside in the guest, or use it as it is.",
      name,
    );
  }
  await guest.exec(["mkdir", "-p", `${home}/workspace`]);
  const viaBroker = brokered(w.vm);
  if (viaBroker) {
    await useBroker(w, guest, host ?? "github.com", config, o.repo.replace(/\.git$/, ""));
  }
  out.event("clone", `Cloning ${o.repo} into ~/workspace/${repoName}…`, { workspace: name });
  const r = viaBroker
    ? await guest.exec([
      "git",
      "clone",
      "-q",
      ...(o.branch ? ["--branch", o.branch] : []),
      "--",
      `${webBase(host ?? "github.com")}${o.repo.replace(/\.git$/, "")}.git`,
      dir,
    ], { timeoutMs: 300_000 })
    : await gh(guest, [
      "repo",
      "clone",
      o.repo,
      dir,
      ...(o.branch ? ["--", "--branch", o.branch] : []),
    ], { host });
  if (r.code !== 0) {
    if (o.branch && /Remote branch .* not found/i.test(r.stderr)) {
      throw notFound(
        `Branch "${o.branch}" does not exist in ${o.repo}.`,
        "Check the name, or create it with --new-branch.",
        name,
      );
    }
    throw (viaBroker ? brokerError : ghError)(`Cloning ${o.repo}`, r, name);
  }
  let branch = o.branch;
  if (newBranch) {
    const remote = await git(guest, dir, ["ls-remote", "--heads", "origin", newBranch], { host });
    if (remote.code === 0 && remote.stdout.trim()) {
      throw wrongState(
        `Branch "${newBranch}" already exists in ${o.repo}.`,
        `Check it out with --branch ${newBranch}, or pick another name. The clone is in ${dir}.`,
        name,
        "branch-exists",
      );
    }
    const co = await git(guest, dir, ["checkout", "-b", newBranch]);
    if (co.code !== 0) throw ghError(`Creating branch ${newBranch}`, co, name);
    branch = newBranch;
  }
  branch ??= (await git(guest, dir, ["rev-parse", "--abbrev-ref", "HEAD"])).stdout.trim();
  const url = `${host ?? "github.com"}/${o.repo}`;
  await updateVm(name, (vm) => {
    vm.github = {
      ...vm.github,
      repos: [...(vm.github?.repos ?? []), {
        name: repoName,
        url,
        branch,
        cloned_at: new Date().toISOString(),
      }],
    };
  });
  // The branch cal chose is the workspace's own from now on (the broker's rules).
  if (viaBroker) await ensureBroker(name, host ?? "github.com", config);
  return await repoState(guest, name, { name: repoName, url }, dir);
}

export { ALWAYS_PROTECTED };

/** Whether `vm` reaches GitHub through the broker (it has no login of its own). */
export const brokered = (vm: VmFile) => !vm.github?.authenticated;

/**
 * Makes the broker ready for `name` and points the guest's git at it for `host`'s URLs
 * (`url.<broker>.insteadOf`), once. Refuses (auth-failed) when the host has no login.
 */
async function useBroker(
  w: Loaded,
  guest: Guest,
  host: string,
  config: Config,
  cloning?: string,
) {
  const name = w.vm.name;
  if (!await hostToken(host)) {
    throw noLogin(
      host,
      name,
      ` Or log in inside this workspace: \`cal-gh auth login ${name} --token-stdin\`` +
        " (the agent can then read that token).",
    );
  }
  // A sandbox behind cal's proxy reaches the broker's socket through its relay; a Tart VM (and a
  // sandbox on the host's network) a TCP listener at an address it can reach, with a secret.
  const relay = w.vm.provider === "sandbox" &&
    (await guest.exec(["bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${GITHUB_BROKER.port}`]))
        .code === 0;
  const tcpHost = relay ? undefined : w.vm.provider === "tart" ? await vmnetGateway() : "127.0.0.1";
  if (tcpHost && !(await waitBindable(tcpHost, 30_000))) {
    throw new CalError(`The host has no address ${tcpHost} for cal's GitHub broker yet.`, {
      code: "network",
      hint: "Start the workspace (its VM network brings the address), then run the command again.",
      workspace: name,
    });
  }
  const info = await ensureBroker(name, host, config, tcpHost, cloning);
  const url = info.tcp
    ? `http://${info.tcp.host}:${info.tcp.port}/${info.secret}/`
    : GITHUB_BROKER.url;
  if (info.tcp) {
    // The guest's way there may take a moment to appear (the VM network's rules): wait for it.
    const probe = ["bash", "-c", `exec 3<>/dev/tcp/${info.tcp.host}/${info.tcp.port}`];
    const deadline = Date.now() + 15_000;
    while ((await guest.exec(probe)).code !== 0) {
      if (Date.now() > deadline) {
        throw new CalError(
          `The workspace cannot reach cal's GitHub broker at ${info.tcp.host}:${info.tcp.port}.`,
          {
            code: "network",
            hint: `Check the workspace's network (\`cal-vm net show ${name}\`), or log in inside ` +
              `it: \`cal-gh auth login ${name} --token-stdin\` (the agent can then read the token).`,
            workspace: name,
          },
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  // An earlier broker address (another port, another mode) goes.
  await forgetBroker(guest, url);
  const key = `url.${url}.insteadOf`;
  const have = await guest.exec(["git", "config", "--global", "--get-all", key]);
  const want = [webBase(host), ...(host === "github.com" ? ["git@github.com:"] : [])];
  // Straight to the broker, whatever the proxy variables say (an empty proxy is none).
  const np = await guest.exec(["git", "config", "--global", `http.${url}.proxy`, ""]);
  if (np.code !== 0) throw ghError("Pointing git at cal's GitHub broker", np, name);
  for (const w of want) {
    if (have.stdout.split("\n").includes(w)) continue;
    const r = await guest.exec(["git", "config", "--global", "--add", key, w]);
    if (r.code !== 0) throw ghError("Pointing git at cal's GitHub broker", r, name);
  }
}

/**
 * Takes the broker's addresses out of the guest's git config (but `keep`): for a new address,
 * or when the workspace logs in itself and its git should use that login.
 */
export async function forgetBroker(guest: Guest, keep?: string): Promise<void> {
  const old = await guest.exec([
    "git",
    "config",
    "--global",
    "--name-only",
    "--get-regexp",
    "^url\\..*\\.insteadof$",
  ]);
  for (const k of old.stdout.split("\n").filter(Boolean)) {
    const u = k.slice(4, -".insteadof".length);
    if (u !== keep && /^http:\/\/[\d.]+:\d+\/(?:[0-9a-f]{32}\/)?$/.test(u)) {
      await guest.exec(["git", "config", "--global", "--remove-section", `url.${u}`]);
      await guest.exec(["git", "config", "--global", "--remove-section", `http.${u}`]);
    }
  }
}

/**
 * A git failure through the broker: a refusal by its rules says which (exit 4, the broker's own
 * words as the hint, made safe for a terminal); an unreachable broker says why; others as
 * ghError.
 */
export function brokerError(what: string, r: RunResult, ws: string): CalError {
  const refused = /remote: cal: refused (?:(\S+) )?\(rule: ([\w-]+)\):? ?(.*?)\s*$/m.exec(r.stderr);
  if (refused) {
    const [, ref, rule, said] = refused;
    return wrongState(
      `${what}: cal's GitHub broker refused ${
        ref ? safeText(ref.replace(/^refs\/heads\//, "")) : "the push"
      } (rule: ${rule}).`,
      `${safeText(said)} Nothing was pushed.`,
      ws,
      // The branch rules are the protected-branch rule seen from the wire; a force is a rejection.
      rule === "no-force" ? "push-rejected" : "protected-branch",
    );
  }
  if (new RegExp(`127\\.0\\.0\\.1.*${GITHUB_BROKER.port}`).test(r.stderr)) {
    return new CalError(`${what}: the workspace cannot reach cal's GitHub broker.`, {
      code: "network",
      hint: "The broker is reached through cal's egress network: use the allowlist mode " +
        `(\`cal-vm net mode ${ws} allowlist\`, then restart the workspace), or log in inside ` +
        `the workspace: \`cal-gh auth login ${ws} --token-stdin\`.`,
      workspace: ws,
    });
  }
  return ghError(what, r, ws);
}

/** main, master, develop, the remote's default branch, and `github.protected_branches`. */
export function isProtected(branch: string, config: Config, defaultBranch?: string): boolean {
  return ALWAYS_PROTECTED.includes(branch) || config.github.protected_branches.includes(branch) ||
    branch === defaultBranch;
}

/** The workspace, its chosen repository, the GitHub host, a guest connection and the repo's folder. */
async function openRepo(name: string, o: { repo?: string; hostname?: string }, config: Config) {
  const w = await load(name);
  const r = pickRepo(w.vm, o.repo);
  const host = hostOf(config, o.hostname) ?? w.vm.github?.host;
  const guest = await connect(w);
  return { w, r, host, guest, dir: repoDir(await guest.home(), r.name) };
}

/** The repository a command works on: named, or the only/first one. */
function pickRepo(vm: VmFile, repo?: string) {
  const repos = vm.github?.repos ?? [];
  if (!repos.length) {
    throw notFound(
      `Workspace "${vm.name}" has no cloned repository.`,
      `Clone one: \`cal-gh clone ${vm.name} --repo OWNER/REPO --new-branch NAME\`.`,
      vm.name,
    );
  }
  const r = repo ? repos.find((x) => x.name === repo) : repos[0];
  if (!r) {
    throw notFound(
      `Workspace "${vm.name}" has no repository "${repo}".`,
      `Its repositories: ${repos.map((x) => x.name).join(", ")}.`,
      vm.name,
    );
  }
  return r;
}

async function currentBranch(guest: Guest, dir: string, ws: string): Promise<string> {
  const r = await git(guest, dir, ["rev-parse", "--abbrev-ref", "HEAD"]);
  if (r.code !== 0) throw ghError("Reading the current branch", r, ws);
  return r.stdout.trim();
}

async function defaultBranch(guest: Guest, dir: string): Promise<string | undefined> {
  const r = await git(guest, dir, ["symbolic-ref", "--short", "refs/remotes/origin/HEAD"]);
  return r.code === 0 ? r.stdout.trim().replace(/^origin\//, "") : undefined;
}

/** Refuses (exit 4) before any git command that writes, when the branch is protected. */
async function guardBranch(guest: Guest, dir: string, ws: string, config: Config): Promise<string> {
  const branch = await currentBranch(guest, dir, ws);
  const def = await defaultBranch(guest, dir);
  if (branch === "HEAD" || isProtected(branch, config, def)) {
    throw new CalError(
      branch === "HEAD"
        ? `The repository in "${ws}" is not on a branch (detached HEAD); cal will not push it.`
        : `"${branch}" is a protected branch${
          branch === def ? " (the remote's default)" : ""
        }; cal never pushes to it.`,
      {
        code: branch === "HEAD" ? "wrong-state" : "protected-branch",
        exit: ExitCode.wrongState,
        hint:
          `Move the work to a new branch and push that: \`cal-vm ssh ${ws} 'cd ${dir} && git switch -c agent/my-change'\`, then run the command again.`,
        workspace: ws,
      },
    );
  }
  return branch;
}

async function identity(
  guest: Guest,
  dir: string,
  host: string | undefined,
  w: Loaded,
): Promise<string[]> {
  const email = await git(guest, dir, ["config", "user.email"]);
  if (email.code === 0 && email.stdout.trim()) return [];
  let login: string | undefined, id: string | undefined;
  if (brokered(w.vm)) {
    const v = await viewer(host ?? "github.com", w.vm.name);
    [login, id] = v ? [v.login, String(v.id)] : [];
  } else {
    const u = await gh(guest, ["api", "user", "--jq", '.login + " " + (.id|tostring)'], { host });
    [login, id] = u.code === 0 ? u.stdout.trim().split(" ") : [];
  }
  if (!login || !id) {
    return ["-c", "user.name=cal agent", "-c", "user.email=cal-agent@users.noreply.github.com"];
  }
  return [
    "-c",
    `user.name=${login}`,
    "-c",
    `user.email=${id}+${login}@users.noreply.${host ?? "github.com"}`,
  ];
}

export interface CommitOptions {
  message: string;
  repo?: string;
  push?: boolean;
  pr?: boolean;
  prTitle?: string;
  prBody?: string;
  base?: string;
  draft?: boolean;
  hostname?: string;
}

export async function commit(
  name: string,
  o: CommitOptions,
  config: Config,
  out: Output,
): Promise<(RepoRecord | PullRequestRecord)[]> {
  if (!o.message.trim()) {
    throw usageError("The commit message is empty.", 'Pass --message "what changed".');
  }
  const { w, r, host, guest, dir } = await openRepo(name, o, config);
  const pushing = o.push || o.pr || config.github.auto_push;
  if (pushing) await guardBranch(guest, dir, name, config);
  const status = await git(guest, dir, ["status", "--porcelain"]);
  if (status.code !== 0) throw ghError("git status", status, name);
  const clean = !status.stdout.trim();
  // "Commit and push" with nothing new still pushes the commits that are not on the remote yet.
  const waiting = clean && pushing ? await unpushed(guest, dir, name) : 0;
  if (clean && !waiting) {
    throw wrongState(
      `Nothing to commit in ${r.name}: the working tree is clean` +
        (pushing ? " and every commit is pushed." : "."),
      "Let the agent change something first" +
        (pushing ? "." : ", or push what is committed with `cal-gh push`."),
      name,
      "nothing-to-commit",
    );
  }
  if (clean) {
    out.event(
      "nothing-new",
      `Nothing new to commit in ${r.name}; pushing the ${waiting} commit${
        waiting === 1 ? "" : "s"
      } not pushed yet.`,
      { workspace: name, unpushed: waiting },
    );
  } else {
    const add = await git(guest, dir, ["add", "-A"]);
    if (add.code !== 0) throw ghError("git add", add, name);
    const c = await git(guest, dir, [
      ...await identity(guest, dir, host, w),
      "commit",
      "-q",
      "-m",
      o.message,
    ]);
    if (c.code !== 0) throw ghError("git commit", c, name);
    out.event("commit", `Committed in ${r.name}: ${o.message.split("\n")[0]}`, {
      workspace: name,
    });
  }
  const results: (RepoRecord | PullRequestRecord)[] = [];
  if (pushing) await pushIn(guest, dir, name, config, host, out, w);
  results.push({
    ...await repoState(guest, name, r, dir),
    commit: (await git(guest, dir, ["rev-parse", "HEAD"])).stdout.trim(),
    pushed: !!pushing,
  });
  if (o.pr || config.github.create_pr) {
    results.push(
      await prIn(
        w,
        guest,
        dir,
        r.name,
        {
          title: o.prTitle ?? o.message.split("\n")[0],
          body: o.prBody ?? o.message,
          base: o.base,
          draft: o.draft,
        },
        config,
        host,
        out,
      ),
    );
  }
  return results;
}

/**
 * Commits on the current branch that its remote branch lacks; for a branch never pushed, those
 * not on the remote's default branch it was cut from.
 */
async function unpushed(guest: Guest, dir: string, ws: string): Promise<number> {
  const branch = await currentBranch(guest, dir, ws);
  for (const base of [`refs/remotes/origin/${branch}`, "refs/remotes/origin/HEAD"]) {
    const r = await git(guest, dir, ["rev-list", "--count", `${base}..HEAD`]);
    if (r.code === 0) return Number(r.stdout.trim()) || 0;
  }
  return 0;
}

async function pushIn(
  guest: Guest,
  dir: string,
  ws: string,
  config: Config,
  host: string | undefined,
  out: Output,
  w: Loaded,
) {
  const branch = await guardBranch(guest, dir, ws, config);
  const viaBroker = brokered(w.vm);
  if (viaBroker) await useBroker(w, guest, host ?? "github.com", config);
  out.event("push", `Pushing ${branch}…`, { workspace: ws });
  const p = await git(guest, dir, ["push", "-u", "origin", `HEAD:refs/heads/${branch}`], { host });
  if (p.code !== 0) throw (viaBroker ? brokerError : ghError)(`Pushing ${branch}`, p, ws);
  return branch;
}

export async function push(
  name: string,
  o: { repo?: string; hostname?: string },
  config: Config,
  out: Output,
): Promise<RepoRecord> {
  const { w, r, host, guest, dir } = await openRepo(name, o, config);
  await pushIn(guest, dir, name, config, host, out, w);
  return { ...await repoState(guest, name, r, dir), pushed: true };
}

export interface PrOptions {
  title: string;
  body?: string;
  base?: string;
  draft?: boolean;
  repo?: string;
  hostname?: string;
}

/** The run record a reviewer sees at the end of the body: how the change was made. */
export function runRecord(vm: VmFile): string {
  const run = vm.last_run;
  const first = run?.prompt?.split("\n")[0];
  const lines = [
    "",
    "---",
    `<sub>Made in an isolated workspace with cal ${VERSION}.</sub>`,
    "",
    `- Workspace: \`${vm.name}\``,
    `- Agent: ${run?.agent ?? vm.agent ?? "(none recorded)"}`,
    `- Prompt: ${
      first
        ? JSON.stringify(first.length > 200 ? first.slice(0, 200) + "…" : first)
        : "(interactive session)"
    }`,
    `- Session-start snapshot: ${run?.snapshot ?? "(none)"}`,
  ];
  return lines.join("\n");
}

async function prIn(
  w: Loaded,
  guest: Guest,
  dir: string,
  repo: string,
  o: PrOptions,
  config: Config,
  host: string | undefined,
  out: Output,
): Promise<PullRequestRecord> {
  const name = w.vm.name;
  const head = await guardBranch(guest, dir, name, config);
  const base = o.base ?? await defaultBranch(guest, dir) ?? "main";
  // gh pr create needs the branch on the remote; push what is not there yet.
  const ahead = await git(guest, dir, ["rev-list", "--count", `origin/${head}..HEAD`]);
  if (ahead.code !== 0 || Number(ahead.stdout.trim()) > 0) {
    await pushIn(guest, dir, name, config, host, out, w);
  }
  const body = (o.body ?? "") + "\n" + runRecord(w.vm);
  if (brokered(w.vm)) {
    // From the host, with the host's login: the guest holds no token.
    const slug = (w.vm.github?.repos ?? []).find((x) => x.name === repo)?.url.split("/")
      .slice(1).join("/");
    if (!slug) throw notFound(`No record of where ${repo} came from.`, undefined, name);
    const p = await openPull(
      host ?? "github.com",
      slug,
      { title: o.title, body, head, base, draft: !!o.draft },
      name,
    );
    if (p.existed) out.warn(`A pull request for ${head} already exists: ${p.url}`, name);
    return {
      kind: "pr",
      workspace: name,
      repo,
      url: p.url,
      number: p.number,
      title: o.title,
      base,
      head,
      draft: !!o.draft,
    };
  }
  const args = [
    "pr",
    "create",
    "--title",
    o.title,
    "--body-file",
    "-",
    "--base",
    base,
    "--head",
    head,
  ];
  if (o.draft) args.push("--draft");
  const r = await gh(guest, args, { host, cwd: dir, stdin: body });
  const url = /(https?:\/\/\S+\/pull\/\d+)/.exec(r.stdout + "\n" + r.stderr)?.[1];
  if (r.code !== 0 && !(url && /already exists/.test(r.stderr))) {
    throw ghError("gh pr create", r, name);
  }
  if (!url) {
    throw new CalError(`gh pr create did not print a pull request URL: ${reason(r)}`, {
      workspace: name,
    });
  }
  if (r.code !== 0) out.warn(`A pull request for ${head} already exists: ${url}`, name);
  return {
    kind: "pr",
    workspace: name,
    repo,
    url,
    number: Number(/\/pull\/(\d+)/.exec(url)?.[1]),
    title: o.title,
    base,
    head,
    draft: !!o.draft,
  };
}

export async function pr(
  name: string,
  o: PrOptions,
  config: Config,
  out: Output,
): Promise<PullRequestRecord> {
  const { w, r, host, guest, dir } = await openRepo(name, o, config);
  return await prIn(w, guest, dir, r.name, o, config, host, out);
}
