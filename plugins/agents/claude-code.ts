/**
 * Claude Code (Anthropic). Facts: research/agents.md §1.
 * Settings in ~/.claude/settings.json (permissions, env), first-run state in ~/.claude.json
 * (onboarding, per-project trust, approved API key), credentials by environment.
 */

import {
  type AgentPlugin,
  lastJsonObject,
  mergeOwnedList,
  type Owned,
  setPath,
  str,
  stringList,
} from "../../lib/agents/plugin.ts";

/** The spec's "Agent Permissions (Inside VM)" defaults. */
const DEFAULT_ALLOW = [
  "Bash(xcodebuild:*)",
  "Bash(swift:*)",
  "Bash(git:*)",
  "Bash(gh pr:*)",
  "Bash(gh issue:*)",
  "Bash(npm:*)",
  "Bash(pod:*)",
  "Edit(~/workspace/**)",
  "Read(**)",
];
const DEFAULT_DENY = [
  "Bash(rm -rf /)",
  "Bash(rm -rf ~)",
  "Bash(sudo:*)",
  "Bash(gh auth:*)",
  "Edit(/etc/**)",
  "Edit(~/.config/gh/**)",
];
const MODES = ["default", "acceptEdits", "plan", "auto", "dontAsk", "bypassPermissions"];

const plugin: AgentPlugin = {
  name: "claude-code",
  displayName: "Claude Code",
  binaries: ["claude"],
  install: [
    {
      name: "native",
      describe: "Anthropic's installer (recommended): ~/.local/bin/claude",
      script: "curl -fsSL https://claude.ai/install.sh | bash",
    },
    {
      name: "brew",
      describe: "Homebrew cask claude-code (stable channel)",
      script: "brew install --cask claude-code",
    },
    {
      name: "npm",
      describe: "npm package @anthropic-ai/claude-code into ~/.local (deprecated upstream)",
      script: 'npm install -g --prefix "$HOME/.local" @anthropic-ai/claude-code',
    },
  ],
  update: {
    native: "claude update",
    brew: "brew upgrade --cask claude-code",
    npm: 'npm install -g --prefix "$HOME/.local" @anthropic-ai/claude-code@latest',
  },
  versionArgs: ["--version"],
  parseVersion: (out) => /(\d+\.\d+\.\d+\S*)/.exec(out)?.[1],
  /** Hosts the egress policy's @agent preset allows: the API, login and the native installer's downloads. */
  hosts: ["api.anthropic.com", "claude.ai", "console.anthropic.com", "storage.googleapis.com"],
  credentials: [["ANTHROPIC_API_KEY"], ["CLAUDE_CODE_OAUTH_TOKEN"]],
  /** An API key goes in x-api-key, an OAuth token as a Bearer token (the Messages API both). */
  keyRoutes: {
    ANTHROPIC_API_KEY: { hosts: ["api.anthropic.com"], header: "x-api-key" },
    CLAUDE_CODE_OAUTH_TOKEN: { hosts: ["api.anthropic.com"], header: "authorization" },
  },
  env: { DISABLE_AUTOUPDATER: "1", DISABLE_TELEMETRY: "1", DISABLE_ERROR_REPORTING: "1" },

  configure(ctx) {
    const allow = stringList(ctx.settings.allowed_tools, DEFAULT_ALLOW);
    const deny = stringList(ctx.settings.denied_tools, DEFAULT_DENY);
    return [
      {
        path: ".claude/settings.json",
        format: "json",
        edit(cur, before) {
          const owned: Owned = {};
          const next = structuredClone(cur);
          mergeOwnedList(next, "permissions.allow", allow, before, owned);
          mergeOwnedList(next, "permissions.deny", deny, before, owned);
          // The bypass-mode warning cannot be answered inside an unattended run.
          next.skipDangerousModePermissionPrompt = true;
          setPath(next, "env.DISABLE_AUTOUPDATER", "1");
          setPath(next, "env.DISABLE_TELEMETRY", "1");
          return { next, owned };
        },
      },
      {
        // First-run gates: onboarding, per-project trust, and the API key's approval (Claude
        // records a key as its last 20 characters) only for a stand-in: no part of a real key
        // goes into the guest.
        path: ".claude.json",
        format: "json",
        mode: 0o600,
        edit(cur, before) {
          const owned: Owned = {};
          const next = structuredClone(cur);
          next.hasCompletedOnboarding = true;
          if (ctx.version) next.lastOnboardingVersion = ctx.version;
          setPath(next, "projects", { ...(next.projects as object ?? {}) });
          const projects = next.projects as Record<string, Record<string, unknown>>;
          projects[ctx.workdir] = { ...projects[ctx.workdir], hasTrustDialogAccepted: true };
          const standIn = ctx.standIns?.ANTHROPIC_API_KEY;
          // The last session's approval goes when this one's comes (an owned list entry).
          const approved = standIn ? [standIn.slice(-20)] : [];
          if (standIn || before["customApiKeyResponses.approved"]?.length) {
            mergeOwnedList(next, "customApiKeyResponses.approved", approved, before, owned);
            const r = next.customApiKeyResponses as Record<string, unknown>;
            if (!Array.isArray(r.rejected)) r.rejected = [];
          }
          return { next, owned };
        },
      },
    ];
  },

  args(ctx, run) {
    const mode = str(ctx.settings.mode, "acceptEdits")!;
    const args: string[] = [];
    if (run.autonomous) args.push("--dangerously-skip-permissions");
    else if (MODES.includes(mode)) args.push("--permission-mode", mode);
    const model = str(ctx.settings.model);
    if (model) args.push("--model", model);
    if (run.prompt !== undefined) args.push("-p", run.prompt, "--output-format", "json");
    return args;
  },

  parseHeadless(stdout) {
    const o = lastJsonObject(stdout);
    if (!o) return {};
    return {
      session_id: o.session_id,
      cost_usd: o.total_cost_usd,
      permission_denials: o.permission_denials,
      result: o.result,
      is_error: o.is_error,
    };
  },
};

export default plugin;
