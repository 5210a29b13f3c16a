/**
 * cal's GitHub broker, played from inside the guest as an attacker would: the host holds the one
 * login (`cal-gh auth login --token-stdin`), the guest's real git pushes through the broker, and
 * the GitHub stand-in's bare repository (read from the host) shows what really landed.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PROVIDERS, Rig, show, type TestProvider } from "./rig_env.ts";
import { ensureHostsEntries, type GitHubStandIn, startGitHub } from "./rig/github.ts";
import { checkUpdate, type PushRules, ZERO } from "../lib/github/push_rules.ts";
import { rewriteReport } from "../lib/github/report_status.ts";
import { brokerError } from "../lib/github/repos.ts";
import { brokerHandler } from "../lib/github/broker.ts";
import { type ApiContext, checkGraphql, checkRest } from "../lib/github/api_rules.ts";

const TOKEN = "ghp_" + crypto.randomUUID().replaceAll("-", "");
const root = Deno.uid() === 0;

describe("push rules", () => {
  const rules: PushRules = {
    prefix: "agent/",
    own: ["feature-x"],
    protected: ["release"],
    defaultBranch: "trunk",
  };
  const a = "a".repeat(40), b = "b".repeat(40);
  const rule = (ref: string, old: string, nu: string, ff = true) =>
    checkUpdate({ ref, old, new: nu }, rules, () => ff)?.rule;

  it("own branches (the prefix, or one cal chose) go; new or fast-forward", () => {
    assert.equal(rule("refs/heads/agent/x", ZERO, a), undefined);
    assert.equal(rule("refs/heads/agent/x", a, b), undefined);
    assert.equal(rule("refs/heads/feature-x", a, b), undefined);
  });

  it("refuses the default, protected and others' branches, tags, deletions and force", () => {
    assert.equal(rule("refs/heads/trunk", a, b), "default-branch");
    assert.equal(rule("refs/heads/main", ZERO, a), "protected-branch");
    assert.equal(rule("refs/heads/develop", a, b), "protected-branch");
    assert.equal(rule("refs/heads/release", a, b), "protected-branch");
    assert.equal(rule("refs/heads/someone/else", ZERO, a), "not-own-branch");
    assert.equal(rule("refs/tags/v1", ZERO, a), "not-a-branch");
    assert.equal(rule("refs/heads/agent/x", a, ZERO), "no-deletion");
    assert.equal(rule("refs/heads/agent/x", a, b, false), "no-force");
    assert.equal(rule("refs/heads/main", a, ZERO), "protected-branch", "the branch rule first");
  });
});

describe("report-status", () => {
  const pkt = (s: string) => (s.length + 4).toString(16).padStart(4, "0") + s;
  const reasons = new Map([[
    "refs/heads/main",
    "cal: protected-branch: push to agent/... instead",
  ]]);
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  const bytes = (s: string) => new TextEncoder().encode(s);

  it("puts the broker's reason on the refused ref's ng line, plain", () => {
    const plain = pkt("unpack ok\n") + pkt("ng refs/heads/main pre-receive hook declined\n") +
      "0000";
    assert.equal(
      text(rewriteReport(bytes(plain), reasons)),
      pkt("unpack ok\n") +
        pkt("ng refs/heads/main cal: protected-branch: push to agent/... instead\n") +
        "0000",
    );
  });

  it("and inside side-band-64k, with band 2 kept and the report split anywhere", () => {
    const report = pkt("unpack ok\n") + pkt("ng refs/heads/main pre-receive hook declined\n") +
      "0000";
    const banded = pkt("\x02remote: hi\n") + pkt("\x01" + report.slice(0, 7)) +
      pkt("\x01" + report.slice(7)) + "0000";
    const out = text(rewriteReport(bytes(banded), reasons));
    assert.ok(out.startsWith(pkt("\x02remote: hi\n")), out);
    assert.match(out, /ng refs\/heads\/main cal: protected-branch/);
    assert.ok(out.endsWith("0000"), out);
    assert.equal(
      text(rewriteReport(bytes(banded), new Map())),
      banded,
      "nothing to say: as it was",
    );
  });
});

describe("API rules (the agent's own gh)", () => {
  const c: ApiContext = {
    rules: { prefix: "agent/", own: [], protected: ["release"], defaultBranch: "trunk" },
    repos: ["octo/app"],
  };
  const rest = (m: string, p: string, body?: unknown) => {
    const d = checkRest(m, p, body, c);
    return d.allowed ? "ok" : d.rule;
  };
  const gql = (q: string, v?: Record<string, unknown>) => {
    const d = checkGraphql(q, v, c, "octo/app");
    return d.allowed ? "ok" : d.rule;
  };

  it("reads, and pull requests from the workspace's own branches, are allowed", () => {
    assert.equal(rest("GET", "/repos/octo/app/pulls?state=open"), "ok");
    assert.equal(rest("GET", "/repos/someone/else"), "ok");
    assert.equal(rest("POST", "/repos/octo/app/pulls", { head: "agent/x", base: "trunk" }), "ok");
    assert.equal(rest("POST", "/repos/octo/app/pulls", { head: "octo:agent/x" }), "ok");
    assert.equal(gql("query { viewer { login } }"), "ok");
    assert.equal(
      gql(
        "mutation PullRequestCreate($input: CreatePullRequestInput!) { createPullRequest(input: $input) { pullRequest { id url } } }",
        { input: { headRefName: "agent/x", baseRefName: "trunk" } },
      ),
      "ok",
    );
  });

  it("merges, settings, deletions, workflows, API writes and others' branches are refused", () => {
    assert.equal(rest("PUT", "/repos/octo/app/pulls/1/merge"), "merge");
    assert.equal(rest("PATCH", "/repos/octo/app", { default_branch: "x" }), "settings");
    assert.equal(rest("PUT", "/repos/octo/app/branches/main/protection"), "settings");
    assert.equal(rest("DELETE", "/repos/octo/app/git/refs/heads/agent/x"), "deletion");
    assert.equal(rest("POST", "/repos/octo/app/actions/workflows/ci.yml/dispatches"), "workflow");
    assert.equal(rest("PUT", "/repos/octo/app/contents/.github/workflows/ci.yml"), "workflow");
    assert.equal(rest("PUT", "/repos/octo/app/contents/README.md"), "use-git");
    assert.equal(rest("POST", "/repos/octo/app/pulls", { head: "main" }), "not-own-branch");
    assert.equal(rest("POST", "/repos/octo/app/pulls", { head: "trunk" }), "not-own-branch");
    assert.equal(rest("POST", "/repos/octo/other/pulls", { head: "agent/x" }), "not-own-repo");
    assert.equal(rest("POST", "/user/repos"), "not-allowed");
    assert.equal(
      gql('mutation { mergePullRequest(input: {pullRequestId: "P"}) { clientMutationId } }'),
      "merge",
    );
    assert.equal(gql("mutation M { m: deleteRef(input: $i) { clientMutationId } }"), "deletion");
    assert.equal(gql("mutation { updateRepository(input: $i) { repository { id } } }"), "settings");
    assert.equal(
      gql(
        'mutation { createPullRequest(input: {headRefName: "release", baseRefName: "trunk"}) { pullRequest { id } } }',
      ),
      "not-own-branch",
    );
    assert.equal(
      gql("query { a: viewer { login } } # mutation { mergePullRequest }"),
      "ok",
      "a comment is no mutation",
    );
  });
});

describe("the broker's TCP listener (Tart's gateway, reachable by neighbours)", () => {
  it("answers only paths that start with the workspace's secret", async () => {
    const home = await Deno.makeTempDir({ prefix: "cal-broker-secret-" });
    const old = Deno.env.get("CAL_HOME");
    Deno.env.set("CAL_HOME", home);
    try {
      const handle = brokerHandler("ws", "0123456789abcdef0123456789abcdef");
      const get = (path: string) =>
        handle(new Request(`http://127.0.64.1:4000${path}/info/refs?service=git-upload-pack`));
      for (const p of ["/octo/app.git", "/0123456789abcdef0123456789abcdee/octo/app.git", "/x"]) {
        const r = await get(p);
        assert.equal(r.status, 404, p);
        await r.body?.cancel();
      }
      const through = await get("/0123456789abcdef0123456789abcdef/octo/app.git");
      assert.equal(through.status, 503, "past the secret: this workspace has no settings here");
      await through.body?.cancel();
    } finally {
      if (old === undefined) Deno.env.delete("CAL_HOME");
      else Deno.env.set("CAL_HOME", old);
      await Deno.remove(home, { recursive: true });
    }
  });
});

describe("a push the broker refused, as cal reports it", () => {
  it("names the branch and the rule (exit 4) and escapes what the remote said", () => {
    const stderr = "remote: cal: refused refs/heads/main (rule: protected-branch): " +
      '"main" is a protected branch \x1b[31m(push elsewhere)        \n' +
      " ! [remote rejected] HEAD -> main (cal: protected-branch: push to agent/... instead)\n";
    const e = brokerError("Pushing main", { code: 1, stdout: "", stderr, timedOut: false }, "ws");
    assert.equal(e.exit, 4);
    assert.equal(e.code, "protected-branch");
    assert.equal(
      e.message,
      "Pushing main: cal's GitHub broker refused main (rule: protected-branch).",
    );
    assert.ok(!e.hint!.includes("\x1b"), e.hint);
    assert.match(e.hint!, /protected branch .*Nothing was pushed\.$/);
  });
});

async function hostGit(dir: string, ...args: string[]): Promise<string> {
  const r = await new Deno.Command("git", {
    args: ["--git-dir", dir, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(r.stdout);
}

/** Every process's environment that holds `needle` (pid: first bytes of the variable's name). */
async function envSightings(needle: string): Promise<string[]> {
  const found: string[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const env = await Deno.readTextFile(`/proc/${e.name}/environ`);
      if (env.includes(needle)) found.push(e.name);
    } catch { /* gone, or a kernel thread */ }
  }
  return found;
}

async function grepTree(needle: string, dir: string): Promise<string[]> {
  const r = await new Deno.Command("grep", {
    // The fake tart's disk.img is an empty sparse file (tens of GB of holes) the guest never
    // writes: its files are in the folder's guest/.
    args: ["-rlas", "--devices=skip", "--exclude=disk.img", needle, dir],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(r.stdout).split("\n").filter(Boolean);
}

function suite(provider: TestProvider) {
  describe(`GitHub through cal's broker (${provider})`, {
    skip: (!root || Deno.build.os !== "linux") &&
      "needs Linux and root (the stand-in's port 80, guests of their own uid and network)",
  }, () => {
    let rig: Rig;
    let gh: GitHubStandIn;
    let ws: string;
    let bare: string;
    const inGuest = (script: string) => rig.vm(["ssh", ws, `cd ~/workspace/app && { ${script}; }`]);
    const refs = () => hostGit(bare, "for-each-ref", "--format=%(refname) %(objectname)");

    before(async () => {
      await ensureHostsEntries();
      gh = await startGitHub({ root: await Deno.makeTempDir({ prefix: "cal-broker-" }), port: 80 });
      gh.state.addToken(TOKEN, { login: "octo" });
      await gh.state.createRepo("octo", "app", {
        defaultBranch: "trunk",
        files: { "README.md": "# app\n" },
      });
      await gh.state.createRepo("octo", "other", {
        defaultBranch: "main",
        files: { "README.md": "# other\n" },
      });
      bare = join(gh.state.reposDir, "octo", "app.git");
      for (const b of ["main", "release", "someone/else"]) {
        await hostGit(bare, "branch", b, "trunk");
      }
      rig = await Rig.create("", provider);
      const cfg = join(rig.env.CAL_HOME, "config.yaml");
      await Deno.writeTextFile(
        cfg,
        (await Deno.readTextFile(cfg)) +
          "    github:\n      host: github.localhost\n      protected_branches: [release]\n",
      );
      ws = rig.name("brokered");
      assert.equal((await rig.vm(["init", ws])).code, 0);
      assert.equal((await rig.vm(["start", ws])).code, 0);
    });
    after(async () => {
      await rig?.close();
      await gh?.close();
    });

    it("the host's login is kept in a 0600 file, and a clone needs no login in the workspace", async () => {
      const login = await rig.gh(["auth", "login", "--token-stdin", "--json"], { stdin: TOKEN });
      assert.equal(login.code, 0, show(login));
      assert.equal(login.records.at(-1)!.user, "octo");
      const file = join(rig.env.CAL_HOME, "github", "tokens", "github.localhost");
      assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
      const status = await rig.gh(["auth", "status", "--json"]);
      assert.equal(status.code, 0, show(status));
      assert.equal(status.records[0].logged_in, true);
      const inWs = await rig.gh(["auth", "status", ws, "--json"]);
      assert.equal(inWs.code, 0, show(inWs));
      assert.match(String(inWs.records[0].detail), /through cal's broker/);

      const c = await rig.gh(["clone", ws, "--repo", "octo/app", "--new-branch", "work", "--json"]);
      assert.equal(c.code, 0, show(c));
      assert.equal(c.records.at(-1)!.branch, "agent/work");
      const head = await inGuest("git rev-parse --abbrev-ref HEAD && cat README.md");
      assert.equal(head.stdout, "agent/work\n# app\n", show(head));
    });

    it("the token is in no guest file and no process's environment", async () => {
      // The guest's whole file system: the sandbox's folder, or the fake tart's VM folder.
      const guest = provider === "sandbox"
        ? join(rig.env.CAL_HOME, "isolation", "sandboxes", `cal-${ws}`)
        : join(rig.env.TART_HOME!, "vms", `cal-${ws}`);
      assert.ok((await Deno.stat(guest)).isDirectory, guest);
      assert.deepEqual(await grepTree(TOKEN, guest), [], "a guest file holds the token");
      const b64 = btoa(`x-access-token:${TOKEN}`);
      assert.deepEqual(await grepTree(b64, guest), [], "a guest file holds the encoded token");
      assert.deepEqual(await envSightings(TOKEN), [], "a process's environment holds the token");
      const gi = await rig.vm(["ssh", ws, "env; cat ~/.gitconfig; ls ~/.config/gh 2>&1"]);
      assert.ok(!gi.stdout.includes(TOKEN) && !gi.stdout.includes(b64), gi.stdout);
    });

    it("from the guest: main, the default, a protected or another's branch, --force and a deletion are refused, naming the rule; the remote is unchanged", async () => {
      const made = await inGuest(
        "echo one > one.txt && git add one.txt && " +
          "git -c user.name=a -c user.email=a@x commit -qm one",
      );
      assert.equal(made.code, 0, show(made));
      const before = await refs();
      const otherRefs = await hostGit(join(gh.state.reposDir, "octo", "other.git"), "for-each-ref");
      const pushes = gh.state.pushes.length;
      const cases: [string, string][] = [
        ["git push origin HEAD:main", "protected-branch"],
        ["git push origin HEAD:trunk", "default-branch"],
        ["git push origin HEAD:release", "protected-branch"],
        ["git push origin HEAD:someone/else", "not-own-branch"],
        ["git push origin HEAD:refs/tags/v1", "not-a-branch"],
      ];
      for (const [cmd, rule] of cases) {
        const r = await inGuest(cmd);
        assert.notEqual(r.code, 0, `${cmd}: ${show(r)}`);
        assert.match(r.stderr, new RegExp(`remote: cal: refused \\S+ \\(rule: ${rule}\\)`), cmd);
        // On the ref's own line too (the report-status `ng` reason).
        assert.match(
          r.stderr,
          new RegExp(`! \\[remote rejected\\] HEAD -> \\S+ \\(cal: ${rule}`),
          cmd,
        );
        assert.match(r.stderr, /git push origin HEAD:agent\/my-change|integrate|delete/, cmd);
      }
      // Another repository the token can reach: neither read (its content could end up in a
      // branch the agent may push) nor written.
      for (
        const cmd of [
          "git ls-remote http://github.localhost/octo/other.git",
          "git push http://github.localhost/octo/other.git HEAD:refs/heads/agent/work",
        ]
      ) {
        const other = await inGuest(cmd);
        assert.notEqual(other.code, 0, show(other));
        assert.match(other.stderr, /remote: cal: refused \(rule: not-own-repo\)/, cmd);
      }
      assert.equal(
        await hostGit(join(gh.state.reposDir, "octo", "other.git"), "for-each-ref"),
        otherRefs,
        "the other repository is unchanged",
      );
      assert.equal(await refs(), before, "the remote's refs are unchanged");
      assert.equal(gh.state.pushes.length, pushes, "nothing reached the remote");

      // The agent's own branch goes.
      const own = await inGuest("git push -q origin HEAD:agent/work");
      assert.equal(own.code, 0, show(own));
      const sha = (await inGuest("git rev-parse HEAD")).stdout.trim();
      assert.equal((await hostGit(bare, "rev-parse", "refs/heads/agent/work")).trim(), sha);

      // A rewrite of it, forced, and a deletion are refused.
      const force = await inGuest(
        "git -c user.name=a -c user.email=a@x commit -q --amend -m rewritten && " +
          "git push --force origin HEAD:agent/work",
      );
      assert.notEqual(force.code, 0, show(force));
      assert.match(force.stderr, /rule: no-force/);
      assert.match(force.stderr, /\(cal: no-force: /);
      const del = await inGuest("git push origin :agent/work");
      assert.notEqual(del.code, 0, show(del));
      assert.match(del.stderr, /rule: no-deletion/);
      assert.match(del.stderr, /\(cal: no-deletion: /);
      assert.equal(
        (await hostGit(bare, "rev-parse", "refs/heads/agent/work")).trim(),
        sha,
        "the branch is neither rewritten nor deleted",
      );
      for (const b of ["main", "trunk", "release", "someone/else"]) {
        assert.equal(
          (await hostGit(bare, "rev-parse", `refs/heads/${b}`)).trim(),
          (await hostGit(bare, "rev-parse", "refs/heads/trunk")).trim(),
          b,
        );
      }
      const log = await Deno.readTextFile(
        join(rig.env.CAL_HOME, "isolation", "vms", ws, "github-broker.ndjson"),
      );
      assert.match(log, /"rule":"no-force"/);
      assert.match(log, /"rule":"default-branch"/);
      // Put the branch back on the remote's commit for what follows.
      assert.equal((await inGuest(`git reset -q --hard ${sha}`)).code, 0);
    });

    it("commit --push and pr work through the broker and the host's API", async () => {
      assert.equal((await inGuest("echo login > login.swift")).code, 0);
      const c = await rig.cal([
        "isolation",
        "commit",
        ws,
        "--message",
        "Add login",
        "--push",
        "--json",
      ]);
      assert.equal(c.code, 0, show(c));
      const rec = c.records.find((x) => x.kind === "repo")!;
      assert.equal((await hostGit(bare, "rev-parse", "refs/heads/agent/work")).trim(), rec.commit);
      assert.match(
        await hostGit(bare, "log", "-1", "--format=%an <%ae>", "agent/work"),
        /^octo <\d+\+octo@users\.noreply\.github\.localhost>/,
        "the identity comes from the host's API",
      );
      const pr = await rig.cal([
        "isolation",
        "pr",
        ws,
        "--title",
        "Login",
        "--body",
        "Adds login.",
        "--json",
      ]);
      assert.equal(pr.code, 0, show(pr));
      assert.match(String(pr.records[0].url), /^http:\/\/github\.localhost\/octo\/app\/pull\/\d+$/);
      const got = gh.state.pulls.at(-1)!;
      assert.equal(got.head, "agent/work");
      assert.equal(got.base, "trunk", "the remote's default branch");
      assert.match(got.body, /Made in an isolated workspace with cal/);
      const again = await rig.cal(["isolation", "pr", ws, "--title", "Login", "--json"]);
      assert.equal(again.code, 0, show(again));
      assert.equal(again.records.at(-1)!.url, pr.records[0].url, "the open one is found again");
    });

    it("cal-gh push of a branch that is not the workspace's: refused on the wire, exit 4", async () => {
      assert.equal((await inGuest("git switch -q -c feature")).code, 0);
      try {
        const r = await rig.gh(["push", ws]);
        assert.equal(r.code, 4, show(r));
        assert.match(r.stderr, /cal's GitHub broker refused feature \(rule: not-own-branch\)/);
        assert.match(r.stderr, /push your work to a branch of your own/);
        assert.equal(await hostGit(bare, "rev-parse", "-q", "--verify", "refs/heads/feature"), "");
      } finally {
        assert.equal((await inGuest("git switch -q agent/work")).code, 0);
      }
    });

    it("cal quick on a new workspace needs no login in it: clone, command, commit, push", async () => {
      const fresh = rig.name("quick");
      const r = await rig.cal([
        "quick",
        fresh,
        "--repo",
        "octo/app",
        "--branch",
        "notes",
        "--command",
        "echo 'made through the broker' > NOTES.md",
        "--push",
        "--json",
      ]);
      assert.equal(r.code, 0, show(r));
      const repo = r.records.find((x) => x.kind === "repo" && x.commit)!;
      assert.equal(repo.branch, "agent/notes");
      assert.equal(
        (await hostGit(bare, "rev-parse", "refs/heads/agent/notes")).trim(),
        repo.commit,
      );
      assert.match(await hostGit(bare, "show", "agent/notes:NOTES.md"), /made through the broker/);
      assert.equal((await rig.vm(["stop", fresh, "--force"])).code, 0);
    });

    it("a login inside the workspace takes its git off the broker (with a warning)", async () => {
      const before = await rig.vm(["ssh", ws, "git config --global --get-regexp insteadof"]);
      assert.match(before.stdout, /^url\.http:\/\/\S+\.insteadof http:\/\/github\.localhost\/$/m);
      const r = await rig.gh(["auth", "login", ws, "--token-stdin"], { stdin: TOKEN });
      assert.equal(r.code, 0, show(r));
      assert.match(r.stderr, /the agent there can read it/);
      const after = await rig.vm(["ssh", ws, "git config --global --get-regexp insteadof || true"]);
      assert.equal(after.stdout, "", "no broker address left");
      assert.equal((await rig.gh(["auth", "logout", ws])).code, 0);
    });

    it("without a host login, a brokered push says how to log in", async () => {
      const out = await rig.gh(["auth", "logout", "--json"]);
      assert.equal(out.code, 0, show(out));
      assert.equal((await inGuest("echo more >> login.swift")).code, 0);
      const r = await rig.gh(["commit", ws, "--message", "more", "--push"]);
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, /no GitHub login for github\.localhost on this host/);
      assert.match(r.stderr, /cal-gh auth login --token-stdin/);
    });
  });
}

for (const provider of PROVIDERS) suite(provider);
