/**
 * The rules for the agent's own GitHub API calls (gh in the guest), for the broker's API half:
 * reads are allowed, and so are pull requests from the workspace's own branches into its own
 * repositories; merges, settings, deletions, workflow changes, writes that would bypass git's
 * push rules, and anything else are refused, naming the rule. Pure: the caller reads the request
 * (REST method, path and JSON body; GraphQL query and variables) and logs the decision.
 *
 * Not wired yet: gh reaches api.github.com over TLS, so the egress proxy's TLS termination must
 * hand GitHub's API requests here (see the report of issue 13).
 */

import { ALWAYS_PROTECTED, type PushRules } from "./push_rules.ts";

export interface ApiContext {
  rules: PushRules;
  /** OWNER/REPO cal cloned for the workspace. */
  repos: string[];
}

export type ApiRule =
  | "merge"
  | "settings"
  | "deletion"
  | "workflow"
  | "use-git"
  | "not-own-branch"
  | "not-own-repo"
  | "not-allowed";

export type ApiDecision = { allowed: true } | { allowed: false; rule: ApiRule; message: string };

const ok: ApiDecision = { allowed: true };
const no = (rule: ApiRule, message: string): ApiDecision => ({ allowed: false, rule, message });

function ownBranch(branch: string, c: ApiContext): boolean {
  const b = branch.replace(/^[^:]+:/, ""); // "owner:branch", as the REST API takes a head
  return !ALWAYS_PROTECTED.includes(b) && !c.rules.protected.includes(b) &&
    b !== c.rules.defaultBranch && (b.startsWith(c.rules.prefix) || c.rules.own.includes(b));
}

const ownRepo = (slug: string, c: ApiContext) =>
  c.repos.some((r) => r.toLowerCase() === slug.toLowerCase());

function pullFromOwn(head: unknown, slug: string, c: ApiContext): ApiDecision {
  if (!ownRepo(slug, c)) {
    return no("not-own-repo", `${slug} is not a repository cal cloned for this workspace`);
  }
  if (typeof head !== "string" || !ownBranch(head, c)) {
    return no(
      "not-own-branch",
      `a pull request's head must be this workspace's branch (${c.rules.prefix}...)`,
    );
  }
  return ok;
}

/** A REST call: `path` without the API's prefix (`/repos/o/r/pulls`), `body` its JSON. */
export function checkRest(
  method: string,
  path: string,
  body: unknown,
  c: ApiContext,
): ApiDecision {
  const m = method.toUpperCase();
  const p = path.split("?")[0].replace(/\/+$/, "");
  if (m === "GET" || m === "HEAD") return ok;
  if (m === "DELETE") return no("deletion", "deleting through the API is refused");
  const repo = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(p);
  if (!repo) return no("not-allowed", `${m} ${p} is not something a workspace may do`);
  const slug = `${repo[1]}/${repo[2]}`;
  const rest = repo[3] ?? "";
  if (/^\/pulls\/\d+\/merge$/.test(rest) || rest === "/merges") {
    return no("merge", "merging is for a person to do on GitHub");
  }
  if (m === "POST" && rest === "/pulls") {
    return pullFromOwn((body as { head?: unknown })?.head, slug, c);
  }
  if (/^\/(actions|hooks)(\/|$)/.test(rest) || /^\/contents\/\.github\/workflows\//.test(rest)) {
    return no("workflow", "workflows, their runs and hooks are not changed from a workspace");
  }
  if (/^\/(contents|git)(\/|$)/.test(rest)) {
    return no("use-git", "write with git, whose pushes the broker checks, not through the API");
  }
  if (
    rest === "" || /^\/(branches|collaborators|keys|environments|rulesets|pages)(\/|$)/.test(rest)
  ) {
    return no("settings", "repository settings are not changed from a workspace");
  }
  return no("not-allowed", `${m} ${p} is not something a workspace may do`);
}

/** Strings and comments out, so names inside them are not read as fields. */
const bare = (q: string) => q.replace(/"""[\s\S]*?"""|"(?:\\.|[^"\\])*"|#[^\n]*/g, '""');

/** The top-level fields of the first operation of `query`, and whether it is a mutation. */
export function operationFields(query: string): { mutation: boolean; fields: string[] } {
  const q = bare(query);
  const open = q.indexOf("{");
  const head = (open < 0 ? q : q.slice(0, open)).trim();
  const mutation = /^mutation\b/.test(head);
  const fields: string[] = [];
  let depth = 0, parens = 0;
  for (let i = open; i >= 0 && i < q.length; i++) {
    const ch = q[i];
    if (ch === "(") parens++;
    else if (ch === ")") parens--;
    else if (parens === 0 && ch === "{") depth++;
    else if (parens === 0 && ch === "}") {
      if (--depth === 0) break;
    } else if (depth === 1 && parens === 0 && /[A-Za-z_]/.test(ch)) {
      const name = /^[A-Za-z_]\w*(?:\s*:\s*[A-Za-z_]\w*)?/.exec(q.slice(i))![0];
      fields.push(name.includes(":") ? name.split(":")[1].trim() : name); // alias: field
      i += name.length - 1;
    }
  }
  return { mutation, fields };
}

/**
 * A GraphQL request. Queries are reads. Of mutations, only createPullRequest from an own branch
 * (the repository is checked by the REST-equivalent caller when it can resolve the id).
 */
export function checkGraphql(
  query: string,
  variables: Record<string, unknown> | undefined,
  c: ApiContext,
  repoOfId?: string,
): ApiDecision {
  const { mutation, fields } = operationFields(query);
  if (!mutation) return ok;
  for (const f of fields) {
    if (f === "createPullRequest") {
      const input = (variables?.input ?? {}) as { headRefName?: unknown };
      const inline = /headRefName\s*:\s*"([^"]*)"/.exec(query)?.[1];
      const d = pullFromOwn(input.headRefName ?? inline, repoOfId ?? c.repos[0] ?? "", c);
      if (!d.allowed) return d;
      continue;
    }
    if (/^merge|PullRequestAutoMerge$/i.test(f)) {
      return no("merge", "merging is for a person to do on GitHub");
    }
    if (/^delete/i.test(f)) return no("deletion", "deleting through the API is refused");
    if (/^(createRef|updateRef|updateRefs|createCommitOnBranch)$/.test(f)) {
      return no("use-git", "write with git, whose pushes the broker checks, not through the API");
    }
    if (/Repository|BranchProtection|Ruleset|Environment|Deploy/i.test(f)) {
      return no("settings", "repository settings are not changed from a workspace");
    }
    if (/Workflow/i.test(f)) return no("workflow", "workflows are not changed from a workspace");
    return no("not-allowed", `the mutation ${f} is not something a workspace may do`);
  }
  return ok;
}
