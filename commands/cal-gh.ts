/**
 * cal-gh: the GitHub workflow inside a workspace. Thin: parses arguments, calls lib/github.
 *
 *   cal-gh auth login|status|logout [WS] [--token-stdin] [--keychain] [--hostname H]
 *     (no WS: the host's one login, used by every workspace through cal's broker)
 *   cal-gh clone WS --repo OWNER/REPO [--branch B | --new-branch B]
 *   cal-gh commit WS --message M [--push] [--pr --pr-title T]     cal-gh push WS
 *   cal-gh pr WS --title T [--body B] [--base main] [--draft]     cal-gh status WS
 */

import { Command } from "@commander-js/extra-typings";
import {
  type Context,
  namesOrStdin,
  newContext,
  outputOptions,
  rootProgram,
  runAsProcess,
  runProgram,
} from "../lib/cli.ts";
import { usageError } from "../lib/errors.ts";
import {
  hostLogin,
  hostLogout,
  hostStatus,
  login,
  logout,
  status as authStatus,
} from "../lib/github/auth.ts";
import { clone, commit, pr, push } from "../lib/github/repos.ts";
import { repoStatuses, repoText } from "../lib/github/status.ts";
import type { PullRequestRecord, RepoRecord } from "../lib/records.ts";

async function tokenFromStdin(): Promise<string> {
  if (Deno.stdin.isTerminal()) {
    throw usageError(
      "--token-stdin reads the token from stdin, which is a terminal.",
      "Pipe it: --token-stdin < token.txt.",
    );
  }
  // A token is at most a few hundred characters: read a little more than that, never all of a
  // stream (`< /dev/zero`), and never say what was read.
  const limit = 4096;
  const chunks: Uint8Array[] = [];
  let n = 0;
  const reader = Deno.stdin.readable.getReader();
  try {
    while (n <= limit) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      n += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const bytes = new Uint8Array(n);
  chunks.reduce((at, c) => (bytes.set(c, at), at + c.byteLength), 0);
  const token = new TextDecoder().decode(bytes.subarray(0, limit + 1)).trim();
  if (!token) {
    throw usageError("stdin held no token.", "Pipe the token: --token-stdin < token.txt.");
  }
  if (n > limit || !/^[\x21-\x7e]+$/.test(token)) {
    throw usageError(
      "What stdin held does not look like a GitHub token (too long, or spaces or control characters).",
      "Pipe the token alone, e.g. `gh auth token | cal-gh auth login WS --token-stdin`.",
    );
  }
  return token;
}

const results = (rs: (RepoRecord | PullRequestRecord)[]) =>
  rs.map((r) =>
    r.kind === "pr"
      ? r.url
      : `${r.repo}: ${r.commit?.slice(0, 7) ?? ""} on ${r.branch}${r.pushed ? " (pushed)" : ""}`
  )
    .join("\n");

export function program(ctx: Context): Command {
  const out = ctx.out;
  const p = rootProgram(
    "cal-gh",
    "Clone, branch, commit, push and open pull requests inside a workspace.",
  );

  const auth = p.command("auth").description(
    "GitHub authentication: the host's login, or one inside a workspace",
  );
  outputOptions(
    auth.command("login").description(
      "without a workspace: keep the host's login for every workspace's broker (the guest never " +
        "holds it); with one: log gh in inside it (the agent can then read the token)",
    )
      .argument("[workspace]", "workspace name (omit for the host's login)")
      .option(
        "--token-stdin",
        "read a token from stdin (fine-grained: Contents and Pull requests read/write)",
      )
      .option("--keychain", "macOS: keep the token in the login Keychain for other workspaces")
      .option("--hostname <host>", "GitHub host (default: config github.host, else gh's default)"),
  ).action(async (ws, o) => {
    const token = o.tokenStdin ? await tokenFromStdin() : undefined;
    if (!ws) {
      const h = await hostLogin({ token, hostname: o.hostname }, await ctx.config(), out);
      out.records(
        [h],
        ([h]) => `Logged in to ${h.host}${h.user ? ` as ${h.user}` : ""} on the host.`,
      );
      return;
    }
    const r = await login(
      ws,
      { token, keychain: o.keychain, hostname: o.hostname },
      await ctx.config(),
      out,
    );
    out.records([r], ([r]) => `Logged in to ${r.host}${r.user ? ` as ${r.user}` : ""} in "${ws}".`);
  });
  outputOptions(
    auth.command("status").description(
      "show the login state inside the workspace (without one: the host's login)",
    )
      .argument("[workspace]", "workspace name")
      .option("--hostname <host>", "GitHub host"),
  ).action(async (ws, o) => {
    const r = ws
      ? await authStatus(ws, await ctx.config(), o.hostname)
      : await hostStatus(await ctx.config(), o.hostname);
    out.records([r], ([r]) => r.detail ?? (r.logged_in ? "Logged in." : "Not logged in."));
    if (!r.logged_in) ctx.exitCode = 1;
  });
  outputOptions(
    auth.command("logout").description(
      "log gh out inside the workspace (without one: forget the host's login)",
    )
      .argument("[workspace]", "workspace name")
      .option("--hostname <host>", "GitHub host"),
  ).action(async (ws, o) => {
    const r = ws
      ? await logout(ws, await ctx.config(), o.hostname)
      : await hostLogout(await ctx.config(), o.hostname);
    out.records([r], ([r]) => `Logged out of ${r.host} ${ws ? `in "${ws}"` : "on the host"}.`);
  });

  outputOptions(
    p.command("clone").description("clone a repository into ~/workspace/<repo> in the guest")
      .argument("<workspace>", "workspace name")
      .requiredOption("--repo <owner/name>", "the repository")
      .option("--branch <name>", "check out this existing branch")
      .option(
        "--new-branch <name>",
        "create this branch for the agent's work (prefixed with agent/ unless it has a prefix)",
      )
      .option("--hostname <host>", "GitHub host"),
  ).action(async (ws, o) => {
    const r = await clone(
      ws,
      { repo: o.repo, branch: o.branch, newBranch: o.newBranch, hostname: o.hostname },
      await ctx.config(),
      out,
    );
    out.records([r], ([r]) => `Cloned ${o.repo} into ~/workspace/${r.repo} on branch ${r.branch}.`);
  });

  outputOptions(
    p.command("commit").description(
      "commit every change in the repository; optionally push and open a PR",
    )
      .argument("<workspace>", "workspace name")
      .requiredOption("-m, --message <text>", "the commit message")
      .option("--repo <name>", "which repository (default: the first cloned)")
      .option("--push", "push the branch afterwards")
      .option("--pr", "push and open a pull request")
      .option("--pr-title <text>", "the pull request's title (default: the message's first line)")
      .option("--pr-body <text>", "the pull request's body (default: the message)")
      .option("--base <branch>", "the pull request's base (default: the remote's default branch)")
      .option("--draft", "open the pull request as a draft")
      .option("--hostname <host>", "GitHub host"),
  ).action(async (ws, o) => {
    const rs = await commit(
      ws,
      { ...o, prTitle: o.prTitle, prBody: o.prBody },
      await ctx.config(),
      out,
    );
    out.records(rs, results);
  });

  outputOptions(
    p.command("push").description(
      "push the repository's branch (never a protected one, never forced)",
    )
      .argument("<workspace>", "workspace name")
      .option("--repo <name>", "which repository")
      .option("--hostname <host>", "GitHub host"),
  ).action(async (ws, o) => {
    const r = await push(ws, o, await ctx.config(), out);
    out.records([r], ([r]) => `Pushed ${r.repo} (${r.branch}).`);
  });

  outputOptions(
    p.command("pr").description("open a pull request from the repository's branch")
      .argument("<workspace>", "workspace name")
      .requiredOption("--title <text>", "title")
      .option("--body <text>", "body (a run record is appended)")
      .option("--base <branch>", "base branch (default: the remote's default)")
      .option("--draft", "open as a draft")
      .option("--repo <name>", "which repository")
      .option("--hostname <host>", "GitHub host"),
  ).action(async (ws, o) => {
    const r = await pr(ws, o, await ctx.config(), out);
    out.records([r], ([r]) => r.url);
  });

  outputOptions(
    p.command("status").description(
      "each repository's branch, changes, last commit and ahead/behind",
    )
      .argument("<workspace>", "workspace name"),
  ).action(async (ws) => {
    const rs = [];
    for (const n of await namesOrStdin(ws)) rs.push(...await repoStatuses(n));
    out.records(
      rs,
      (rs) => rs.length ? `Repos:\n${rs.map(repoText).join("\n")}` : "No repositories cloned.",
    );
  });

  return p;
}

export async function main(args: string[]): Promise<number> {
  const ctx = newContext(args);
  return await runProgram(program(ctx), args, ctx);
}

if (import.meta.main) await runAsProcess(main);
