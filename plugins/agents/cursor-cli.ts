/**
 * Cursor CLI (`cursor-agent`, newer builds also `agent`). Facts: research/agents.md §3.
 * Config ~/.cursor/cli-config.json (also caches auth: mode 0600); `--trust` skips the workspace
 * trust gate; `--force` runs everything not denied.
 */

import {
  type AgentPlugin,
  lastJsonObject,
  mergeOwnedList,
  type Owned,
  str,
  stringList,
} from "../../lib/agents/plugin.ts";

const plugin: AgentPlugin = {
  name: "cursor-cli",
  displayName: "Cursor CLI",
  binaries: ["cursor-agent", "agent"],
  install: [
    {
      name: "script",
      describe: "Cursor's installer (recommended): ~/.local/bin/cursor-agent",
      script: "curl https://cursor.com/install -fsS | bash",
    },
    {
      name: "brew",
      describe: "Homebrew cask cursor-cli",
      script: "brew install --cask cursor-cli",
    },
  ],
  update: { script: "cursor-agent update || agent update", brew: "brew upgrade --cask cursor-cli" },
  versionArgs: ["--version"],
  parseVersion: (out) => /(\d{4}\.\d+\.\d+\S*|\d+\.\d+\.\d+\S*)/.exec(out)?.[1],
  /** Hosts the egress policy's @agent preset allows: the API and the installer. */
  hosts: ["cursor.com", "*.cursor.com", "*.cursor.sh", "downloads.cursor.com"],
  credentials: [["CURSOR_API_KEY"]],
  keyRoutesMissing:
    "Cursor CLI exchanges its key with Cursor's own services in ways cal does not know yet",
  env: { NO_OPEN_BROWSER: "1" },

  configure(ctx) {
    const allow = stringList(ctx.settings.allowed_tools, [
      "Shell(git)",
      "Shell(npm)",
      "Read(**)",
      "Write(**)",
    ]);
    const deny = stringList(ctx.settings.denied_tools, ["Shell(sudo)", "Shell(rm)"]);
    return [{
      path: ".cursor/cli-config.json",
      format: "json",
      mode: 0o600,
      edit(cur, before) {
        const owned: Owned = {};
        const next = structuredClone(cur);
        next.version ??= 1;
        next.editor ??= { vimMode: false };
        mergeOwnedList(next, "permissions.allow", allow, before, owned);
        mergeOwnedList(next, "permissions.deny", deny, before, owned);
        return { next, owned };
      },
    }];
  },

  args(ctx, run) {
    const args = ["--trust"];
    if (run.autonomous) args.push("--force");
    const model = str(ctx.settings.model);
    if (model) args.push("--model", model);
    if (run.prompt !== undefined) args.push("-p", "--output-format", "json", run.prompt);
    return args;
  },

  parseHeadless(stdout) {
    const o = lastJsonObject(stdout);
    return o ? { session_id: o.session_id, result: o.result, is_error: o.is_error } : {};
  },
};

export default plugin;
