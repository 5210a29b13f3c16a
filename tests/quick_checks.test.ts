/**
 * `cal quick` checks every credential it will need before it makes anything: which agent runs,
 * that agent's key (on the host), and a GitHub login (the host's or the workspace's). Each refusal
 * leaves no workspace behind.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Env, runTool, tempDir } from "./helpers.ts";

describe("cal quick checks its credentials before it creates anything", () => {
  let root: string;
  let env: Env;
  const vms = () => join(env.CAL_HOME, "isolation", "vms");
  const nothingMade = async () => {
    const names = await Array.fromAsync(Deno.readDir(vms())).catch(() => []);
    assert.deepEqual(names, [], "a workspace was made");
  };

  before(async () => {
    root = await tempDir("cal-quick-");
    // No key in the environment, no GitHub login of the host's (its own gh is pointed elsewhere).
    env = {
      HOME: join(root, "home"),
      CAL_HOME: join(root, "home", ".cal"),
      GH_CONFIG_DIR: join(root, "gh"),
      ANTHROPIC_API_KEY: "",
      CLAUDE_CODE_OAUTH_TOKEN: "",
    };
    await Deno.mkdir(env.CAL_HOME, { recursive: true });
    await Deno.writeTextFile(
      join(env.CAL_HOME, "config.yaml"),
      "isolation:\n  defaults:\n    vm:\n      provider: sandbox\n",
    );
  });
  after(async () => await Deno.remove(root, { recursive: true }).catch(() => {}));

  it("no agent named for a new workspace: exit 2", async () => {
    const r = await runTool("cal-quick", ["fresh", "--repo", "octo/app", "--prompt", "x"], env);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /which agent/);
    await nothingMade();
  });

  it("the agent's key missing: exit 2, saying where cal looked", async () => {
    const r = await runTool(
      "cal-quick",
      ["fresh", "--repo", "octo/app", "--agent", "claude-code", "--prompt", "x"],
      env,
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /ANTHROPIC_API_KEY/);
    await nothingMade();
  });

  it("no GitHub login anywhere: auth-failed, nothing made", async () => {
    const r = await runTool(
      "cal-quick",
      ["fresh", "--repo", "octo/app", "--command", "true", "--push", "--json"],
      env,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /no GitHub login/);
    assert.match(r.stderr, /"code":"auth-failed"/);
    await nothingMade();
  });
});
