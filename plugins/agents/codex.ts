/**
 * OpenAI Codex CLI. Facts: research/agents.md §4.1. Config ~/.codex/config.toml (edited line by
 * line); headless `codex exec --json`, whose default sandbox is read-only.
 */

import { type AgentPlugin, str } from "../../lib/agents/plugin.ts";
import { tomlSet, tomlString } from "../../lib/agents/toml.ts";

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
  credentials: [["OPENAI_API_KEY"]],
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
