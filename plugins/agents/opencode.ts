/**
 * opencode (the active project, npm `opencode-ai`; the Go `opencode-ai/opencode` is archived).
 * Facts: research/agents.md §2. Config ~/.config/opencode/opencode.json with the v1 `permission`
 * object; headless `opencode run`, whose `--auto` approves what is not explicitly denied. The TUI
 * has no such flag: an autonomous interactive session gets `OPENCODE_PERMISSION='{"*":"allow"}'`
 * (inline permission config, honoured by the TUI; research/agents.md §2.5).
 */

import {
  type AgentPlugin,
  mergeOwnedMap,
  type Owned,
  str,
  stringList,
} from "../../lib/agents/plugin.ts";

/** The spec's `auto_approve` names → opencode permission keys. */
const KEY: Record<string, string> = {
  read: "read",
  write: "edit",
  edit: "edit",
  shell: "bash",
  bash: "bash",
};

/** `shell:sudo*` → ["bash", "sudo*"]; `read` → ["read"]. */
function rule(r: string): [string, string?] {
  const i = r.indexOf(":");
  if (i < 0) return [KEY[r] ?? r];
  return [KEY[r.slice(0, i)] ?? r.slice(0, i), r.slice(i + 1)];
}

const plugin: AgentPlugin = {
  name: "opencode",
  displayName: "opencode",
  binaries: ["opencode"],
  install: [
    {
      name: "brew",
      describe: "Homebrew tap anomalyco/tap/opencode (recommended)",
      script: "brew install anomalyco/tap/opencode",
    },
    {
      name: "npm",
      describe: "npm package opencode-ai into ~/.local",
      script: 'npm install -g --prefix "$HOME/.local" opencode-ai',
    },
  ],
  update: {
    brew: "brew upgrade anomalyco/tap/opencode",
    npm: 'npm install -g --prefix "$HOME/.local" opencode-ai@latest',
  },
  versionArgs: ["--version"],
  parseVersion: (out) => /(\d+\.\d+\.\d+\S*)/.exec(out)?.[1],
  /** Hosts the egress policy's @agent preset allows: its site and the providers it speaks to. */
  hosts: [
    "opencode.ai",
    "*.opencode.ai",
    "api.anthropic.com",
    "api.openai.com",
    "openrouter.ai",
    "models.dev",
  ],
  credentials: [["ANTHROPIC_API_KEY"], ["OPENAI_API_KEY"], ["OPENROUTER_API_KEY"]],
  keyRoutes: {
    ANTHROPIC_API_KEY: { hosts: ["api.anthropic.com"], header: "x-api-key" },
    OPENAI_API_KEY: { hosts: ["api.openai.com"], header: "authorization" },
    OPENROUTER_API_KEY: { hosts: ["openrouter.ai"], header: "authorization" },
  },
  env: { OPENCODE_DISABLE_AUTOUPDATE: "1" },

  configure(ctx) {
    const approve = stringList(ctx.settings.auto_approve, ["read", "write"]);
    const deny = stringList(ctx.settings.deny, ["shell:sudo*", "shell:rm -rf /*"]);
    return [{
      path: ".config/opencode/opencode.json",
      format: "json",
      edit(cur, before) {
        const owned: Owned = {};
        const next = structuredClone(cur);
        next.$schema ??= "https://opencode.ai/config.json";
        next.autoupdate = false;
        const top: Record<string, string> = {};
        const bash: Record<string, string> = {};
        for (const r of approve) {
          const [k, pattern] = rule(r);
          if (pattern) (k === "bash" ? bash : top)[k === "bash" ? pattern : k] = "allow";
          else top[k] = "allow";
        }
        for (const r of deny) {
          const [k, pattern] = rule(r);
          if (k === "bash" && pattern) bash[pattern] = "deny";
          else top[k] = "deny";
        }
        mergeOwnedMap(next, "permission", top, before, owned);
        if (Object.keys(bash).length) mergeOwnedMap(next, "permission.bash", bash, before, owned);
        const model = str(ctx.settings.model);
        if (model) next.model = model;
        return { next, owned };
      },
    }];
  },

  runEnv(_ctx, run): Record<string, string> {
    if (run.prompt !== undefined || !run.autonomous) return {};
    return { OPENCODE_PERMISSION: JSON.stringify({ "*": "allow" }) };
  },

  args(ctx, run) {
    const model = str(ctx.settings.model);
    if (run.prompt === undefined) return model ? ["--model", model] : [];
    return [
      "run",
      ...(run.autonomous ? ["--auto"] : []),
      ...(model ? ["--model", model] : []),
      "--format",
      "json",
      run.prompt,
    ];
  },

  parseHeadless(stdout) {
    const report: ReturnType<AgentPlugin["parseHeadless"]> = {};
    const texts: string[] = [];
    for (const line of stdout.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const e = JSON.parse(line);
        report.session_id ??= e.sessionID;
        if (e.type === "text" && typeof e.part?.text === "string") texts.push(e.part.text);
        if (e.type === "text" && typeof e.text === "string") texts.push(e.text);
        if (e.type === "error") report.is_error = true;
        if (e.type === "done" && Array.isArray(e.rejected)) report.permission_denials = e.rejected;
      } catch { /* not an event line */ }
    }
    if (texts.length) report.result = texts.join("");
    return report;
  },
};

export default plugin;
