/**
 * Google Gemini CLI. Facts: research/agents.md §4.2. Settings ~/.gemini/settings.json, trusted
 * folders ~/.gemini/trustedFolders.json (an untrusted folder forces the default approval mode).
 */

import { type AgentPlugin, setPath, str } from "../../lib/agents/plugin.ts";

const MODES = ["default", "auto_edit", "plan"];

const plugin: AgentPlugin = {
  name: "gemini",
  displayName: "Gemini CLI",
  binaries: ["gemini"],
  install: [
    {
      name: "npm",
      describe: "npm package @google/gemini-cli into ~/.local (recommended)",
      script: 'npm install -g --prefix "$HOME/.local" @google/gemini-cli',
    },
    { name: "brew", describe: "Homebrew formula gemini-cli", script: "brew install gemini-cli" },
  ],
  update: {
    npm: 'npm install -g --prefix "$HOME/.local" @google/gemini-cli@latest',
    brew: "brew upgrade gemini-cli",
  },
  versionArgs: ["--version"],
  parseVersion: (out) => /(\d+\.\d+\.\d+\S*)/.exec(out)?.[1],
  credentials: [["GEMINI_API_KEY"]],
  env: {},

  configure(ctx) {
    const mode = str(ctx.settings.approval_mode, "auto_edit")!;
    return [
      {
        path: ".gemini/settings.json",
        format: "json",
        edit(cur) {
          const next = structuredClone(cur);
          if (MODES.includes(mode)) setPath(next, "general.defaultApprovalMode", mode);
          setPath(next, "general.disableAutoUpdate", true);
          return { next, owned: {} };
        },
      },
      {
        path: ".gemini/trustedFolders.json",
        format: "json",
        edit(cur) {
          return { next: { ...cur, [ctx.workdir]: "TRUST_FOLDER" }, owned: {} };
        },
      },
    ];
  },

  args(ctx, run) {
    const args: string[] = [];
    if (run.autonomous) args.push("--approval-mode", "yolo");
    const model = str(ctx.settings.model);
    if (model) args.push("--model", model);
    if (run.prompt !== undefined) args.push("-p", run.prompt, "--output-format", "json");
    return args;
  },

  parseHeadless(stdout) {
    try {
      const o = JSON.parse(stdout.trim());
      return { result: o.response, is_error: !!o.error, session_id: o.session_id };
    } catch {
      return {};
    }
  },
};

export default plugin;
