/**
 * Allow/deny rules for the agents whose permission files are cal's own: Gemini's policy engine
 * (~/.gemini/policies/cal.toml, parsed here by Python's tomllib) and Codex's execpolicy rules
 * (~/.codex/rules/cal.rules).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { BUILTIN } from "../lib/agents/registry.ts";
import type { AgentContext, TextEdit } from "../lib/agents/plugin.ts";

const byName = (n: string) => BUILTIN.find((p) => p.name === n)!;
const ctx = (settings: Record<string, unknown> = {}): AgentContext => ({
  home: "/Users/admin",
  workdir: "/Users/admin/workspace/app",
  settings,
  credentials: [],
});
const file = (agent: string, settings: Record<string, unknown>, path: string) => {
  const e = byName(agent).configure(ctx(settings)).find((x) => x.path === path) as TextEdit;
  assert.ok(e, `${agent} writes ${path}`);
  return e.edit("# the previous run's file\n", {}).next;
};

/** The TOML, parsed by a real TOML parser (Python 3.11's tomllib). */
async function parseToml(text: string): Promise<{ rule: Record<string, unknown>[] }> {
  const child = new Deno.Command("python3", {
    args: ["-c", "import json, sys, tomllib; print(json.dumps(tomllib.loads(sys.stdin.read())))"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  const out = await child.output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

describe("agent allow/deny rules in cal's own permission files", () => {
  it("gemini: policy rules parse as TOML, deny outranks allow", async () => {
    const text = file("gemini", {
      allow: ["shell:git status", "write_file"],
      deny: ['shell:rm -rf "/"', "web_fetch"],
    }, ".gemini/policies/cal.toml");
    const { rule } = await parseToml(text);
    assert.deepEqual(rule, [
      {
        toolName: "run_shell_command",
        commandPrefix: "git status",
        decision: "allow",
        priority: 100,
      },
      { toolName: "write_file", decision: "allow", priority: 100 },
      {
        toolName: "run_shell_command",
        commandPrefix: 'rm -rf "/"',
        decision: "deny",
        priority: 200,
      },
      { toolName: "web_fetch", decision: "deny", priority: 200 },
    ]);
    assert.doesNotMatch(text, /previous run/, "cal's own file is rewritten whole");
  });

  it("gemini: without settings, sudo and rm -rf / are denied", async () => {
    const { rule } = await parseToml(file("gemini", {}, ".gemini/policies/cal.toml"));
    assert.deepEqual(rule.map((r) => [r.commandPrefix, r.decision]), [
      ["sudo", "deny"],
      ["rm -rf /", "deny"],
    ]);
  });

  it("codex: one prefix_rule per entry, deny as forbidden", () => {
    const text = file("codex", {
      allow: ["git status", "npm  test"],
      deny: ["git push --force", 'echo "x"'],
    }, ".codex/rules/cal.rules");
    const rules = text.split("\n").filter((l) => l.startsWith("prefix_rule("));
    const parsed = rules.map((l) => {
      const m = /^prefix_rule\(pattern = (\[.*\]), decision = "(allow|forbidden)"\)$/.exec(l);
      assert.ok(m, l);
      return [JSON.parse(m[1]), m[2]];
    });
    assert.deepEqual(parsed, [
      [["git", "status"], "allow"],
      [["npm", "test"], "allow"],
      [["git", "push", "--force"], "forbidden"],
      [["echo", '"x"'], "forbidden"],
    ]);
  });

  it("codex: without settings, sudo and rm -rf / are forbidden", () => {
    const text = file("codex", {}, ".codex/rules/cal.rules");
    assert.match(text, /^prefix_rule\(pattern = \["sudo"\], decision = "forbidden"\)$/m);
    assert.match(text, /^prefix_rule\(pattern = \["rm", "-rf", "\/"\], decision = "forbidden"\)$/m);
  });
});
