/** The real Claude Code npm package, installed by cal into a real guest, answers --version. */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Rig, show } from "./rig_env.ts";

async function registryReachable(): Promise<boolean> {
  try {
    const r = await new Deno.Command("npm", {
      args: ["view", "@anthropic-ai/claude-code", "version"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return r.code === 0;
  } catch {
    return false;
  }
}

const reachable = await registryReachable();

describe("the real Claude Code", () => {
  let rig: Rig;
  let ws: string;
  before(async () => {
    if (!reachable) return;
    rig = await Rig.create();
    ws = rig.name("real-claude");
    assert.equal((await rig.vm(["init", ws])).code, 0);
    assert.equal((await rig.vm(["start", ws])).code, 0);
  });
  after(async () => await rig?.close());

  it("installs with npm and answers claude --version", {
    skip: !reachable && "the npm registry is unreachable from this machine",
    timeout: 600_000,
  }, async () => {
    // This machine reaches the registry through a TLS proxy whose CA is in the system bundle
    // (the host's npm is configured for it); give the guest's npm the same bundle.
    await rig.vm(["ssh", ws, "npm config set cafile /etc/ssl/certs/ca-certificates.crt"]);
    const r = await rig.cal([
      "isolation",
      "agent",
      "install",
      ws,
      "claude-code",
      "--method",
      "npm",
      "--json",
    ]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.records[0].installed, true);
    assert.match(String(r.records[0].version), /^\d+\.\d+\.\d+/);
    assert.equal(r.records[0].method, "npm");
    const v = await rig.vm(["exec", ws, "--", "claude", "--version"]);
    assert.equal(v.code, 0, show(v));
    assert.match(v.stdout, /\d+\.\d+\.\d+ \(Claude Code\)/);
    const list = await rig.agent(["list", ws, "--json"]);
    const claude = list.records.find((x) => x.agent === "claude-code")!;
    assert.equal(claude.installed, true);
    assert.equal(claude.method, "npm");
  });
});
