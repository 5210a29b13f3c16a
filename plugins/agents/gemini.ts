/**
 * Google Gemini CLI. Facts: research/agents.md §4.2. Settings ~/.gemini/settings.json, trusted
 * folders ~/.gemini/trustedFolders.json (an untrusted folder forces the default approval mode),
 * allow/deny rules in the policy engine's ~/.gemini/policies/cal.toml (cal's own file: every
 * `*.toml` there is loaded, so the user's and the agent's files are left alone).
 *
 * `allow`/`deny` entries: `shell:<command prefix>` for run_shell_command, else a tool name
 * (`write_file`, `web_fetch`, ...). A deny outranks an allow.
 */

import { type AgentPlugin, setPath, str, stringList } from "../../lib/agents/plugin.ts";
import { tomlString } from "../../lib/agents/toml.ts";

/** The policy file for the given rules. */
export function geminiPolicy(allow: string[], deny: string[]): string {
  const rule = (entry: string, decision: "allow" | "deny") => {
    const shell = /^shell:(.+)$/.exec(entry);
    return [
      "[[rule]]",
      `toolName = ${tomlString(shell ? "run_shell_command" : entry)}`,
      ...(shell ? [`commandPrefix = ${tomlString(shell[1])}`] : []),
      `decision = ${tomlString(decision)}`,
      `priority = ${decision === "deny" ? 200 : 100}`,
      "",
    ].join("\n");
  };
  return [
    "# Written by cal from the workspace's agent_config (gemini: allow, deny); rewritten on",
    "# every run. Put rules of your own in another file in this folder.",
    "",
    ...allow.map((e) => rule(e, "allow")),
    ...deny.map((e) => rule(e, "deny")),
  ].join("\n");
}

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
  /** Hosts the egress policy's @agent preset allows: the API and Google login. */
  hosts: [
    "generativelanguage.googleapis.com",
    "oauth2.googleapis.com",
    "accounts.google.com",
    "cloudcode-pa.googleapis.com",
  ],
  credentials: [["GEMINI_API_KEY"]],
  /** The Gemini API (@google/genai sends the key in x-goog-api-key). */
  keyRoutes: {
    GEMINI_API_KEY: { hosts: ["generativelanguage.googleapis.com"], header: "x-goog-api-key" },
  },
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
      {
        path: ".gemini/policies/cal.toml",
        format: "text",
        edit() {
          const allow = stringList(ctx.settings.allow, []);
          const deny = stringList(ctx.settings.deny, ["shell:sudo", "shell:rm -rf /"]);
          return { next: geminiPolicy(allow, deny), owned: {} };
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
