/**
 * ghError: what a failed gh/git call in the guest becomes, from the texts gh 2.x and git really
 * print (github.com, and the local stand-in where it differs).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ghError } from "../lib/github/gh.ts";
import { ExitCode } from "../lib/errors.ts";

const failed = (stderr: string, code = 1) => ({ code, stdout: "", stderr, timedOut: false });

describe("ghError", () => {
  it("a scope missing at login stays a usage error (exit 2) naming the scope", () => {
    const e = ghError(
      "gh auth login",
      failed("error validating token: missing required scope 'read:org'\n"),
      "ws",
    );
    assert.equal(e.exit, ExitCode.usage);
    assert.equal(e.code, "usage");
    assert.match(
      e.message,
      /^gh auth login: the token is missing a permission it needs .*read:org/,
    );
  });

  describe("a token without a permission (fine-grained tokens pass gh's login check)", () => {
    const pushes = [
      "remote: Permission to octo/app.git denied to octo.\n" +
      "fatal: unable to access 'https://github.com/octo/app.git/': The requested URL returned error: 403\n",
      "remote: Write access to repository not granted.\n" +
      "fatal: unable to access 'https://github.com/octo/app.git/': The requested URL returned error: 403\n",
      "fatal: unable to access 'http://github.localhost/octo/app.git/': The requested URL returned error: 403\n",
    ];
    for (const stderr of pushes) {
      it(`push: ${stderr.split("\n")[0]}`, () => {
        const e = ghError("Pushing agent/pr-fix", failed(stderr, 128), "ws");
        assert.equal(e.exit, ExitCode.usage, e.message);
        assert.equal(e.code, "usage");
        assert.match(e.message, /^Pushing agent\/pr-fix: the token is missing a permission/);
        assert.doesNotMatch(e.message, /\(remote: /, "git's prefix is dropped");
        assert.match(e.hint!, /Contents: read and write/);
        assert.match(e.hint!, /cal-gh auth login ws --token-stdin/);
      });
    }
    it("the refusal line is the one quoted", () => {
      const e = ghError("Pushing agent/x", failed(pushes[1], 128), "ws");
      assert.match(e.message, /\(Write access to repository not granted\.\)/);
    });

    const prs = [
      "pull request create failed: GraphQL: Resource not accessible by personal access token (createPullRequest)\n",
      "pull request create failed: GraphQL: Resource not accessible by integration (createPullRequest)\n",
      "HTTP 403: Resource not accessible by personal access token (https://api.github.com/repos/octo/app/pulls)\n",
      "pull request create failed: GraphQL: octo does not have the correct permissions to execute `CreatePullRequest` (createPullRequest)\n",
    ];
    for (const stderr of prs) {
      it(`pull request: ${stderr.trim()}`, () => {
        const e = ghError("gh pr create", failed(stderr), "ws");
        assert.equal(e.exit, ExitCode.usage, e.message);
        assert.equal(e.code, "usage");
        assert.match(e.message, /^gh pr create: the token is missing a permission it needs/);
        assert.match(e.hint!, /Pull requests: read and write/);
      });
    }

    it("a clone refused with 403 asks for Contents: read", () => {
      const e = ghError(
        "Cloning octo/secret",
        failed(
          "Cloning into '/Users/admin/workspace/secret'...\n" +
            "fatal: unable to access 'https://github.com/octo/secret.git/': The requested URL returned error: 403\n",
          128,
        ),
        "ws",
      );
      assert.equal(e.exit, ExitCode.usage);
      assert.match(e.hint!, /Contents: read\b(?! and write)/);
    });
  });

  describe("a tool missing in the guest is not a missing repository", () => {
    const cases: [string, string][] = [
      ["sh: 1: git: not found", "git"],
      ["sh: git: not found", "git"],
      ["cal-cd: 1: exec: git: not found", "git"],
      ["cal-cd: line 0: exec: git: not found", "git"],
      ["bash: line 1: gh: command not found", "gh"],
      ["gh: command not found", "gh"],
      ["zsh:1: command not found: gh", "gh"],
      ["env: ‘gh’: No such file or directory", "gh"],
      ["env: 'gh': No such file or directory", "gh"],
      ["env: gh: No such file or directory", "gh"],
    ];
    for (const [stderr, tool] of cases) {
      it(stderr, () => {
        const e = ghError("Cloning octo/app", failed(stderr + "\n", 127), "ws");
        assert.equal(e.exit, ExitCode.failed, e.message);
        assert.equal(e.code, "tool-missing");
        assert.doesNotMatch(e.message, /repository was not found/);
        assert.match(e.message, new RegExp("`" + tool + '` is not installed in workspace "ws"'));
        assert.match(e.hint!, /brew install git gh/);
      });
    }
  });

  describe("a missing repository is still exit 3", () => {
    const cases = [
      "GraphQL: Could not resolve to a Repository with the name 'octo/nope'. (repository)\n",
      "remote: Repository not found.\nfatal: repository 'https://github.com/octo/nope.git/' not found\n",
      "fatal: repository 'http://github.localhost/octo/nope.git/' not found\n",
      "HTTP 404: Not Found (https://api.github.com/repos/octo/nope)\n",
    ];
    for (const stderr of cases) {
      it(stderr.trim().split("\n").at(-1)!, () => {
        const e = ghError("Cloning octo/nope", failed(stderr, 128), "ws");
        assert.equal(e.exit, ExitCode.notFound, e.message);
        assert.equal(e.code, "not-found");
        assert.match(e.message, /the repository was not found/);
      });
    }
    it("other things not found are not a missing repository", () => {
      const e = ghError(
        "Creating branch agent/x",
        failed("fatal: Remote branch nope not found in upstream origin\n", 128),
        "ws",
      );
      assert.equal(e.exit, ExitCode.failed);
      assert.doesNotMatch(e.message, /repository was not found/);
    });
  });

  it("the other kinds are unchanged: network (1), rejected push (4), bad credentials (1)", () => {
    const net = ghError(
      "Pushing agent/x",
      failed(
        "fatal: unable to access 'https://github.com/octo/app.git/': Could not resolve host: github.com\n",
        128,
      ),
      "ws",
    );
    assert.match(net.message, /cannot reach GitHub/);
    assert.equal(net.exit, ExitCode.failed);
    const rejected = ghError(
      "Pushing agent/x",
      failed(
        "To https://github.com/octo/app.git\n ! [rejected]        agent/x -> agent/x (fetch first)\n" +
          "error: failed to push some refs to 'https://github.com/octo/app.git'\n",
      ),
      "ws",
    );
    assert.equal(rejected.exit, ExitCode.wrongState);
    const creds = ghError(
      "Pushing agent/x",
      failed(
        "fatal: could not read Username for 'https://github.com': No such device or address\n",
      ),
      "ws",
    );
    assert.match(creds.message, /refused the credentials/);
    assert.equal(creds.exit, ExitCode.failed);
  });
});
