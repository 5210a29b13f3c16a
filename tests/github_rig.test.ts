/**
 * cal-gh on the rig, with real parts: the real gh and git inside a real guest, talking to the
 * local GitHub stand-in (plain HTTP at github.localhost, port 80); a real bare remote whose refs
 * and log the tests read.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PROVIDERS, Rig, show, type TestProvider } from "./rig_env.ts";
import { argvSightings, getDenoDir, parseNdjson, REPO } from "./helpers.ts";
import {
  credentialHelper,
  ensureHostsEntries,
  type GitHubStandIn,
  startGitHub,
} from "./rig/github.ts";

/**
 * gh 2.23's credential helper answers https only; the stand-in is plain http (github.localhost),
 * so give git the token the same way for http. Real GitHub is https and needs none of this.
 */
function useGhCredentialsForHttp(rig: Rig, ws: string) {
  return rig.vm([
    "exec",
    ws,
    "--",
    "git",
    "config",
    "--global",
    "--add",
    "credential.http://github.localhost.helper",
    credentialHelper(),
  ]);
}

/** The `code` of the error record a failed command printed on stderr. */
const errorCode = (r: { stderr: string }) =>
  parseNdjson(r.stderr).find((x) => x.kind === "error")?.code;

const TOKEN = "ghp_" + crypto.randomUUID().replaceAll("-", "");
/** Fine-grained tokens gh logs in with (no scopes to check) that lack a permission. */
const FG_READ_ONLY = "github_pat_ro_" + crypto.randomUUID().replaceAll("-", "");
const FG_NO_PRS = "github_pat_nopr_" + crypto.randomUUID().replaceAll("-", "");
const root = Deno.uid() === 0;

async function git(dir: string, ...args: string[]): Promise<string> {
  const r = await new Deno.Command("git", {
    args: ["--git-dir", dir, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(r.stdout);
}

function suite(provider: TestProvider) {
  describe(`the GitHub workflow (${provider})`, {
    skip: !root && "the stand-in needs port 80 and /etc/hosts (root)",
  }, () => {
    let rig: Rig;
    let gh: GitHubStandIn;
    let ws: string;
    let bare: string;

    before(async () => {
      await ensureHostsEntries();
      const data = await Deno.makeTempDir({ prefix: "cal-gh-" });
      gh = await startGitHub({ root: data, port: 80 });
      gh.state.addToken(TOKEN, { login: "octo" });
      gh.state.addToken("ghp_noorg", { login: "octo", scopes: ["repo"] });
      gh.state.addToken(FG_READ_ONLY, {
        login: "octo",
        fineGrained: true,
        permissions: { contents: "read", pull_requests: "read" },
      });
      gh.state.addToken(FG_NO_PRS, {
        login: "octo",
        fineGrained: true,
        permissions: { contents: "write", pull_requests: "read" },
      });
      await gh.state.createRepo("octo", "app", {
        defaultBranch: "main",
        files: { "README.md": "# app\n" },
      });
      await gh.state.createRepo("octo", "lib", {
        defaultBranch: "main",
        files: { "README.md": "# lib\n" },
      });
      bare = join(gh.state.reposDir, "octo", "app.git");
      rig = await Rig.create("", provider);
      const cfg = join(rig.env.CAL_HOME, "config.yaml");
      await Deno.writeTextFile(
        cfg,
        (await Deno.readTextFile(cfg)) + "    github:\n      host: github.localhost\n",
      );
      ws = rig.name("ghws");
      assert.equal((await rig.vm(["init", ws])).code, 0);
      assert.equal((await rig.vm(["start", ws])).code, 0);
    });
    after(async () => {
      await rig?.close();
      await gh?.close();
    });

    it("auth login takes the token on stdin; it shows in no argv and no file under ~/.cal", async () => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          join(REPO, "commands", "cal.ts"),
          "isolation",
          "auth",
          "login",
          ws,
          "--token-stdin",
          "--json",
        ],
        env: { ...rig.env, DENO_DIR: await getDenoDir() },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(TOKEN + "\n"));
      await w.close();
      const done = child.output();
      const { seen } = await argvSightings(TOKEN, done);
      const out = await done;
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.match(
        new TextDecoder().decode(out.stderr),
        /the agent there can read it/,
        "a login inside the workspace warns that the agent can read the token",
      );
      assert.equal(seen, 0, "the token was in a process's argv");
      const grep = await new Deno.Command("grep", {
        args: ["-rl", TOKEN, rig.env.CAL_HOME],
        stdout: "piped",
      }).output();
      // gh keeps its token in the guest (~/.config/gh/hosts.yml). A sandbox guest's home is a
      // folder on the host (README: "Sandbox"); it may be there, readable by its owner only.
      const guestHome = join(rig.env.CAL_HOME, "isolation", "sandboxes", `cal-${ws}`, "guest");
      const found = new TextDecoder().decode(grep.stdout).split("\n").filter(Boolean);
      const inGuest = (f: string) => provider === "sandbox" && f.startsWith(guestHome + "/");
      assert.deepEqual(found.filter((f) => !inGuest(f)), [], "cal wrote the token to a host file");
      for (const f of found.filter(inGuest)) {
        assert.equal(f, join(guestHome, "home", ".config", "gh", "hosts.yml"));
        assert.equal((await Deno.stat(f)).mode! & 0o077, 0, `${f} is readable by others`);
      }
      const status = await rig.cal(["isolation", "auth", "status", ws, "--json"]);
      assert.equal(status.code, 0, show(status));
      assert.equal(status.records[0].logged_in, true);
      assert.equal(status.records[0].host, "github.localhost");
      const set = await useGhCredentialsForHttp(rig, ws);
      assert.equal(set.code, 0, show(set));
    });

    it("a token without a needed scope is refused, naming the permission", async () => {
      const r = await rig.cal(["isolation", "auth", "login", ws, "--token-stdin"], {
        stdin: "ghp_noorg\n",
      });
      assert.equal(r.code, 2, show(r));
      assert.match(r.stderr, /missing a permission it needs .*read:org/);
      const status = await rig.gh(["auth", "status", ws, "--json"]);
      assert.equal(status.records[0].logged_in, true, "the earlier login is intact");
    });

    it("clone puts the repo in ~/workspace on a prefixed new branch, recorded in vm.yaml", async () => {
      const r = await rig.cal([
        "isolation",
        "clone",
        ws,
        "--repo",
        "octo/app",
        "--new-branch",
        "feature-work",
        "--json",
      ]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.records.at(-1)!.branch, "agent/feature-work");
      const head = await rig.vm([
        "ssh",
        ws,
        "cd ~/workspace/app && git rev-parse --abbrev-ref HEAD && cat README.md",
      ]);
      assert.equal(head.stdout, "agent/feature-work\n# app\n");
      const vm = await Deno.readTextFile(join(rig.env.CAL_HOME, "isolation", "vms", ws, "vm.yaml"));
      assert.match(
        vm,
        /name: app\n\s+url: github\.localhost\/octo\/app\n\s+branch: agent\/feature-work/,
      );
    });

    it("bad input: a missing repository (3), an existing branch (4)", async () => {
      const missing = await rig.cal(["isolation", "clone", ws, "--repo", "octo/nope"]);
      assert.equal(missing.code, 3, show(missing));
      const ws2 = rig.name("ghws2");
      assert.equal((await rig.vm(["init", ws2])).code, 0);
      assert.equal((await rig.vm(["start", ws2])).code, 0);
      assert.equal(
        (await rig.gh(["auth", "login", ws2, "--token-stdin"], { stdin: TOKEN })).code,
        0,
      );
      // Somebody already pushed agent/taken.
      await new Deno.Command("git", { args: ["--git-dir", bare, "branch", "agent/taken", "main"] })
        .output();
      const exists = await rig.gh(["clone", ws2, "--repo", "octo/app", "--new-branch", "taken"]);
      assert.equal(exists.code, 4, show(exists));
      assert.match(exists.stderr, /Branch "agent\/taken" already exists in octo\/app/);
      assert.equal(errorCode(exists), "branch-exists");
      await rig.vm(["stop", ws2, "--force"]);
    });

    it("commit --push lands on the remote branch (read from the bare repo)", async () => {
      assert.equal(
        (await rig.vm(["ssh", ws, "cd ~/workspace/app && echo 'login' > login.swift"])).code,
        0,
      );
      const r = await rig.cal([
        "isolation",
        "commit",
        ws,
        "--message",
        "Add login screen",
        "--push",
        "--json",
      ]);
      assert.equal(r.code, 0, show(r));
      const rec = r.records.find((x) => x.kind === "repo")!;
      assert.equal(rec.pushed, true);
      const remote = (await git(bare, "rev-parse", "refs/heads/agent/feature-work")).trim();
      assert.equal(remote, rec.commit);
      assert.match(
        await git(bare, "log", "-1", "--format=%s", "agent/feature-work"),
        /^Add login screen/,
      );
      assert.match(
        await git(bare, "show", "--name-only", "--format=", "agent/feature-work"),
        /login\.swift/,
      );
    });

    it("pr opens a pull request whose body ends with the run record", async () => {
      assert.equal(
        (await rig.vm(["ssh", ws, "cd ~/workspace/app && echo more >> login.swift"])).code,
        0,
      );
      assert.equal((await rig.gh(["commit", ws, "--message", "More login", "--push"])).code, 0);
      const r = await rig.cal([
        "isolation",
        "pr",
        ws,
        "--title",
        "New login screen",
        "--body",
        "Adds the screen.",
        "--base",
        "main",
        "--json",
      ]);
      assert.equal(r.code, 0, show(r));
      const pr = r.records[0];
      assert.match(String(pr.url), /^http:\/\/github\.localhost\/octo\/app\/pull\/\d+$/);
      const got = gh.state.pulls.at(-1)!;
      assert.equal(got.title, "New login screen");
      assert.equal(got.base, "main");
      assert.equal(got.head, "agent/feature-work");
      assert.match(got.body, /^Adds the screen\./);
      assert.match(got.body, /Made in an isolated workspace with cal/);
      assert.match(got.body, new RegExp(`Workspace: \`${ws}\``));
    });

    it("status shows each repository's branch, changes, last commit and ahead/behind", async () => {
      assert.equal(
        (await rig.vm(["ssh", ws, "cd ~/workspace/app && echo x >> README.md && echo y > new.txt"]))
          .code,
        0,
      );
      const r = await rig.cal(["isolation", "status", ws, "--human"]);
      assert.equal(r.code, 0, show(r));
      assert.match(
        r.stdout,
        /^Repos:\n {2}app \(branch: agent\/feature-work\)\n {4}- 1 file modified\n {4}- 1 file added\n {4}- Last commit: .+ ago/m,
      );
      const j = await rig.gh(["status", ws, "--json"]);
      assert.equal(j.records[0].kind, "repo");
      assert.equal(j.records[0].ahead, 0);
      assert.equal(j.records[0].compared_with, "origin/agent/feature-work");
    });

    it("status counts a never-pushed branch's commits against the branch it was cut from", async () => {
      const c = await rig.gh(["clone", ws, "--repo", "octo/lib", "--new-branch", "notes"]);
      assert.equal(c.code, 0, show(c));
      const made = await rig.vm([
        "ssh",
        ws,
        "cd ~/workspace/lib && echo notes > NOTES.md && git add NOTES.md && " +
        "git -c user.name=a -c user.email=a@example.com commit -qm 'Add notes'",
      ]);
      assert.equal(made.code, 0, show(made));
      const j = await rig.gh(["status", ws, "--json"]);
      assert.equal(j.code, 0, show(j));
      const lib = j.records.find((x) => x.repo === "lib")!;
      assert.equal(lib.branch, "agent/notes");
      assert.equal(lib.ahead, 1, "the local commit shows without an upstream");
      assert.equal(lib.behind, 0);
      assert.equal(lib.compared_with, "origin/main");
      const h = await rig.cal(["isolation", "status", ws, "--human"]);
      assert.match(
        h.stdout,
        /^ {2}lib \(branch: agent\/notes\)\n(?: {4}- .*\n)* {4}- 1 ahead, 0 behind origin\/main/m,
      );
    });

    it("a fine-grained token without a permission: push and PR refused (exit 2), naming it", async () => {
      // Each login's `gh auth setup-git` resets git's helpers for the host; add the http one back.
      const login = async (token: string) => {
        const r = await rig.gh(["auth", "login", ws, "--token-stdin"], { stdin: token + "\n" });
        return r.code === 0 ? await useGhCredentialsForHttp(rig, ws) : r;
      };
      const pushes = gh.state.pushes.length;
      const pulls = gh.state.pulls.length;
      try {
        assert.equal((await login(FG_READ_ONLY)).code, 0, "gh cannot tell at login");
        const p = await rig.gh(["push", ws, "--repo", "lib"]);
        assert.equal(p.code, 2, show(p));
        assert.match(
          p.stderr,
          /Pushing agent\/notes: the token is missing a permission it needs \(Write access to repository not granted\.\)/,
        );
        assert.match(p.stderr, /Contents: read and write/);
        assert.equal(gh.state.pushes.length, pushes, "nothing was pushed");

        assert.equal((await login(FG_NO_PRS)).code, 0);
        const pr = await rig.gh(["pr", ws, "--repo", "lib", "--title", "Notes"]);
        assert.equal(pr.code, 2, show(pr));
        assert.match(
          pr.stderr,
          /gh pr create: the token is missing a permission it needs \(.*Resource not accessible by personal access token/,
        );
        assert.match(pr.stderr, /Pull requests: read and write/);
        assert.equal(gh.state.pulls.length, pulls, "no pull request was opened");
        assert.match(
          await git(
            bare.replace(/app\.git$/, "lib.git"),
            "log",
            "-1",
            "--format=%s",
            "agent/notes",
          ),
          /^Add notes/,
          "the push (Contents: write) went through",
        );
      } finally {
        assert.equal((await login(TOKEN)).code, 0);
      }
    });

    it("a push to main is refused before any git command writes, and nothing is lost", async () => {
      const pushes = gh.state.pushes.length;
      assert.equal(
        (await rig.vm([
          "ssh",
          ws,
          "cd ~/workspace/app && git stash -q && git checkout -q main && git stash pop -q",
        ])).code,
        0,
      );
      const r = await rig.cal([
        "isolation",
        "commit",
        ws,
        "--message",
        "straight to main",
        "--push",
      ]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /"main" is a protected branch/);
      assert.equal(errorCode(r), "protected-branch");
      assert.match(r.stderr, /git switch -c agent\//);
      assert.equal(gh.state.pushes.length, pushes, "nothing was pushed");
      const st = await rig.vm([
        "ssh",
        ws,
        "cd ~/workspace/app && git status --porcelain && git log -1 --format=%s",
      ]);
      assert.match(st.stdout, /README\.md/, "the change is still uncommitted");
      assert.match(st.stdout, /^# app|Initial|init/im);
      assert.equal(
        (await rig.vm([
          "ssh",
          ws,
          "cd ~/workspace/app && git stash -q && git checkout -q agent/feature-work && git stash pop -q",
        ])).code,
        0,
      );
    });

    it("nothing to commit is exit 4", async () => {
      assert.equal(
        (await rig.vm(["ssh", ws, "cd ~/workspace/app && git add -A && git commit -qm wip"])).code,
        0,
      );
      const r = await rig.gh(["commit", ws, "--message", "empty"]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /Nothing to commit/);
      assert.equal(errorCode(r), "nothing-to-commit");
    });

    it("commit --push with nothing new pushes the commits not pushed yet, and says so", async () => {
      const head = (await rig.vm(["ssh", ws, "cd ~/workspace/app && git rev-parse HEAD"])).stdout
        .trim();
      assert.notEqual((await git(bare, "rev-parse", "refs/heads/agent/feature-work")).trim(), head);
      const r = await rig.gh(["commit", ws, "--message", "again", "--push"]);
      assert.equal(r.code, 0, show(r));
      assert.match(r.stderr, /Nothing new to commit in app; pushing the 1 commit not pushed yet/);
      assert.equal((await git(bare, "rev-parse", "refs/heads/agent/feature-work")).trim(), head);
      const log = await rig.vm(["ssh", ws, "cd ~/workspace/app && git log -1 --format=%s"]);
      assert.equal(log.stdout, "wip\n", "no empty commit was made");
      const again = await rig.gh(["commit", ws, "--message", "again", "--push"]);
      assert.equal(again.code, 4, show(again));
      assert.match(again.stderr, /the working tree is clean and every commit is pushed/);
      assert.equal(errorCode(again), "nothing-to-commit");
    });

    it("a rejected (non-fast-forward) push keeps the local commit; no force, no reset", async () => {
      // Someone else pushes to the branch first.
      const other = await Deno.makeTempDir();
      const run = (args: string[], cwd = other) =>
        new Deno.Command("git", { args, cwd, stdout: "null", stderr: "null" }).output();
      await run(["clone", "-q", "-b", "agent/feature-work", bare, other], "/");
      await Deno.writeTextFile(join(other, "theirs.txt"), "theirs\n");
      await run([
        "-c",
        "user.email=o@x",
        "-c",
        "user.name=o",
        "commit",
        "-qam",
        "theirs",
        "--allow-empty",
      ]);
      await run(["add", "theirs.txt"]);
      await run(["-c", "user.email=o@x", "-c", "user.name=o", "commit", "-qm", "theirs"]);
      await run(["push", "-q", "origin", "agent/feature-work"]);
      const theirs = (await git(bare, "rev-parse", "refs/heads/agent/feature-work")).trim();
      assert.equal(
        (await rig.vm(["ssh", ws, "cd ~/workspace/app && echo mine > mine.txt"])).code,
        0,
      );
      const r = await rig.gh(["commit", ws, "--message", "mine", "--push"]);
      assert.equal(r.code, 4, show(r));
      assert.match(r.stderr, /push was rejected/);
      assert.equal(errorCode(r), "push-rejected");
      assert.equal(
        (await git(bare, "rev-parse", "refs/heads/agent/feature-work")).trim(),
        theirs,
        "no force push",
      );
      const log = await rig.vm(["ssh", ws, "cd ~/workspace/app && git log -1 --format=%s"]);
      assert.equal(log.stdout, "mine\n", "the local commit is kept");
    });

    it("network down in the guest: its own message, nothing changed", async () => {
      await gh.state.setNetworkDown(true, { mode: "refuse" });
      try {
        const r = await rig.gh(["push", ws]);
        assert.equal(r.code, 1, show(r));
        assert.match(r.stderr, /cannot reach GitHub/);
        assert.equal(errorCode(r), "network");
      } finally {
        await gh.state.setNetworkDown(false);
      }
    });

    it("auth logout", async () => {
      const r = await rig.cal(["isolation", "auth", "logout", ws, "--json"]);
      assert.equal(r.code, 0, show(r));
      const status = await rig.gh(["auth", "status", ws, "--json"]);
      assert.equal(status.records[0].logged_in, false);
    });
  });
}

for (const provider of PROVIDERS) suite(provider);

describe("the main job on the sandbox provider (cal quick)", {
  skip: (!root || Deno.build.os !== "linux") && "needs Linux and root (port 80 for the stand-in)",
}, () => {
  let rig: Rig;
  let gh: GitHubStandIn;
  let bare: string;
  before(async () => {
    await ensureHostsEntries();
    gh = await startGitHub({ root: await Deno.makeTempDir({ prefix: "cal-gh-" }), port: 80 });
    gh.state.addToken(TOKEN, { login: "octo" });
    await gh.state.createRepo("octo", "app", {
      defaultBranch: "main",
      files: { "README.md": "# app\n" },
    });
    bare = join(gh.state.reposDir, "octo", "app.git");
    rig = await Rig.create("", "sandbox");
    const cfg = join(rig.env.CAL_HOME, "config.yaml");
    await Deno.writeTextFile(
      cfg,
      (await Deno.readTextFile(cfg)) + "    github:\n      host: github.localhost\n",
    );
  });
  after(async () => {
    await rig?.close();
    await gh?.close();
  });

  it("from a repository to a commit on a branch, pushed, in one command", async () => {
    const ws = rig.name("main-job");
    assert.equal((await rig.vm(["init", ws, "--provider", "sandbox"])).code, 0);
    assert.equal((await rig.vm(["start", ws])).code, 0);
    assert.equal((await rig.gh(["auth", "login", ws, "--token-stdin"], { stdin: TOKEN })).code, 0);
    await useGhCredentialsForHttp(rig, ws);
    const r = await rig.cal([
      "quick",
      ws,
      "--repo",
      "octo/app",
      "--branch",
      "add-notes",
      "--command",
      "echo 'made in a sandbox' > NOTES.md",
      "--push",
      "--json",
    ]);
    assert.equal(r.code, 0, show(r));
    const repo = r.records.find((x) => x.kind === "repo" && x.commit)!;
    assert.equal(repo.branch, "agent/add-notes");
    assert.equal((await git(bare, "rev-parse", "refs/heads/agent/add-notes")).trim(), repo.commit);
    assert.match(await git(bare, "show", "agent/add-notes:NOTES.md"), /made in a sandbox/);
    assert.equal(
      (await git(bare, "rev-parse", "refs/heads/main")).trim().length,
      40,
      "main untouched",
    );
  });
});
