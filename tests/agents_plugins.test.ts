/** Agent plugins: exact command lines, config files that parse and keep what cal did not write. */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { BUILTIN } from "../lib/agents/registry.ts";
import {
  type AgentContext,
  type AgentPlugin,
  type JsonEdit,
  launchEnv,
  type TextEdit,
} from "../lib/agents/plugin.ts";
import { tomlSet } from "../lib/agents/toml.ts";
import { banner, confirmationScreen } from "../lib/agents/screen.ts";

const byName = (n: string) => BUILTIN.find((p) => p.name === n)!;
const ctx = (settings: Record<string, unknown> = {}): AgentContext => ({
  home: "/Users/admin",
  workdir: "/Users/admin/workspace/app",
  settings,
  version: "2.1.0",
  credentials: ["ANTHROPIC_API_KEY"],
});
const prompt = `Fix "it"; $(rm -rf ~) — ünï\nline 2`;

describe("agent command lines", () => {
  const cases: [string, { interactive: string[]; headless: string[]; autonomous: string[] }][] = [
    ["claude-code", {
      interactive: ["--permission-mode", "acceptEdits"],
      headless: ["--permission-mode", "acceptEdits", "-p", prompt, "--output-format", "json"],
      autonomous: ["--dangerously-skip-permissions", "-p", prompt, "--output-format", "json"],
    }],
    ["opencode", {
      interactive: [],
      headless: ["run", "--format", "json", prompt],
      autonomous: ["run", "--auto", "--format", "json", prompt],
    }],
    ["cursor-cli", {
      interactive: ["--trust"],
      headless: ["--trust", "-p", "--output-format", "json", prompt],
      autonomous: ["--trust", "--force", "-p", "--output-format", "json", prompt],
    }],
    ["codex", {
      interactive: [],
      headless: ["exec", "--json", "--skip-git-repo-check", prompt],
      autonomous: [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        prompt,
      ],
    }],
    ["gemini", {
      interactive: [],
      headless: ["-p", prompt, "--output-format", "json"],
      autonomous: ["--approval-mode", "yolo", "-p", prompt, "--output-format", "json"],
    }],
  ];
  for (const [name, want] of cases) {
    it(name, () => {
      const p = byName(name);
      assert.deepEqual(p.args(ctx(), { autonomous: false }), want.interactive);
      assert.deepEqual(p.args(ctx(), { prompt, autonomous: false }), want.headless);
      assert.deepEqual(p.args(ctx(), { prompt, autonomous: true }), want.autonomous);
    });
  }

  it("opencode: an autonomous interactive session allows everything through OPENCODE_PERMISSION", () => {
    const p = byName("opencode");
    const autonomous = launchEnv(p, ctx(), { autonomous: true });
    assert.deepEqual(JSON.parse(autonomous.OPENCODE_PERMISSION), { "*": "allow" });
    assert.equal(autonomous.OPENCODE_DISABLE_AUTOUPDATE, "1", "the plugin's own env is kept");
    assert.ok(!("OPENCODE_PERMISSION" in launchEnv(p, ctx(), { autonomous: false })));
    // Headless runs use `opencode run --auto`, which still honours the configured deny rules.
    assert.ok(!("OPENCODE_PERMISSION" in launchEnv(p, ctx(), { prompt, autonomous: true })));
    assert.ok(!("OPENCODE_PERMISSION" in launchEnv(p, ctx(), { prompt, autonomous: false })));
  });

  it("every plugin names its credentials and at least two install methods or one with a fallback", () => {
    for (const p of BUILTIN) {
      assert.ok(p.credentials.length > 0, p.name);
      assert.ok(p.install.length >= 2, p.name);
      for (const m of p.install) {
        assert.ok(!/\$\{?[A-Z_]*KEY/.test(m.script), `${p.name}: no secrets in scripts`);
      }
    }
  });
});

function applyJson(
  p: AgentPlugin,
  path: string,
  current: Record<string, unknown>,
  owned = {},
  settings = {},
) {
  const e = p.configure(ctx(settings)).find((x) => x.path === path) as JsonEdit;
  assert.ok(e, `${p.name} writes ${path}`);
  const r = e.edit(structuredClone(current), owned);
  return { ...r, text: JSON.stringify(r.next) };
}

describe("agent config files", () => {
  it("claude-code: permissions, first-run gates, and the user's own keys kept", () => {
    const p = byName("claude-code");
    const user = { theme: "dark", permissions: { allow: ["Bash(make:*)"], deny: [] } };
    const first = applyJson(p, ".claude/settings.json", user, {}, {
      allowed_tools: ["Bash(git:*)", "Read(*)"],
      denied_tools: ["Bash(sudo:*)"],
    });
    const s = JSON.parse(first.text);
    assert.equal(s.theme, "dark");
    assert.deepEqual(s.permissions.allow, ["Bash(make:*)", "Bash(git:*)", "Read(*)"]);
    assert.deepEqual(s.permissions.deny, ["Bash(sudo:*)"]);
    assert.equal(s.skipDangerousModePermissionPrompt, true);
    assert.equal(s.env.DISABLE_AUTOUPDATER, "1");
    // Reconfigured with Read(*) dropped: cal removes its own old rule, keeps the user's.
    const second = applyJson(p, ".claude/settings.json", s, first.owned, {
      allowed_tools: ["Bash(git:*)"],
      denied_tools: ["Bash(sudo:*)"],
    });
    assert.deepEqual(JSON.parse(second.text).permissions.allow, ["Bash(make:*)", "Bash(git:*)"]);

    const state = applyJson(p, ".claude.json", {
      mcpServers: { x: {} },
      projects: { "/other": { a: 1 } },
    });
    const j = JSON.parse(state.text);
    assert.equal(j.hasCompletedOnboarding, true);
    assert.equal(j.lastOnboardingVersion, "2.1.0");
    assert.deepEqual(j.projects["/Users/admin/workspace/app"], { hasTrustDialogAccepted: true });
    assert.deepEqual(j.projects["/other"], { a: 1 });
    assert.deepEqual(j.mcpServers, { x: {} });
    assert.equal(j.customApiKeyResponses, undefined, "no part of a key is written to the guest");
    const e = p.configure(ctx()).find((x) => x.path === ".claude.json")!;
    assert.equal(e.mode, 0o600);
  });

  it("opencode: the spec's auto_approve/deny become v1 permission rules", () => {
    const r = applyJson(
      byName("opencode"),
      ".config/opencode/opencode.json",
      { model: "x/y", permission: { webfetch: "deny" } },
      {},
      {
        auto_approve: ["read", "write"],
        deny: ["shell:sudo*"],
      },
    );
    const c = JSON.parse(r.text);
    assert.equal(c.autoupdate, false);
    assert.equal(c.model, "x/y");
    assert.equal(c.permission.read, "allow");
    assert.equal(c.permission.edit, "allow");
    assert.equal(c.permission.webfetch, "deny");
    assert.deepEqual(c.permission.bash, { "sudo*": "deny" });
  });

  it("cursor-cli: required fields, allow/deny, mode 0600", () => {
    const r = applyJson(byName("cursor-cli"), ".cursor/cli-config.json", { authInfo: { t: 1 } });
    const c = JSON.parse(r.text);
    assert.equal(c.version, 1);
    assert.deepEqual(c.editor, { vimMode: false });
    assert.ok(c.permissions.allow.length && c.permissions.deny.length);
    assert.deepEqual(c.authInfo, { t: 1 });
  });

  it("codex: TOML keys set in place, other lines kept", () => {
    const e = byName("codex").configure(ctx()).find((x) => x.format === "toml") as TextEdit;
    const before =
      '# mine\nmodel = "o3"\nsandbox_mode = "read-only"\n\n[mcp_servers.x]\ncommand = "y"\n';
    const { next } = e.edit(before, {});
    assert.match(
      next,
      /^# mine\nmodel = "o3"\nsandbox_mode = "workspace-write"\napproval_policy = "on-request"\n/,
    );
    assert.match(next, /\[mcp_servers\.x\]\ncommand = "y"/);
    assert.match(
      next,
      /\[projects\."\/Users\/admin\/workspace\/app"\]\ntrust_level = "trusted"\n$/,
    );
    assert.equal(e.edit(next, {}).next, next, "idempotent");
  });

  it("tomlSet adds tables and replaces keys only inside the right table", () => {
    const t = tomlSet("a = 1\n[x]\na = 2\n", "x", "a", "3");
    assert.equal(t, "a = 1\n[x]\na = 3\n");
    assert.equal(tomlSet("", undefined, "k", '"v"'), 'k = "v"\n');
  });
});

describe("headless output parsing", () => {
  it("claude's result object", () => {
    const r = byName("claude-code").parseHeadless(
      '{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s-1","total_cost_usd":0.12,"permission_denials":[{"tool_name":"Edit"}]}\n',
    );
    assert.deepEqual(r, {
      session_id: "s-1",
      cost_usd: 0.12,
      permission_denials: [{ tool_name: "Edit" }],
      result: "done",
      is_error: false,
    });
  });
  it("opencode's event stream", () => {
    const r = byName("opencode").parseHeadless(
      [
        '{"type":"step_start","sessionID":"ses_1"}',
        '{"type":"text","part":{"text":"hi"}}',
        '{"type":"done","rejected":["bash"]}',
      ].join("\n"),
    );
    assert.equal(r.session_id, "ses_1");
    assert.equal(r.result, "hi");
    assert.deepEqual(r.permission_denials, ["bash"]);
  });
});

describe("launch screen and banner", () => {
  it("shows the fields of the spec's confirmation", () => {
    const s = confirmationScreen({
      workspace: "my-workspace",
      vmState: "running",
      isolation: "Host filesystem protected",
      environments: ["ios", "android"],
      agent: "Claude Code",
      repository: "owner/my-app (branch: agent/feature)",
      lastBackup: "2 minutes ago (auto-snapshot)",
      autonomous: false,
    });
    for (
      const want of [
        "Workspace:     my-workspace",
        "Running",
        "Active - Host filesystem protected",
        "ios, android",
        "Claude Code",
        "owner/my-app (branch: agent/feature)",
        "Last backup: 2 minutes ago",
        "[Enter] Launch Agent",
        "[B] Backup First",
        "[Q] Quit",
      ]
    ) {
      assert.ok(s.includes(want), want);
    }
  });
  it("the banner names the workspace and environments", () => {
    const b = banner({ workspace: "ws", environments: ["node"] }, "running", 60);
    assert.match(b, /CAL ISOLATION ACTIVE │ VM: ws │ Env: node │ Safe Mode/);
  });
  it("the screen and the banner say the network mode, and warn when it is open", () => {
    const base = {
      workspace: "ws",
      vmState: "running",
      isolation: "Host filesystem protected",
      environments: [],
      agent: "Claude Code",
      repository: "(none)",
      lastBackup: "none yet",
      autonomous: false,
    };
    const closed = confirmationScreen({ ...base, network: "allowlist" });
    assert.match(closed, /Network: +.*Allowlist \(out only through cal's proxy\)/);
    assert.doesNotMatch(closed, /network is open/);
    const open = confirmationScreen({ ...base, network: "open" });
    assert.match(open, /Open \(whatever the host reaches\)/);
    assert.match(open, /The network is open: the agent can reach your local services/);
    const b = banner({ workspace: "ws", environments: [], network: "open" }, "running", 100);
    assert.match(b, /NET OPEN/);
    assert.doesNotMatch(
      banner({ workspace: "ws", environments: [], network: "allowlist" }, "running", 100),
      /NET|Net:/,
    );
    assert.match(
      banner({ workspace: "ws", environments: [], network: "none" }, "running", 100),
      /Net: none/,
    );
  });
});
