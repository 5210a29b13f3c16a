/**
 * OpenAI Codex CLI. Facts: research/agents.md §4.1. Config ~/.codex/config.toml (edited line by
 * line); headless `codex exec --json`, whose default sandbox is read-only. Allow/deny rules are
 * Codex's execpolicy rules (developers.openai.com/codex/rules): `prefix_rule`s in
 * ~/.codex/rules/cal.rules, cal's own file (the TUI records approvals in default.rules).
 *
 * `allow`/`deny` entries are command prefixes (`git status`, `sudo`); the strictest matching
 * rule wins (forbidden over allow).
 */

import { type AgentPlugin, str, stringList } from "../../lib/agents/plugin.ts";
import { tomlSet, tomlString } from "../../lib/agents/toml.ts";

/** The rules file for the given command prefixes. */
export function codexRules(allow: string[], deny: string[]): string {
  const rule = (prefix: string, decision: "allow" | "forbidden") => {
    const tokens = prefix.trim().split(/\s+/).filter(Boolean).map((t) => JSON.stringify(t));
    return `prefix_rule(pattern = [${tokens.join(", ")}], decision = "${decision}")`;
  };
  return [
    "# Written by cal from the workspace's agent_config (codex: allow, deny); rewritten on",
    "# every run. Put rules of your own in another file in this folder.",
    ...allow.filter((p) => p.trim()).map((p) => rule(p, "allow")),
    ...deny.filter((p) => p.trim()).map((p) => rule(p, "forbidden")),
    "",
  ].join("\n");
}

const plugin: AgentPlugin = {
  name: "codex",
  displayName: "Codex CLI",
  binaries: ["codex"],
  install: [
    {
      name: "npm",
      describe: "npm package @openai/codex into ~/.local (recommended)",
      script: 'npm install -g --prefix "$HOME/.local" @openai/codex',
    },
    { name: "brew", describe: "Homebrew cask codex", script: "brew install --cask codex" },
  ],
  update: {
    npm: 'npm install -g --prefix "$HOME/.local" @openai/codex@latest',
    brew: "brew upgrade --cask codex",
  },
  versionArgs: ["--version"],
  parseVersion: (out) => /(\d+\.\d+\.\d+\S*)/.exec(out)?.[1],
  /** Hosts the egress policy's @agent preset allows: the API and ChatGPT login. */
  hosts: ["api.openai.com", "auth.openai.com", "chatgpt.com"],
  credentials: [["OPENAI_API_KEY"]],
  /** The Responses API, as a Bearer token; Codex (Rust) reads its CA from CODEX_CA_CERTIFICATE. */
  keyRoutes: { OPENAI_API_KEY: { hosts: ["api.openai.com"], header: "authorization" } },
  trustEnv: ["CODEX_CA_CERTIFICATE", "SSL_CERT_FILE"],
  env: {},

  configure(ctx) {
    const sandbox = str(ctx.settings.sandbox_mode, "workspace-write")!;
    const approval = str(ctx.settings.approval_policy, "on-request")!;
    return [{
      path: ".codex/config.toml",
      format: "toml",
      edit(cur) {
        let next = tomlSet(cur, undefined, "sandbox_mode", tomlString(sandbox));
        next = tomlSet(next, undefined, "approval_policy", tomlString(approval));
        const model = str(ctx.settings.model);
        if (model) next = tomlSet(next, undefined, "model", tomlString(model));
        next = tomlSet(
          next,
          `projects.${tomlString(ctx.workdir)}`,
          "trust_level",
          tomlString("trusted"),
        );
        return { next, owned: {} };
      },
    }, {
      path: ".codex/rules/cal.rules",
      format: "text",
      edit() {
        const allow = stringList(ctx.settings.allow, []);
        const deny = stringList(ctx.settings.deny, ["sudo", "rm -rf /"]);
        return { next: codexRules(allow, deny), owned: {} };
      },
    }];
  },

  args(_ctx, run) {
    if (run.prompt === undefined) {
      return run.autonomous ? ["--dangerously-bypass-approvals-and-sandbox"] : [];
    }
    return [
      "exec",
      "--json",
      "--skip-git-repo-check",
      ...(run.autonomous ? ["--dangerously-bypass-approvals-and-sandbox"] : []),
      run.prompt,
    ];
  },

  parseHeadless(stdout) {
    const report: ReturnType<AgentPlugin["parseHeadless"]> = {};
    for (const line of stdout.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const e = JSON.parse(line);
        if (e.type === "thread.started") report.session_id = e.thread_id;
        if (e.type === "item.completed" && e.item?.type === "agent_message") {
          report.result = e.item.text;
        }
        if (e.type === "turn.failed" || e.type === "error") report.is_error = true;
      } catch { /* not an event line */ }
    }
    return report;
  },
};

export default plugin;
