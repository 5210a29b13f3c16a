/**
 * The rig's GitHub stand-in: a local "github.localhost" for the REAL `gh` (2.23.0) and REAL git.
 *
 * gh treats the host `github.localhost` specially (cli/cli v2.23.0 internal/ghinstance/host.go):
 * REST at `http://api.github.localhost/`, GraphQL at `http://api.github.localhost/graphql`, git
 * remotes and web URLs at `http://github.localhost/OWNER/REPO(.git)` — plain HTTP, port 80. One
 * Deno.serve server answers all of it and dispatches on the Host header:
 *
 * - `api.github.localhost`: REST (`/`, `/user`, `/users/L`, `/user/repos`, `/repos/O/R`,
 *   `/repos/O/R/branches[/B]`, `/repos/O/R/pulls[/N]` GET+POST, `/rate_limit`) and GraphQL
 *   (`POST /graphql`, a schema-less executor over viewer / repository / pullRequests /
 *   createPullRequest …, see github_graphql.ts). Both need `Authorization: token X` (or
 *   `bearer X`, or Basic with the token as password); a classic token's scopes come back in
 *   `X-OAuth-Scopes`, which is what `gh auth login --with-token` and `gh auth status` check.
 * - `github.localhost`: git smart HTTP by the real `git http-backend` (CGI), bare repos under
 *   `<root>/repos/OWNER/REPO.git`; pushes need Basic auth whose password is a known token (401 +
 *   `WWW-Authenticate: Basic realm="GitHub"` otherwise), fetches need it for private repos only,
 *   as on github.com. Other paths (`/O/R`, `/O/R/pull/N`) answer a tiny HTML page.
 * - Anything else: 404 `{"message":"Not Found"}`, recorded with `unhandled: true`.
 *
 * Reaching it: either port 80 plus /etc/hosts entries for both names ({@link ensureHostsEntries};
 * glibc and gh's Go resolver both read /etc/hosts), or any port with the clients pointed at it as
 * an HTTP proxy ({@link proxyEnv}: gh's Go net/http and git's curl both honour `http_proxy` for
 * these names), which needs neither root nor port 80 and lets test files run in parallel.
 *
 * gh 2.23.0 quirk: `gh auth git-credential` answers only `protocol=https`, so after
 * `gh auth setup-git` git still has no credentials for `http://github.localhost` (pushes fail
 * with "could not read Username"). {@link gitCredentialShimEnv} adds a helper that fills in
 * `gh auth token` for that host.
 *
 *     const gh = await startGitHub({ root: tmp, port: 0 });
 *     gh.state.addToken("ghp_good", { login: "octo", scopes: ["repo", "read:org"] });
 *     await gh.state.createRepo("octo", "hello", { files: { "README.md": "# hi\n" } });
 *     // … run gh / git with { ...proxyEnv(gh.port), GH_CONFIG_DIR, HOME } …
 *     gh.state.pulls; gh.state.requests; await gh.state.setNetworkDown(true); await gh.close();
 *
 * CLI: `deno run -A tests/rig/github.ts --port N --data DIR [--hostname 127.0.0.1]
 * [--token TOKEN=LOGIN[:scope,scope]] [--repo OWNER/NAME] [--ensure-hosts]` prints one JSON line
 * `{"url","port","root","apiUrl","gitUrl","proxy"}` once listening and runs until SIGINT/SIGTERM.
 * See GITHUB.md.
 */

import { join } from "node:path";
import { execute, GraphQLError, type Json } from "./github_graphql.ts";

export const WEB_HOST = "github.localhost";
export const API_HOST = "api.github.localhost";
const DOCS = "https://docs.github.com/rest";
const EPOCH = "2024-01-01T00:00:00Z";

export interface TokenInfo {
  login: string;
  /** Classic token scopes, sent back in `X-OAuth-Scopes`. Default `["repo", "read:org"]`. */
  scopes?: string[];
  /** Fine-grained token: no `X-OAuth-Scopes` header (gh then skips its scope check). */
  fineGrained?: boolean;
  /**
   * A fine-grained token's repository permissions, each "write" unless given. Without Contents
   * write a push gets 403 `Write access to repository not granted.`; without Pull requests write
   * createPullRequest gets 403 `Resource not accessible by personal access token`, as GitHub.
   */
  permissions?: { contents?: Access; pull_requests?: Access };
}

export type Access = "none" | "read" | "write";

export interface RepoRecord {
  owner: string;
  name: string;
  id: number;
  nodeId: string;
  defaultBranch: string;
  private: boolean;
  description: string;
  /** The bare repository on disk. */
  path: string;
}

export interface PullRecord {
  number: number;
  nodeId: string;
  /** "OWNER/NAME" */
  repo: string;
  title: string;
  body: string;
  base: string;
  head: string;
  draft: boolean;
  author: string;
  state: "OPEN" | "CLOSED" | "MERGED";
  url: string;
  createdAt: string;
  maintainerCanModify: boolean;
  /** "graphql" or "rest" */
  via: string;
}

export interface RequestRecord {
  at: string;
  method: string;
  host: string;
  /** Path plus query string (values of token-like parameters replaced by "***"). */
  path: string;
  /** An Authorization header was present (its value is never recorded). */
  authorization: boolean;
  /** The login the credentials belong to, when they were valid. */
  login?: string;
  kind: "rest" | "graphql" | "git" | "web" | "other";
  /** GraphQL: operation name (or the top-level fields when unnamed). */
  operation?: string;
  status: number;
  /** No route matched (the 404 catch-all). */
  unhandled?: true;
  /** Answered while the network was "down". */
  networkDown?: true;
}

export interface PushRecord {
  repo: string;
  login: string;
  /** ref → [old sha | null, new sha | null] */
  updates: Record<string, [string | null, string | null]>;
}

export type NetworkDownMode = "503" | "refuse";

interface Credentials {
  present: boolean;
  token?: string;
  info?: TokenInfo;
}

// ---------------------------------------------------------------------------------------------
// git helpers

async function git(args: string[], o: { cwd?: string; env?: Record<string, string> } = {}) {
  const r = await new Deno.Command("git", {
    args,
    cwd: o.cwd,
    env: {
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_TERMINAL_PROMPT: "0",
      ...o.env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

async function gitOk(args: string[], o: { cwd?: string; env?: Record<string, string> } = {}) {
  const r = await git(args, o);
  if (r.code !== 0) throw new Error(`git ${args.join(" ")} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// state

/** Everything the stand-in knows and saw; tests configure and inspect it. */
export class GitHubState {
  readonly tokens = new Map<string, TokenInfo>();
  readonly repos: RepoRecord[] = [];
  readonly pulls: PullRecord[] = [];
  readonly requests: RequestRecord[] = [];
  readonly pushes: PushRecord[] = [];
  /** GraphQL field paths no object defined (answered null): useful when a gh command misbehaves. */
  readonly unknownFields = new Set<string>();
  /** stderr of `git http-backend` runs that said something. */
  readonly gitErrors: string[] = [];
  networkDown: false | NetworkDownMode = false;
  #nextId = 1000;
  #issueNumbers = new Map<string, number>();
  /** Set by startGitHub: stops / restarts the listener for "refuse" mode. */
  onNetwork?: (down: boolean) => Promise<void>;

  constructor(readonly root: string) {}

  /** Makes `token` valid for `login` (classic, scopes `repo` + `read:org` unless given). */
  addToken(token: string, info: TokenInfo): void {
    this.tokens.set(token, { scopes: ["repo", "read:org"], ...info });
  }

  removeToken(token: string): void {
    this.tokens.delete(token);
  }

  /**
   * "Network down": mode "503" (default) answers every request 503; mode "refuse" closes the
   * listening socket so connections are refused. `setNetworkDown(false)` brings it back (same
   * port). Await it in "refuse" mode.
   */
  async setNetworkDown(down: boolean, o: { mode?: NetworkDownMode } = {}): Promise<void> {
    const wasRefusing = this.networkDown === "refuse";
    this.networkDown = down ? (o.mode ?? "503") : false;
    const refusing = this.networkDown === "refuse";
    if (refusing !== wasRefusing) await this.onNetwork?.(refusing);
  }

  /** Directory holding the bare repositories (GIT_PROJECT_ROOT). */
  get reposDir(): string {
    return join(this.root, "repos");
  }

  findRepo(owner: string, name: string): RepoRecord | undefined {
    const o = owner.toLowerCase();
    const n = name.toLowerCase().replace(/\.git$/, "");
    return this.repos.find((r) => r.owner.toLowerCase() === o && r.name.toLowerCase() === n);
  }

  /**
   * Creates a real bare repo `<root>/repos/OWNER/NAME.git` with one commit on `defaultBranch`
   * holding `files` (a README.md when none are given; no commit at all with `empty: true`).
   */
  async createRepo(
    owner: string,
    name: string,
    o: {
      defaultBranch?: string;
      files?: Record<string, string>;
      private?: boolean;
      description?: string;
      empty?: boolean;
    } = {},
  ): Promise<RepoRecord> {
    if (this.findRepo(owner, name)) throw new Error(`repo ${owner}/${name} exists already`);
    const defaultBranch = o.defaultBranch ?? "main";
    const path = join(this.reposDir, owner, `${name}.git`);
    await Deno.mkdir(path, { recursive: true });
    await gitOk(["init", "--quiet", "--bare", `--initial-branch=${defaultBranch}`, path]);
    await gitOk(["-C", path, "config", "http.receivepack", "true"]);
    if (!o.empty) {
      const work = await Deno.makeTempDir({ prefix: "gh-standin-seed-" });
      try {
        const files = o.files && Object.keys(o.files).length
          ? o.files
          : { "README.md": `# ${name}\n` };
        for (const [p, content] of Object.entries(files)) {
          const f = join(work, p);
          await Deno.mkdir(join(f, ".."), { recursive: true });
          await Deno.writeTextFile(f, content);
        }
        const env = {
          GIT_AUTHOR_NAME: owner,
          GIT_AUTHOR_EMAIL: `${owner}@users.noreply.github.localhost`,
          GIT_COMMITTER_NAME: owner,
          GIT_COMMITTER_EMAIL: `${owner}@users.noreply.github.localhost`,
          GIT_AUTHOR_DATE: EPOCH,
          GIT_COMMITTER_DATE: EPOCH,
        };
        const gw = ["--git-dir", path, "--work-tree", work];
        await gitOk([...gw, "add", "-A"], { env });
        await gitOk([...gw, "commit", "--quiet", "-m", "Initial commit"], { env });
        await Deno.remove(join(path, "index")).catch(() => {});
      } finally {
        await Deno.remove(work, { recursive: true });
      }
    }
    const id = this.#nextId++;
    const rec: RepoRecord = {
      owner,
      name,
      id,
      nodeId: `R_${id}`,
      defaultBranch,
      private: o.private ?? false,
      description: o.description ?? "",
      path,
    };
    this.repos.push(rec);
    return rec;
  }

  /** The repo's refs (`refs/heads/main` → sha), read with real git. */
  refs(owner: string, name: string): Promise<Record<string, string>> {
    const r = this.findRepo(owner, name);
    if (!r) return Promise.reject(new Error(`no repo ${owner}/${name}`));
    return readRefs(r.path);
  }

  /** Next issue/PR number of a repo (GitHub shares one sequence). */
  nextNumber(repo: RepoRecord): number {
    const k = `${repo.owner}/${repo.name}`.toLowerCase();
    const n = (this.#issueNumbers.get(k) ?? 0) + 1;
    this.#issueNumbers.set(k, n);
    return n;
  }

  newId(): number {
    return this.#nextId++;
  }
}

async function readRefs(path: string): Promise<Record<string, string>> {
  const out = await gitOk(["--git-dir", path, "for-each-ref", "--format=%(refname) %(objectname)"]);
  const refs: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const [ref, sha] = line.split(" ");
    if (ref) refs[ref] = sha;
  }
  return refs;
}

async function branchSha(repo: RepoRecord, branch: string): Promise<string | null> {
  const r = await git([
    "--git-dir",
    repo.path,
    "rev-parse",
    "--verify",
    "--quiet",
    `refs/heads/${branch}^{commit}`,
  ]);
  return r.code === 0 ? r.stdout.trim() : null;
}

function canRead(info: TokenInfo | undefined, repo: RepoRecord): boolean {
  if (!repo.private) return true;
  if (!info) return false;
  return !!info.fineGrained || (info.scopes ?? []).includes("repo");
}

function canWrite(info: TokenInfo | undefined, repo: RepoRecord): boolean {
  if (!info) return false;
  if (info.fineGrained) return (info.permissions?.contents ?? "write") === "write";
  const s = info.scopes ?? [];
  return s.includes("repo") || (!repo.private && s.includes("public_repo"));
}

// ---------------------------------------------------------------------------------------------
// JSON shapes

function userId(login: string): number {
  let h = 0;
  for (const c of login.toLowerCase()) h = (h * 31 + c.charCodeAt(0)) % 9_000_000;
  return 1_000_000 + h;
}

function userJson(login: string) {
  const id = userId(login);
  return {
    login,
    id,
    node_id: `U_${id}`,
    avatar_url: `http://${WEB_HOST}/${login}.png`,
    url: `http://${API_HOST}/users/${login}`,
    html_url: `http://${WEB_HOST}/${login}`,
    type: "User",
    site_admin: false,
    name: login,
    company: null,
    blog: "",
    location: null,
    email: null,
    bio: null,
    public_repos: 0,
    followers: 0,
    following: 0,
    created_at: EPOCH,
    updated_at: EPOCH,
  };
}

function repoJson(r: RepoRecord, viewer?: TokenInfo) {
  const write = canWrite(viewer, r);
  return {
    id: r.id,
    node_id: r.nodeId,
    name: r.name,
    full_name: `${r.owner}/${r.name}`,
    private: r.private,
    visibility: r.private ? "private" : "public",
    owner: {
      login: r.owner,
      id: userId(r.owner),
      node_id: `U_${userId(r.owner)}`,
      type: "User",
    },
    html_url: `http://${WEB_HOST}/${r.owner}/${r.name}`,
    description: r.description || null,
    fork: false,
    url: `http://${API_HOST}/repos/${r.owner}/${r.name}`,
    clone_url: `http://${WEB_HOST}/${r.owner}/${r.name}.git`,
    ssh_url: `git@${WEB_HOST}:${r.owner}/${r.name}.git`,
    default_branch: r.defaultBranch,
    archived: false,
    disabled: false,
    created_at: EPOCH,
    updated_at: EPOCH,
    pushed_at: EPOCH,
    permissions: {
      admin: viewer?.login.toLowerCase() === r.owner.toLowerCase(),
      maintain: write,
      push: write,
      triage: write,
      pull: true,
    },
  };
}

function pullJson(p: PullRecord, repo: RepoRecord) {
  return {
    id: parseInt(p.nodeId.slice(3), 10),
    node_id: p.nodeId,
    number: p.number,
    state: p.state === "OPEN" ? "open" : "closed",
    title: p.title,
    body: p.body,
    draft: p.draft,
    user: { login: p.author, id: userId(p.author), type: "User" },
    html_url: p.url,
    url: `http://${API_HOST}/repos/${p.repo}/pulls/${p.number}`,
    head: { ref: p.head, label: `${repo.owner}:${p.head}`, repo: repoJson(repo) },
    base: { ref: p.base, label: `${repo.owner}:${p.base}`, repo: repoJson(repo) },
    maintainer_can_modify: p.maintainerCanModify,
    merged: p.state === "MERGED",
    created_at: p.createdAt,
    updated_at: p.createdAt,
  };
}

/** A GraphQL connection over `items`. */
function conn(items: Json[]) {
  return {
    nodes: items,
    edges: items.map((node, i) => ({ node, cursor: `c${i}` })),
    totalCount: items.length,
    pageInfo: { hasNextPage: false, hasPreviousPage: false, endCursor: null, startCursor: null },
  };
}

// ---------------------------------------------------------------------------------------------
// PR creation (shared by GraphQL and REST)

class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly type?: string) {
    super(message);
  }
}

async function createPull(
  state: GitHubState,
  repo: RepoRecord,
  viewer: TokenInfo,
  input: {
    title?: string;
    body?: string;
    base?: string;
    head?: string;
    draft?: boolean;
    maintainerCanModify?: boolean;
  },
  via: string,
): Promise<PullRecord> {
  if (viewer.fineGrained && (viewer.permissions?.pull_requests ?? "write") !== "write") {
    throw new ApiError("Resource not accessible by personal access token", 403, "FORBIDDEN");
  }
  if (!canWrite(viewer, repo)) {
    throw new ApiError(
      `${viewer.login} does not have the correct permissions to execute \`CreatePullRequest\``,
      403,
      "FORBIDDEN",
    );
  }
  const title = input.title ?? "";
  let head = input.head ?? "";
  const base = input.base ?? repo.defaultBranch;
  const colon = head.indexOf(":");
  if (colon >= 0) {
    if (head.slice(0, colon).toLowerCase() !== repo.owner.toLowerCase()) {
      throw new ApiError(
        `Head sha can't be blank, Head ref must be a branch`,
        422,
        "UNPROCESSABLE",
      );
    }
    head = head.slice(colon + 1);
  }
  if (!title.trim()) throw new ApiError("Title can't be blank", 422, "UNPROCESSABLE");
  const headSha = head ? await branchSha(repo, head) : null;
  const baseSha = await branchSha(repo, base);
  const problems: string[] = [];
  if (!headSha) problems.push("Head sha can't be blank");
  if (!baseSha) problems.push("Base sha can't be blank");
  if (!headSha) problems.push("Head ref must be a branch");
  if (!baseSha) problems.push("Base ref must be a branch");
  if (problems.length) throw new ApiError(problems.join(", "), 422, "UNPROCESSABLE");
  const ahead = await gitOk([
    "--git-dir",
    repo.path,
    "rev-list",
    "--count",
    `${baseSha}..${headSha}`,
  ]);
  if (Number(ahead.trim()) === 0) {
    throw new ApiError(`No commits between ${base} and ${head}`, 422, "UNPROCESSABLE");
  }
  const fullName = `${repo.owner}/${repo.name}`;
  const dup = state.pulls.find((p) =>
    p.repo === fullName && p.state === "OPEN" && p.head === head && p.base === base
  );
  if (dup) {
    throw new ApiError(
      `A pull request already exists for ${repo.owner}:${head}.`,
      422,
      "UNPROCESSABLE",
    );
  }
  const number = state.nextNumber(repo);
  const pr: PullRecord = {
    number,
    nodeId: `PR_${state.newId()}`,
    repo: fullName,
    title,
    body: input.body ?? "",
    base,
    head,
    draft: !!input.draft,
    author: viewer.login,
    state: "OPEN",
    url: `http://${WEB_HOST}/${fullName}/pull/${number}`,
    createdAt: new Date().toISOString(),
    maintainerCanModify: input.maintainerCanModify ?? true,
    via,
  };
  state.pulls.push(pr);
  return pr;
}

// ---------------------------------------------------------------------------------------------
// GraphQL objects

function graphqlRoots(state: GitHubState, viewer: TokenInfo) {
  const userObj = (login: string): Json => {
    const id = userId(login);
    return {
      __typename: "User",
      __implements: ["Actor", "RepositoryOwner", "Node", "Assignee", "RequestedReviewer"],
      id: `U_${id}`,
      databaseId: id,
      login,
      name: login,
      email: "",
      url: `http://${WEB_HOST}/${login}`,
      avatarUrl: `http://${WEB_HOST}/${login}.png`,
      company: null,
      bio: null,
      isSiteAdmin: false,
      organizations: () => conn([]),
      repositories: () =>
        conn(
          state.repos.filter((r) =>
            r.owner.toLowerCase() === login.toLowerCase() && canRead(viewer, r)
          )
            .map(repoObj),
        ),
    };
  };

  const refObj = (repo: RepoRecord, branch: string, sha: string): Json => ({
    __typename: "Ref",
    id: `REF_${repo.id}_${branch}`,
    name: branch,
    prefix: "refs/heads/",
    target: { __typename: "Commit", __implements: ["GitObject", "Node"], oid: sha, id: `C_${sha}` },
    repository: () => repoObj(repo),
  });

  const prObj = (p: PullRecord): Json => {
    const repo = state.findRepo(...(p.repo.split("/") as [string, string]))!;
    return {
      __typename: "PullRequest",
      __implements: [
        "Node",
        "Closable",
        "Comment",
        "Assignable",
        "Labelable",
        "UniformResourceLocatable",
      ],
      id: p.nodeId,
      databaseId: parseInt(p.nodeId.slice(3), 10),
      number: p.number,
      title: p.title,
      body: p.body,
      bodyText: p.body,
      state: p.state,
      url: p.url,
      permalink: p.url,
      isDraft: p.draft,
      closed: p.state !== "OPEN",
      closedAt: null,
      merged: p.state === "MERGED",
      mergedAt: null,
      mergedBy: null,
      locked: false,
      createdAt: p.createdAt,
      updatedAt: p.createdAt,
      baseRefName: p.base,
      headRefName: p.head,
      baseRefOid: () => branchSha(repo, p.base),
      headRefOid: () => branchSha(repo, p.head),
      baseRef: async () => {
        const sha = await branchSha(repo, p.base);
        return sha ? refObj(repo, p.base, sha) : null;
      },
      headRef: async () => {
        const sha = await branchSha(repo, p.head);
        return sha ? refObj(repo, p.head, sha) : null;
      },
      isCrossRepository: false,
      maintainerCanModify: p.maintainerCanModify,
      headRepositoryOwner: () => userObj(repo.owner),
      headRepository: () => repoObj(repo),
      baseRepository: () => repoObj(repo),
      repository: () => repoObj(repo),
      author: () => userObj(p.author),
      authorAssociation: "OWNER",
      mergeable: "MERGEABLE",
      mergeStateStatus: "CLEAN",
      reviewDecision: null,
      additions: 0,
      deletions: 0,
      changedFiles: 0,
      autoMergeRequest: null,
      potentialMergeCommit: null,
      milestone: null,
      assignees: () => conn([]),
      labels: () => conn([]),
      projectCards: () => conn([]),
      projectItems: () => conn([]),
      reviewRequests: () => conn([]),
      reviews: () => conn([]),
      latestReviews: () => conn([]),
      comments: () => conn([]),
      reactionGroups: [],
      participants: () => conn([userObj(p.author)]),
      commits: () => conn([]),
      files: () => conn([]),
      statusCheckRollup: () => conn([]),
      viewerCanUpdate: true,
      viewerDidAuthor: p.author.toLowerCase() === viewer.login.toLowerCase(),
    };
  };

  const repoObj = (r: RepoRecord): Json => {
    const full = `${r.owner}/${r.name}`;
    const prs = () => state.pulls.filter((p) => p.repo === full);
    return {
      __typename: "Repository",
      __implements: ["Node", "RepositoryInfo", "UniformResourceLocatable"],
      id: r.nodeId,
      databaseId: r.id,
      name: r.name,
      nameWithOwner: full,
      owner: () => userObj(r.owner),
      description: r.description,
      homepageUrl: "",
      url: `http://${WEB_HOST}/${full}`,
      sshUrl: `git@${WEB_HOST}:${full}.git`,
      isPrivate: r.private,
      visibility: r.private ? "PRIVATE" : "PUBLIC",
      isFork: false,
      isArchived: false,
      isMirror: false,
      isTemplate: false,
      isLocked: false,
      isDisabled: false,
      isSecurityPolicyEnabled: false,
      isBlankIssuesEnabled: true,
      isUserConfigurationRepository: false,
      isInOrganization: false,
      isEmpty: async () => Object.keys(await readRefs(r.path)).length === 0,
      parent: null,
      templateRepository: null,
      mirrorUrl: null,
      securityPolicyUrl: null,
      openGraphImageUrl: `http://${WEB_HOST}/${full}.png`,
      usesCustomOpenGraphImage: false,
      viewerDefaultCommitEmail: null,
      licenseInfo: null,
      codeOfConduct: null,
      primaryLanguage: null,
      latestRelease: null,
      fundingLinks: [],
      contactLinks: [],
      issueTemplates: [],
      pullRequestTemplates: [],
      createdAt: EPOCH,
      updatedAt: EPOCH,
      pushedAt: EPOCH,
      diskUsage: 1,
      forkCount: 0,
      stargazerCount: 0,
      viewerPermission: viewer.login.toLowerCase() === r.owner.toLowerCase()
        ? "ADMIN"
        : canWrite(viewer, r)
        ? "WRITE"
        : "READ",
      viewerCanAdminister: viewer.login.toLowerCase() === r.owner.toLowerCase(),
      viewerHasStarred: false,
      viewerSubscription: "SUBSCRIBED",
      viewerDefaultMergeMethod: "MERGE",
      viewerPossibleCommitEmails: [],
      hasIssuesEnabled: true,
      hasWikiEnabled: true,
      hasProjectsEnabled: true,
      hasDiscussionsEnabled: false,
      mergeCommitAllowed: true,
      squashMergeAllowed: true,
      rebaseMergeAllowed: true,
      deleteBranchOnMerge: false,
      autoMergeAllowed: false,
      forkingAllowed: true,
      defaultBranchRef: async () => {
        const sha = await branchSha(r, r.defaultBranch);
        return sha ? refObj(r, r.defaultBranch, sha) : null;
      },
      ref: async ({ qualifiedName }: { qualifiedName: string }) => {
        const b = String(qualifiedName).replace(/^refs\/heads\//, "");
        const sha = await branchSha(r, b);
        return sha ? refObj(r, b, sha) : null;
      },
      refs: async ({ refPrefix }: { refPrefix?: string }) => {
        const all = await readRefs(r.path);
        const prefix = refPrefix ?? "refs/heads/";
        return conn(
          Object.entries(all).filter(([k]) => k.startsWith(prefix) && k.startsWith("refs/heads/"))
            .map(([k, sha]) => refObj(r, k.slice("refs/heads/".length), sha)),
        );
      },
      watchers: () => conn([]),
      stargazers: () => conn([]),
      forks: () => conn([]),
      issues: () => conn([]),
      labels: () => conn([]),
      milestones: () => conn([]),
      projects: () => conn([]),
      projectsV2: () => conn([]),
      languages: () => ({ ...conn([]), totalSize: 0 }),
      repositoryTopics: () => conn([]),
      assignableUsers: () => conn([userObj(r.owner)]),
      mentionableUsers: () => conn([userObj(r.owner)]),
      collaborators: () => conn([userObj(r.owner)]),
      pullRequests: (a: { states?: string[]; headRefName?: string; baseRefName?: string }) => {
        let list = prs();
        if (a.states?.length) list = list.filter((p) => a.states!.includes(p.state));
        if (a.headRefName) list = list.filter((p) => p.head === a.headRefName);
        if (a.baseRefName) list = list.filter((p) => p.base === a.baseRefName);
        return conn(list.slice().reverse().map(prObj));
      },
      pullRequest: ({ number }: { number: number }) => {
        const p = prs().find((x) => x.number === Number(number));
        if (!p) {
          throw new GraphQLError(
            `Could not resolve to a PullRequest with the number of ${number}.`,
            "NOT_FOUND",
          );
        }
        return prObj(p);
      },
      issue: ({ number }: { number: number }) => {
        throw new GraphQLError(
          `Could not resolve to an issue or pull request with the number of ${number}.`,
          "NOT_FOUND",
        );
      },
      issueOrPullRequest: ({ number }: { number: number }) => {
        const p = prs().find((x) => x.number === Number(number));
        if (!p) {
          throw new GraphQLError(
            `Could not resolve to an issue or pull request with the number of ${number}.`,
            "NOT_FOUND",
          );
        }
        return prObj(p);
      },
    };
  };

  const findRepoOrThrow = (owner: string, name: string) => {
    const r = state.findRepo(String(owner), String(name));
    if (!r || !canRead(viewer, r)) {
      throw new GraphQLError(
        `Could not resolve to a Repository with the name '${owner}/${name}'.`,
        "NOT_FOUND",
      );
    }
    return r;
  };

  const byId = (id: string): Json => {
    const r = state.repos.find((x) => x.nodeId === id);
    if (r) return repoObj(r);
    const p = state.pulls.find((x) => x.nodeId === id);
    if (p) return prObj(p);
    const m = /^U_(\d+)$/.exec(id);
    if (m) {
      const login = [...state.tokens.values()].map((t) => t.login).concat(
        state.repos.map((x) => x.owner),
      )
        .find((l) => userId(l) === Number(m[1]));
      if (login) return userObj(login);
    }
    throw new GraphQLError(
      `Could not resolve to a node with the global id of '${id}'`,
      "NOT_FOUND",
    );
  };

  const knownLogin = (login: string) =>
    [...state.tokens.values()].map((t) => t.login).concat(state.repos.map((x) => x.owner))
      .find((l) => l.toLowerCase() === String(login).toLowerCase());

  const query = {
    __typename: "Query",
    viewer: () => userObj(viewer.login),
    repository: ({ owner, name }: { owner: string; name: string }) =>
      repoObj(findRepoOrThrow(owner, name)),
    user: ({ login }: { login: string }) => {
      const l = knownLogin(login);
      if (!l) {
        throw new GraphQLError(
          `Could not resolve to a User with the login of '${login}'.`,
          "NOT_FOUND",
        );
      }
      return userObj(l);
    },
    repositoryOwner: ({ login }: { login: string }) => {
      const l = knownLogin(login);
      return l ? userObj(l) : null;
    },
    organization: ({ login }: { login: string }) => {
      throw new GraphQLError(
        `Could not resolve to an Organization with the login of '${login}'.`,
        "NOT_FOUND",
      );
    },
    node: ({ id }: { id: string }) => byId(String(id)),
    nodes: ({ ids }: { ids: string[] }) => (ids ?? []).map((id) => byId(String(id))),
    rateLimit: { limit: 5000, cost: 1, remaining: 4999, resetAt: EPOCH, used: 1 },
  };

  const prFromInput = (id: string) => {
    const p = state.pulls.find((x) => x.nodeId === id);
    if (!p) {
      throw new GraphQLError(
        `Could not resolve to a node with the global id of '${id}'`,
        "NOT_FOUND",
      );
    }
    return p;
  };

  const mutation = {
    __typename: "Mutation",
    createPullRequest: async ({ input }: { input: Json }) => {
      const repo = state.repos.find((x) => x.nodeId === input?.repositoryId);
      if (!repo || !canRead(viewer, repo)) {
        throw new GraphQLError(
          `Could not resolve to a node with the global id of '${input?.repositoryId}'`,
          "NOT_FOUND",
        );
      }
      try {
        const pr = await createPull(state, repo, viewer, {
          title: input.title,
          body: input.body,
          base: input.baseRefName,
          head: input.headRefName,
          draft: input.draft,
          maintainerCanModify: input.maintainerCanModify,
        }, "graphql");
        return { clientMutationId: input.clientMutationId ?? null, pullRequest: prObj(pr) };
      } catch (e) {
        if (e instanceof ApiError) throw new GraphQLError(e.message, e.type);
        throw e;
      }
    },
    updatePullRequest: ({ input }: { input: Json }) => {
      const p = prFromInput(input?.pullRequestId);
      if (typeof input.title === "string") p.title = input.title;
      if (typeof input.body === "string") p.body = input.body;
      if (typeof input.baseRefName === "string") p.base = input.baseRefName;
      if (input.state === "CLOSED" || input.state === "OPEN") p.state = input.state;
      return { clientMutationId: input.clientMutationId ?? null, pullRequest: prObj(p) };
    },
    closePullRequest: ({ input }: { input: Json }) => {
      const p = prFromInput(input?.pullRequestId);
      p.state = "CLOSED";
      return { clientMutationId: input.clientMutationId ?? null, pullRequest: prObj(p) };
    },
    reopenPullRequest: ({ input }: { input: Json }) => {
      const p = prFromInput(input?.pullRequestId);
      p.state = "OPEN";
      return { clientMutationId: input.clientMutationId ?? null, pullRequest: prObj(p) };
    },
    markPullRequestReadyForReview: ({ input }: { input: Json }) => {
      const p = prFromInput(input?.pullRequestId);
      p.draft = false;
      return { clientMutationId: input.clientMutationId ?? null, pullRequest: prObj(p) };
    },
  };

  return { query, mutation };
}

// ---------------------------------------------------------------------------------------------
// HTTP

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

function parseCredentials(state: GitHubState, req: Request): Credentials {
  const h = req.headers.get("authorization");
  if (!h) return { present: false };
  let token: string | undefined;
  const m = /^(\S+)\s+(.*)$/.exec(h.trim());
  if (m) {
    const scheme = m[1].toLowerCase();
    if (scheme === "token" || scheme === "bearer") token = m[2].trim();
    else if (scheme === "basic") {
      try {
        const dec = atob(m[2].trim());
        const i = dec.indexOf(":");
        token = i >= 0 ? dec.slice(i + 1) : dec;
      } catch { /* malformed */ }
    }
  }
  const info = token ? state.tokens.get(token) : undefined;
  return { present: true, token: info ? token : undefined, info };
}

function scopeHeaders(info: TokenInfo): Record<string, string> {
  if (info.fineGrained) return {};
  return { "x-oauth-scopes": (info.scopes ?? []).join(", "), "x-accepted-oauth-scopes": "" };
}

function redactQuery(search: string): string {
  if (!search) return "";
  const p = new URLSearchParams(search);
  for (const k of [...p.keys()]) {
    if (/token|secret|password|key/i.test(k)) p.set(k, "***");
  }
  return "?" + p.toString();
}

const notFound = () => json({ message: "Not Found", documentation_url: DOCS }, 404);

async function handleApi(
  state: GitHubState,
  req: Request,
  url: URL,
  rec: RequestRecord,
  creds: Credentials,
): Promise<Response> {
  const path = url.pathname.replace(/\/+$/, "") || "/";
  rec.kind = path === "/graphql" ? "graphql" : "rest";
  if (!creds.present) {
    return path === "/graphql"
      ? json({
        message: "This endpoint requires you to be authenticated.",
        documentation_url:
          "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql",
      }, 401)
      : json({ message: "Requires authentication", documentation_url: DOCS }, 401);
  }
  if (!creds.info) return json({ message: "Bad credentials", documentation_url: DOCS }, 401);
  const viewer = creds.info;
  const hdrs = scopeHeaders(viewer);
  const ok = (body: unknown, status = 200) => json(body, status, hdrs);
  const nf = () => json({ message: "Not Found", documentation_url: DOCS }, 404, hdrs);
  const m = req.method;

  if (path === "/graphql") {
    if (m !== "POST") return nf();
    let body: Json;
    try {
      body = await req.json();
    } catch {
      return ok({ errors: [{ message: "Problems parsing JSON" }] }, 400);
    }
    const r = await execute({
      query: String(body?.query ?? ""),
      variables: body?.variables,
      operationName: body?.operationName,
      roots: graphqlRoots(state, viewer),
      onUnknown: (p, t) => state.unknownFields.add(`${t ?? "?"}:${p}`),
    });
    rec.operation = r.operationName ?? r.rootFields.join(",");
    return ok(r.body);
  }

  if (m === "GET" && path === "/") {
    return ok({
      current_user_url: `http://${API_HOST}/user`,
      repository_url: `http://${API_HOST}/repos/{owner}/{repo}`,
      user_url: `http://${API_HOST}/users/{user}`,
    });
  }
  if (m === "GET" && path === "/user") return ok(userJson(viewer.login));
  if (m === "GET" && (path === "/user/orgs" || path === "/user/emails")) return ok([]);
  if (m === "GET" && path === "/user/repos") {
    return ok(
      state.repos.filter((r) => r.owner.toLowerCase() === viewer.login.toLowerCase())
        .map((r) => repoJson(r, viewer)),
    );
  }
  if (m === "GET" && path === "/rate_limit") {
    const core = { limit: 5000, remaining: 4999, reset: 1_900_000_000, used: 1 };
    return ok({ resources: { core, graphql: core }, rate: core });
  }
  let mm = /^\/users\/([^/]+)$/.exec(path);
  if (m === "GET" && mm) {
    const login = [...state.tokens.values()].map((t) => t.login).concat(
      state.repos.map((r) => r.owner),
    )
      .find((l) => l.toLowerCase() === mm![1].toLowerCase());
    return login ? ok(userJson(login)) : nf();
  }
  mm = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(path);
  if (mm) {
    const repo = state.findRepo(mm[1], mm[2]);
    if (!repo || !canRead(viewer, repo)) return nf();
    const rest = mm[3] ?? "";
    if (m === "GET" && rest === "") return ok(repoJson(repo, viewer));
    if (m === "GET" && rest === "/branches") {
      const refs = await readRefs(repo.path);
      return ok(
        Object.entries(refs).filter(([k]) => k.startsWith("refs/heads/")).map(([k, sha]) => ({
          name: k.slice(11),
          commit: {
            sha,
            url: `http://${API_HOST}/repos/${repo.owner}/${repo.name}/commits/${sha}`,
          },
          protected: false,
        })),
      );
    }
    const b = /^\/branches\/(.+)$/.exec(rest);
    if (m === "GET" && b) {
      const name = decodeURIComponent(b[1]);
      const sha = await branchSha(repo, name);
      if (!sha) return json({ message: "Branch not found", documentation_url: DOCS }, 404, hdrs);
      return ok({ name, commit: { sha }, protected: false });
    }
    if (m === "GET" && rest === "/readme") {
      const ls = await git(["--git-dir", repo.path, "ls-tree", "--name-only", repo.defaultBranch]);
      const file = ls.stdout.split("\n").find((f) => /^readme(\.|$)/i.test(f));
      if (ls.code !== 0 || !file) return nf();
      const blob = await new Deno.Command("git", {
        args: ["--git-dir", repo.path, "cat-file", "blob", `${repo.defaultBranch}:${file}`],
        stdout: "piped",
        stderr: "null",
      }).output();
      let bin = "";
      for (const byte of blob.stdout) bin += String.fromCharCode(byte);
      return ok({
        name: file,
        path: file,
        type: "file",
        encoding: "base64",
        size: blob.stdout.length,
        content: btoa(bin),
        html_url:
          `http://${WEB_HOST}/${repo.owner}/${repo.name}/blob/${repo.defaultBranch}/${file}`,
      });
    }
    const full = `${repo.owner}/${repo.name}`;
    if (rest === "/pulls" && m === "GET") {
      const st = url.searchParams.get("state") ?? "open";
      const head = url.searchParams.get("head");
      const base = url.searchParams.get("base");
      const list = state.pulls.filter((p) =>
        p.repo === full &&
        (st === "all" || (st === "open") === (p.state === "OPEN")) &&
        (!head || head === p.head ||
          head.toLowerCase() === `${repo.owner}:${p.head}`.toLowerCase()) &&
        (!base || base === p.base)
      );
      return ok(list.slice().reverse().map((p) => pullJson(p, repo)));
    }
    if (rest === "/pulls" && m === "POST") {
      let body: Json;
      try {
        body = await req.json();
      } catch {
        return json({ message: "Problems parsing JSON", documentation_url: DOCS }, 400, hdrs);
      }
      try {
        const pr = await createPull(state, repo, viewer, {
          title: body?.title,
          body: body?.body,
          base: body?.base,
          head: body?.head,
          draft: body?.draft,
          maintainerCanModify: body?.maintainer_can_modify,
        }, "rest");
        return ok(pullJson(pr, repo), 201);
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        return json(
          e.status === 422
            ? {
              message: "Validation Failed",
              errors: [{ resource: "PullRequest", code: "custom", message: e.message }],
              documentation_url: DOCS,
            }
            : { message: e.message, documentation_url: DOCS },
          e.status,
          hdrs,
        );
      }
    }
    const n = /^\/pulls\/(\d+)$/.exec(rest);
    if (n && m === "GET") {
      const p = state.pulls.find((x) => x.repo === full && x.number === Number(n[1]));
      return p ? ok(pullJson(p, repo)) : nf();
    }
  }
  rec.unhandled = true;
  return nf();
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function headerEnd(buf: Uint8Array): [number, number] | null {
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== 10) continue;
    if (buf[i + 1] === 10) return [i, i + 2];
    if (buf[i + 1] === 13 && buf[i + 2] === 10) return [i, i + 3];
  }
  return null;
}

const unauthorized = () =>
  new Response("Invalid username or password.\n", {
    status: 401,
    headers: { "www-authenticate": 'Basic realm="GitHub"', "content-type": "text/plain" },
  });

async function handleWeb(
  state: GitHubState,
  req: Request,
  url: URL,
  rec: RequestRecord,
  creds: Credentials,
): Promise<Response> {
  rec.kind = "git";
  const mm = /^\/([^/]+)\/([^/]+?)(\.git)?(\/.*)?$/.exec(url.pathname);
  if (!mm) {
    rec.kind = "web";
    rec.unhandled = true;
    return notFound();
  }
  const [, owner, name, , restRaw] = mm;
  const rest = restRaw ?? "";
  const service = rest === "/info/refs"
    ? url.searchParams.get("service")
    : rest === "/git-upload-pack" || rest === "/git-receive-pack"
    ? rest.slice(1)
    : null;
  if (rest === "/info/refs" && !service) {
    // GitHub speaks only the smart protocol.
    return new Response("Please upgrade your git client.\n", { status: 403 });
  }
  if (!service) {
    rec.kind = "web";
    const repo = state.findRepo(owner, name);
    if (
      !repo || (repo.private && !canRead(creds.info, repo)) || !["GET", "HEAD"].includes(req.method)
    ) {
      rec.unhandled = repo ? true : undefined;
      return new Response("Not Found\n", { status: 404 });
    }
    const pr = /^\/pull\/(\d+)/.exec(rest);
    if (
      pr &&
      !state.pulls.some((p) =>
        p.repo === `${repo.owner}/${repo.name}` && p.number === Number(pr[1])
      )
    ) {
      return new Response("Not Found\n", { status: 404 });
    }
    return new Response(`<!doctype html><title>${repo.owner}/${repo.name}${rest}</title>\n`, {
      headers: { "content-type": "text/html; charset=utf-8" },
    });
  }
  if (service !== "git-upload-pack" && service !== "git-receive-pack") {
    return new Response("Unsupported service\n", { status: 403 });
  }
  if (creds.present && !creds.info) return unauthorized();
  const repo = state.findRepo(owner, name);
  const push = service === "git-receive-pack";
  if (!repo || !canRead(creds.info, repo)) {
    // Like github.com: ask anonymous clients for credentials rather than admit nothing is there.
    if (!creds.info) return unauthorized();
    return new Response("Repository not found.\n", { status: 404 });
  }
  if (push && !creds.info) return unauthorized();
  if (push && !canWrite(creds.info, repo)) {
    return new Response(
      creds.info!.fineGrained
        ? "Write access to repository not granted.\n"
        : `Permission to ${repo.owner}/${repo.name}.git denied to ${creds.info!.login}.\n`,
      { status: 403 },
    );
  }
  return await runBackend(state, req, url, repo, rest, creds, push);
}

async function runBackend(
  state: GitHubState,
  req: Request,
  url: URL,
  repo: RepoRecord,
  rest: string,
  creds: Credentials,
  push: boolean,
): Promise<Response> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: state.root,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_PROJECT_ROOT: state.reposDir,
    GIT_HTTP_EXPORT_ALL: "1",
    GATEWAY_INTERFACE: "CGI/1.1",
    SERVER_PROTOCOL: "HTTP/1.1",
    SERVER_SOFTWARE: "cal-github-standin",
    REQUEST_METHOD: req.method,
    PATH_INFO: `/${repo.owner}/${repo.name}.git${rest}`,
    QUERY_STRING: url.search.replace(/^\?/, ""),
    REMOTE_ADDR: "127.0.0.1",
  };
  const ct = req.headers.get("content-type");
  if (ct) env.CONTENT_TYPE = ct;
  const cl = req.headers.get("content-length");
  if (cl) env.CONTENT_LENGTH = cl;
  const ce = req.headers.get("content-encoding");
  if (ce) env.HTTP_CONTENT_ENCODING = ce;
  const gp = req.headers.get("git-protocol");
  if (gp) env.HTTP_GIT_PROTOCOL = gp;
  if (creds.info) {
    env.REMOTE_USER = creds.info.login;
    env.AUTH_TYPE = "Basic";
  }
  const before = push ? await readRefs(repo.path) : {};
  const child = new Deno.Command("git", {
    args: ["http-backend"],
    env,
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (req.body) req.body.pipeTo(child.stdin).catch(() => {});
  else child.stdin.close().catch(() => {});
  const stderr = new Response(child.stderr).text();
  const finish = async () => {
    const [status, err] = await Promise.all([child.status, stderr]);
    if (err.trim()) state.gitErrors.push(`${repo.owner}/${repo.name}${rest}: ${err.trim()}`);
    if (push && status.success) {
      const after = await readRefs(repo.path);
      const updates: PushRecord["updates"] = {};
      for (const ref of new Set([...Object.keys(before), ...Object.keys(after)])) {
        if (before[ref] !== after[ref]) updates[ref] = [before[ref] ?? null, after[ref] ?? null];
      }
      if (Object.keys(updates).length) {
        state.pushes.push({
          repo: `${repo.owner}/${repo.name}`,
          login: creds.info!.login,
          updates,
        });
      }
    }
  };

  const reader = child.stdout.getReader();
  let buf: Uint8Array = new Uint8Array(0);
  let end: [number, number] | null = null;
  while (!(end = headerEnd(buf))) {
    const { value, done } = await reader.read();
    if (done) break;
    buf = concat(buf, value);
  }
  if (!end) {
    await finish();
    return new Response("git http-backend failed\n", { status: 500 });
  }
  const headers = new Headers();
  let status = 200;
  for (const line of new TextDecoder().decode(buf.slice(0, end[0])).split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i < 0) continue;
    const k = line.slice(0, i).trim();
    const v = line.slice(i + 1).trim();
    if (k.toLowerCase() === "status") status = parseInt(v, 10) || 200;
    else headers.append(k, v);
  }
  const first = buf.slice(end[1]);
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      if (first.length) c.enqueue(first);
    },
    async pull(c) {
      const { value, done } = await reader.read();
      if (done) {
        await finish(); // record the push before the client sees the end of the response
        c.close();
      } else c.enqueue(value);
    },
    cancel() {
      reader.cancel().catch(() => {});
    },
  });
  const nobody = status === 204 || status === 304 || req.method === "HEAD";
  if (nobody) {
    reader.cancel().catch(() => {});
    finish();
  }
  return new Response(nobody ? null : body, { status, headers });
}

function makeHandler(state: GitHubState) {
  return async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const host = (req.headers.get("host") ?? url.host).toLowerCase().replace(/:\d+$/, "");
    const creds = parseCredentials(state, req);
    const rec: RequestRecord = {
      at: new Date().toISOString(),
      method: req.method,
      host,
      path: url.pathname + redactQuery(url.search),
      authorization: creds.present,
      kind: "other",
      status: 0,
    };
    if (creds.info) rec.login = creds.info.login;
    state.requests.push(rec);
    let res: Response;
    try {
      if (state.networkDown) {
        rec.networkDown = true;
        res = new Response("Service Unavailable\n", {
          status: 503,
          headers: { connection: "close" },
        });
      } else if (host === API_HOST) {
        res = await handleApi(state, req, url, rec, creds);
      } else if (host === WEB_HOST) {
        res = await handleWeb(state, req, url, rec, creds);
      } else {
        rec.unhandled = true;
        res = notFound();
      }
    } catch (e) {
      state.gitErrors.push(`handler: ${(e as Error).stack ?? e}`);
      res = json({ message: `stand-in error: ${(e as Error).message}` }, 500);
    }
    rec.status = res.status;
    return res;
  };
}

// ---------------------------------------------------------------------------------------------
// public API

export interface GitHubStandIn {
  /** `http://HOSTNAME:PORT` of the listener (use the Host header, or proxyEnv, to reach it). */
  url: string;
  port: number;
  /** `http://api.github.localhost[:PORT]` */
  apiUrl: string;
  state: GitHubState;
  /** `http://github.localhost[:PORT]/OWNER/NAME.git` */
  gitUrl(owner: string, name: string): string;
  close(): Promise<void>;
}

/**
 * Starts the stand-in. `root` holds `repos/`; `port` defaults to 80 (what gh's
 * `http://api.github.localhost/` needs without a proxy), 0 picks a free one; `hostname` defaults
 * to 127.0.0.1. A fixed port is held under a lock file from start to close(), so stand-ins in
 * test files that share port 80 take turns; a port some other program holds is retried for
 * `waitForPortMs` (default 20 s).
 */
export async function startGitHub(
  o: { root: string; port?: number; hostname?: string; waitForPortMs?: number },
): Promise<GitHubStandIn> {
  const state = new GitHubState(o.root);
  await Deno.mkdir(state.reposDir, { recursive: true });
  const hostname = o.hostname ?? "127.0.0.1";
  const handler = makeHandler(state);
  let port = o.port ?? 80;
  // A fixed port is shared by test files running in parallel: whoever has it keeps it until
  // close(), even while "refuse" mode has the socket closed (else another file's stand-in would
  // take the port and answer in its place).
  const portLock = port === 0 ? null : await lockPort(hostname, port);
  let server: Deno.HttpServer | null = null;
  const listen = () => {
    server = Deno.serve({ port, hostname, onListen: () => {} }, handler);
    port = (server.addr as Deno.NetAddr).port;
  };
  // A fixed port (80 above all) may be held for a moment by another test file's stand-in.
  const bind = async () => {
    const deadline = Date.now() + (o.waitForPortMs ?? 20_000);
    for (;;) {
      try {
        return listen();
      } catch (e) {
        if (!(e instanceof Deno.errors.AddrInUse) || port === 0 || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  await bind();
  state.onNetwork = async (down) => {
    if (down && server) {
      const s = server;
      server = null;
      await s.shutdown();
    } else if (!down && !server) await bind();
  };
  const suffix = port === 80 ? "" : `:${port}`;
  return {
    url: `http://${hostname}:${port}`,
    port,
    apiUrl: `http://${API_HOST}${suffix}`,
    state,
    gitUrl: (owner, name) => `http://${WEB_HOST}${suffix}/${owner}/${name}.git`,
    async close() {
      const s = server as Deno.HttpServer | null;
      server = null;
      state.onNetwork = undefined;
      if (s) await s.shutdown();
      portLock?.close();
    },
  };
}

/** Waits for, and holds, this machine's lock on `hostname:port` for stand-ins (closing frees it). */
async function lockPort(hostname: string, port: number): Promise<Deno.FsFile> {
  const dir = Deno.env.get("TMPDIR") || "/tmp";
  const file = await Deno.open(join(dir, `cal-github-standin-${hostname}-${port}.lock`), {
    read: true,
    write: true,
    create: true,
  });
  await file.lock(true);
  return file;
}

/**
 * Environment that sends gh's and git's plain-HTTP traffic for github.localhost to the stand-in
 * on `port` as an HTTP proxy, so neither /etc/hosts nor port 80 is needed. (Go's net/http skips
 * the proxy only for "localhost" and loopback IPs, curl for nothing by default.)
 */
export function proxyEnv(port: number, hostname = "127.0.0.1"): Record<string, string> {
  const p = `http://${hostname}:${port}`;
  return { http_proxy: p, HTTP_PROXY: p, no_proxy: "", NO_PROXY: "" };
}

/**
 * Environment (GIT_CONFIG_COUNT/KEY/VALUE) adding a credential helper for
 * `http://github.localhost` that answers `gh auth token --hostname github.localhost`. Needed
 * because gh 2.23.0's `gh auth git-credential` refuses every protocol but https, so
 * `gh auth setup-git` alone leaves git without credentials for the stand-in. The helper runs
 * after gh's own (env config is read after ~/.gitconfig), so it only fills the gap.
 */
/**
 * A git credential helper that answers with gh's token for http://github.localhost: gh 2.23's own
 * helper answers https only, and the stand-in is plain http.
 */
export function credentialHelper(gh = "gh"): string {
  return `!f() { test "$1" = get || exit 0; t=$(${gh} auth token --hostname ${WEB_HOST} 2>/dev/null) && ` +
    `test -n "$t" && printf 'username=x-access-token\\npassword=%s\\n' "$t"; }; f`;
}

export function gitCredentialShimEnv(gh = "gh"): Record<string, string> {
  return {
    GIT_CONFIG_COUNT: "1",
    GIT_CONFIG_KEY_0: `credential.http://${WEB_HOST}.helper`,
    GIT_CONFIG_VALUE_0: credentialHelper(gh),
  };
}

const HOSTS_LINE = `127.0.0.1 ${WEB_HOST} ${API_HOST}`;

/** Whether /etc/hosts (or `path`) maps both names to 127.0.0.1. */
export async function hostsEntriesPresent(path = "/etc/hosts"): Promise<boolean> {
  const text = await Deno.readTextFile(path).catch(() => "");
  const have = new Set<string>();
  for (const raw of text.split("\n")) {
    const f = raw.replace(/#.*/, "").trim().split(/\s+/);
    if (f[0] === "127.0.0.1") { for (const n of f.slice(1)) have.add(n.toLowerCase()); }
  }
  return have.has(WEB_HOST) && have.has(API_HOST);
}

/**
 * Appends `127.0.0.1 github.localhost api.github.localhost` to /etc/hosts unless both names are
 * already mapped there (needs root). Neither glibc nor Go resolve `*.localhost` by themselves
 * here. Returns whether the file changed.
 */
export async function ensureHostsEntries(path = "/etc/hosts"): Promise<boolean> {
  if (await hostsEntriesPresent(path)) return false;
  const text = await Deno.readTextFile(path).catch(() => "");
  const sep = text === "" || text.endsWith("\n") ? "" : "\n";
  await Deno.writeTextFile(path, `${sep}${HOSTS_LINE}\n`, { append: true });
  return true;
}

// ---------------------------------------------------------------------------------------------
// CLI

if (import.meta.main) {
  const args = [...Deno.args];
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const all = (name: string) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
  const data = opt("--data");
  if (!data) {
    console.error(
      "usage: github.ts --data DIR [--port N] [--hostname H] [--token TOKEN=LOGIN[:s1,s2]] [--repo OWNER/NAME] [--ensure-hosts]",
    );
    Deno.exit(64);
  }
  if (args.includes("--ensure-hosts")) await ensureHostsEntries();
  const gh = await startGitHub({
    root: data,
    port: opt("--port") !== undefined ? Number(opt("--port")) : undefined,
    hostname: opt("--hostname"),
  });
  for (const t of all("--token")) {
    const [token, who] = t.split("=");
    const [login, scopes] = (who ?? "").split(":");
    gh.state.addToken(token, {
      login,
      ...(scopes !== undefined ? { scopes: scopes.split(",").filter(Boolean) } : {}),
    });
  }
  for (const r of all("--repo")) {
    const [owner, name] = r.split("/");
    await gh.state.createRepo(owner, name);
  }
  console.log(JSON.stringify({
    url: gh.url,
    port: gh.port,
    root: data,
    apiUrl: gh.apiUrl,
    gitUrl: gh.gitUrl("OWNER", "REPO"),
    proxy: proxyEnv(gh.port).http_proxy,
  }));
  const stop = async () => {
    await gh.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}
