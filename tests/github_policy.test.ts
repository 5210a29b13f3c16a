import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConfigFile, layer } from "../lib/config.ts";
import { checkRepoSlug, isProtected } from "../lib/github/repos.ts";
import { CalError } from "../lib/errors.ts";
import { runTool, tempDir } from "./helpers.ts";
import { parseYaml } from "../lib/yaml.ts";

describe("protected branches", () => {
  it("main, master and develop stay protected when the config lists its own", () => {
    const file = parseYaml(
      "isolation:\n  defaults:\n    github:\n      protected_branches: [release]\n",
      "config.yaml",
      ConfigFile,
    );
    const config = layer(file);
    for (const b of ["main", "master", "develop", "release", "trunk"]) {
      assert.equal(isProtected(b, config, "trunk"), true, b);
    }
    assert.equal(isProtected("agent/feature", config, "trunk"), false);
  });
});

describe("--repo OWNER/REPO", () => {
  it("takes GitHub's names, and gives the repository's", () => {
    assert.equal(checkRepoSlug("octo/app"), "app");
    assert.equal(checkRepoSlug("octo-org/my.repo_x"), "my.repo_x");
    assert.equal(checkRepoSlug("Octo9/app.git"), "app");
  });

  it("refuses what gh would misread or what would leave ~/workspace (exit 2)", () => {
    const bad = [
      "../x",
      "-uhelp/x",
      "-/-",
      "o/..",
      "o/.",
      "o/.git",
      "o/-x",
      "a/b/c",
      "",
      "octo",
      "octo/",
      "oc--to/x",
      "octo-/x",
      "x".repeat(40) + "/a",
      "octo/" + "a".repeat(101),
      "octo/a b",
      "octo/$(id)",
    ];
    for (const slug of bad) {
      assert.throws(
        () => checkRepoSlug(slug),
        (e: unknown) => e instanceof CalError && e.exit === 2,
        JSON.stringify(slug),
      );
    }
  });
});

describe("auth login --token-stdin", () => {
  it("refuses what cannot be a token, without saying what it was (exit 2)", async () => {
    const home = await tempDir("cal-token-");
    const env = { HOME: home, CAL_HOME: `${home}/.cal`, PATH: Deno.env.get("PATH") ?? "" };
    for (const junk of ["ghp_with a space", "\u0000\u0000\u0000", "x".repeat(5000)]) {
      const r = await runTool("cal-gh", ["auth", "login", "ws", "--token-stdin"], env, {
        stdin: junk + "\n",
      });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /does not look like a GitHub token/);
      assert.ok(!r.stderr.includes("with a space") && !r.stderr.includes("xxxx"), r.stderr);
    }
    await Deno.remove(home, { recursive: true });
  });
});
