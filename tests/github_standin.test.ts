/**
 * The GitHub stand-in (tests/rig/github.ts) against the REAL gh (2.23.0) and REAL git: token
 * login and its scope check, status, clone, push (with and without credentials), pr create, the
 * 404 catch-all, "network down", and plain port 80 through /etc/hosts. gh runs with a temp HOME
 * and GH_CONFIG_DIR; most tests reach the stand-in on a free port through proxyEnv().
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { request } from "node:http";
import {
  ensureHostsEntries,
  gitCredentialShimEnv,
  type GitHubStandIn,
  proxyEnv,
  startGitHub,
} from "./rig/github.ts";

const GOOD = "ghp_" + crypto.randomUUID().replaceAll("-", "").slice(0, 36);
const NO_ORG = "ghp_noorg" + crypto.randomUUID().replaceAll("-", "").slice(0, 20);
const NO_REPO = "ghp_norepo" + crypto.randomUUID().replaceAll("-", "").slice(0, 20);
const HOST = "github.localhost";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** GET with a chosen Host header (fetch won't let us set it). */
function rawGet(port: number, host: string, path: string) {
  return new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { host } }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

const show = (r: Run) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

describe("GitHub stand-in with the real gh and git", () => {
  let gh: GitHubStandIn;
  let tmp: string;
  let n = 0;

  /** A fresh HOME + GH_CONFIG_DIR; no GH_HOST unless asked. */
  async function home(): Promise<Record<string, string>> {
    const h = join(tmp, `home${n++}`);
    await Deno.mkdir(h);
    return {
      HOME: h,
      GH_CONFIG_DIR: join(h, ".config", "gh"),
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      GH_PROMPT_DISABLED: "1",
      GH_NO_UPDATE_NOTIFIER: "1",
      GIT_TERMINAL_PROMPT: "0",
      NO_COLOR: "1",
      ...proxyEnv(gh.port),
    };
  }

  async function run(
    argv: string[],
    env: Record<string, string>,
    o: { cwd?: string; stdin?: string } = {},
  ): Promise<Run> {
    const c = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: o.cwd,
      env,
      clearEnv: true,
      stdin: o.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (o.stdin !== undefined) {
      const w = c.stdin.getWriter();
      await w.write(new TextEncoder().encode(o.stdin));
      await w.close();
    }
    const r = await c.output();
    const d = new TextDecoder();
    return { code: r.code, stdout: d.decode(r.stdout), stderr: d.decode(r.stderr) };
  }

  async function login(env: Record<string, string>, token = GOOD) {
    const r = await run(["gh", "auth", "login", "--hostname", HOST, "--with-token"], env, {
      stdin: token + "\n",
    });
    assert.equal(r.code, 0, show(r));
  }

  /** A logged-in HOME with a clone of octo/hello on a new branch with one commit. */
  async function cloneWithCommit(branch: string) {
    const env = await home();
    await login(env);
    const dir = join(env.HOME, "hello");
    const c = await run(["gh", "repo", "clone", "octo/hello", dir], env);
    assert.equal(c.code, 0, show(c));
    const gitEnv = {
      ...env,
      GIT_AUTHOR_NAME: "t",
      GIT_AUTHOR_EMAIL: "t@x",
      GIT_COMMITTER_NAME: "t",
      GIT_COMMITTER_EMAIL: "t@x",
    };
    assert.equal(
      (await run(["git", "checkout", "-q", "-b", branch], gitEnv, { cwd: dir })).code,
      0,
    );
    await Deno.writeTextFile(join(dir, `${branch}.txt`), "change\n");
    assert.equal((await run(["git", "add", "."], gitEnv, { cwd: dir })).code, 0);
    assert.equal((await run(["git", "commit", "-qm", "change"], gitEnv, { cwd: dir })).code, 0);
    return { env, gitEnv, dir };
  }

  before(async () => {
    tmp = await Deno.makeTempDir({ prefix: "gh-standin-test-" });
    gh = await startGitHub({ root: join(tmp, "github"), port: 0 });
    gh.state.addToken(GOOD, { login: "octo" });
    gh.state.addToken(NO_ORG, { login: "octo", scopes: ["repo"] });
    gh.state.addToken(NO_REPO, { login: "octo", scopes: ["read:org", "gist"] });
    await gh.state.createRepo("octo", "hello", {
      defaultBranch: "main",
      files: { "README.md": "# hello\n", "src/app.txt": "app\n" },
    });
  });

  after(async () => {
    await gh?.close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  });

  it("logs in with --with-token; auth status shows the login and scopes", async () => {
    const env = await home();
    await login(env);
    const hosts = await Deno.readTextFile(join(env.GH_CONFIG_DIR, "hosts.yml"));
    assert.match(hosts, /github\.localhost:/);
    const s = await run(["gh", "auth", "status", "--hostname", HOST], env);
    assert.equal(s.code, 0, show(s));
    assert.match(s.stderr, /Logged in to github\.localhost as octo/);
    assert.match(s.stderr, /Token scopes: repo, read:org/);
    const u = await run(["gh", "api", "user", "--jq", '.login + " " + (.id|tostring)'], {
      ...env,
      GH_HOST: HOST,
    });
    assert.equal(u.code, 0, show(u));
    assert.match(u.stdout, /^octo \d+\n$/);
    const out = await run(["gh", "auth", "logout", "--hostname", HOST], env, { stdin: "y\n" });
    assert.equal(out.code, 0, show(out));
    const again = await run(["gh", "auth", "status", "--hostname", HOST], env);
    assert.notEqual(again.code, 0);
    // the token itself is never recorded
    assert.ok(!JSON.stringify(gh.state.requests).includes(GOOD));
    assert.ok(
      gh.state.requests.some((r) => r.path === "/" && r.authorization && r.login === "octo"),
    );
  });

  it("refuses tokens without read:org or repo the way gh does against github.com", async () => {
    for (const [token, scope] of [[NO_ORG, "read:org"], [NO_REPO, "repo"]]) {
      const env = await home();
      const r = await run(["gh", "auth", "login", "--hostname", HOST, "--with-token"], env, {
        stdin: token + "\n",
      });
      assert.equal(r.code, 1, show(r));
      assert.equal(r.stderr.trim(), `error validating token: missing required scope '${scope}'`);
    }
    const env = await home();
    const bad = await run(["gh", "auth", "login", "--hostname", HOST, "--with-token"], env, {
      stdin: "ghp_unknown\n",
    });
    assert.equal(bad.code, 1, show(bad));
    assert.match(bad.stderr, /error validating token: HTTP 401: Bad credentials/);
  });

  it("answers gh repo view (GraphQL) and gh repo clone (git smart HTTP)", async () => {
    const env = await home();
    await login(env);
    const v = await run(
      ["gh", "repo", "view", "octo/hello", "--json", "defaultBranchRef,name,nameWithOwner,url"],
      { ...env, GH_HOST: HOST },
    );
    assert.equal(v.code, 0, show(v));
    assert.deepEqual(JSON.parse(v.stdout), {
      defaultBranchRef: { name: "main" },
      name: "hello",
      nameWithOwner: "octo/hello",
      url: "http://github.localhost/octo/hello",
    });
    const dir = join(env.HOME, "clone");
    const c = await run(["gh", "repo", "clone", "octo/hello", dir], env);
    assert.equal(c.code, 0, show(c));
    assert.equal(await Deno.readTextFile(join(dir, "src", "app.txt")), "app\n");
    const remote = await run(["git", "remote", "get-url", "origin"], env, { cwd: dir });
    assert.equal(remote.stdout.trim(), "http://github.localhost/octo/hello.git");
  });

  it("rejects a push without credentials with 401 / WWW-Authenticate Basic", async () => {
    const { env, dir } = await cloneWithCommit("anon");
    // gh auth setup-git is not run: git has no credentials at all.
    const p = await run(["git", "push", "origin", "HEAD:refs/heads/anon"], env, { cwd: dir });
    assert.notEqual(p.code, 0, show(p));
    assert.match(p.stderr, /could not read Username for 'http:\/\/github\.localhost'/);
    const rec = gh.state.requests.findLast((r) => r.path.includes("service=git-receive-pack"));
    assert.equal(rec?.status, 401);
    assert.equal(rec?.authorization, false);
    const res = await rawGet(gh.port, HOST, "/octo/hello.git/info/refs?service=git-receive-pack");
    assert.equal(res.status, 401);
    assert.equal(res.headers["www-authenticate"], 'Basic realm="GitHub"');
    assert.equal((await gh.state.refs("octo", "hello"))["refs/heads/anon"], undefined);
  });

  it("lands a push to a new branch in the bare repo (gh auth setup-git + credential shim)", async () => {
    const { env, gitEnv, dir } = await cloneWithCommit("feature");
    const setup = await run(["gh", "auth", "setup-git", "--hostname", HOST], env);
    assert.equal(setup.code, 0, show(setup));
    // gh 2.23.0's git-credential helper answers only https: setup-git alone is not enough.
    const alone = await run(["git", "push", "origin", "HEAD:refs/heads/feature"], env, {
      cwd: dir,
    });
    assert.notEqual(alone.code, 0, show(alone));
    const p = await run(["git", "push", "-u", "origin", "HEAD:refs/heads/feature"], {
      ...gitEnv,
      ...gitCredentialShimEnv(),
    }, { cwd: dir });
    assert.equal(p.code, 0, show(p));
    const head = (await run(["git", "rev-parse", "HEAD"], env, { cwd: dir })).stdout.trim();
    const bare = join(gh.state.reposDir, "octo", "hello.git");
    const refs = await run([
      "git",
      "--git-dir",
      bare,
      "for-each-ref",
      "--format=%(refname) %(objectname)",
    ], env);
    assert.match(refs.stdout, new RegExp(`^refs/heads/feature ${head}$`, "m"));
    assert.deepEqual(gh.state.pushes.at(-1), {
      repo: "octo/hello",
      login: "octo",
      updates: { "refs/heads/feature": [null, head] },
    });

    // gh pr create on that branch
    const pr = await run(
      [
        "gh",
        "pr",
        "create",
        "--title",
        "Add feature",
        "--body-file",
        "-",
        "--base",
        "main",
        "--head",
        "feature",
        "--draft",
      ],
      { ...env, GH_HOST: HOST },
      { cwd: dir, stdin: "Body line 1\nline 2\n" },
    );
    assert.equal(pr.code, 0, show(pr));
    assert.equal(pr.stdout.trim(), "http://github.localhost/octo/hello/pull/1");
    const rec = gh.state.pulls.at(-1)!;
    assert.deepEqual(
      {
        title: rec.title,
        body: rec.body,
        base: rec.base,
        head: rec.head,
        draft: rec.draft,
        repo: rec.repo,
      },
      {
        title: "Add feature",
        body: "Body line 1\nline 2\n",
        base: "main",
        head: "feature",
        draft: true,
        repo: "octo/hello",
      },
    );
    const dup = await run(
      [
        "gh",
        "pr",
        "create",
        "--title",
        "Again",
        "--body",
        "B",
        "--base",
        "main",
        "--head",
        "feature",
      ],
      { ...env, GH_HOST: HOST },
      { cwd: dir },
    );
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /already exists:\nhttp:\/\/github\.localhost\/octo\/hello\/pull\/1/);
    const view = await run(
      ["gh", "pr", "view", "feature", "--json", "number,title,isDraft,state"],
      {
        ...env,
        GH_HOST: HOST,
      },
      { cwd: dir },
    );
    assert.equal(view.code, 0, show(view));
    assert.deepEqual(JSON.parse(view.stdout), {
      number: 1,
      title: "Add feature",
      isDraft: true,
      state: "OPEN",
    });
    const list = await run(["gh", "pr", "list", "-R", "octo/hello"], { ...env, GH_HOST: HOST });
    assert.equal(list.code, 0, show(list));
    assert.match(list.stdout, /^1\tAdd feature\tfeature\tDRAFT/);
    assert.deepEqual([...gh.state.unknownFields], []);
  });

  it("answers unknown routes 404 Not Found and records them", async () => {
    const env = await home();
    await login(env);
    const r = await run(["gh", "api", "repos/octo/hello/hooks"], { ...env, GH_HOST: HOST });
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /"message":"Not Found"/);
    const rec = gh.state.requests.findLast((x) => x.unhandled);
    assert.deepEqual([rec?.method, rec?.host, rec?.path, rec?.status], [
      "GET",
      "api.github.localhost",
      "/repos/octo/hello/hooks",
      404,
    ]);
  });

  it("fails every request while the network is down (503, or refused connections)", async () => {
    const env = { ...(await home()), GH_HOST: HOST };
    await login(env);
    try {
      await gh.state.setNetworkDown(true);
      const r = await run(["gh", "api", "user"], env);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /HTTP 503/);
      await gh.state.setNetworkDown(true, { mode: "refuse" });
      const refused = await run(["gh", "api", "user"], env);
      assert.notEqual(refused.code, 0);
      // through the proxy: "proxyconnect tcp: … connection refused"; on port 80: "error connecting
      // to api.github.localhost"
      assert.match(refused.stderr, /connection refused|error connecting to api\.github\.localhost/);
      const git = await run(["git", "ls-remote", "http://github.localhost/octo/hello.git"], env);
      assert.notEqual(git.code, 0);
      assert.match(git.stderr, /Failed to connect|Connection refused/i);
    } finally {
      await gh.state.setNetworkDown(false);
    }
    const ok = await run(["gh", "api", "user", "--jq", ".login"], env);
    assert.equal(ok.code, 0, show(ok));
    assert.equal(ok.stdout, "octo\n");
  });

  // Needs root (port 80, /etc/hosts), as in CI.
  const root = Deno.uid() === 0;
  it("serves plain http://api.github.localhost/ on port 80 once /etc/hosts names it", {
    skip: !root && "needs root",
  }, async () => {
    await ensureHostsEntries();
    const ge = await run(["getent", "hosts", "github.localhost", "api.github.localhost"], {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    });
    assert.equal(ge.code, 0, show(ge));
    assert.match(ge.stdout, /^127\.0\.0\.1\s+github\.localhost/m);
    assert.match(ge.stdout, /^127\.0\.0\.1\s+(github\.localhost\s+)?api\.github\.localhost/m);
    const g80 = await startGitHub({ root: join(tmp, "github80") });
    try {
      g80.state.addToken(GOOD, { login: "octo80" });
      await g80.state.createRepo("octo80", "plain");
      const env = await home();
      for (const k of ["http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"]) delete env[k];
      await login(env);
      const u = await run(["gh", "api", "user", "--jq", ".login"], { ...env, GH_HOST: HOST });
      assert.equal(u.code, 0, show(u));
      assert.equal(u.stdout, "octo80\n");
      const c = await run(["gh", "repo", "clone", "octo80/plain", join(env.HOME, "plain")], env);
      assert.equal(c.code, 0, show(c));
    } finally {
      await g80.close();
    }
  });
});
