/**
 * The pre-receive hook of a workspace's mirror (see broker.ts): real git has already received
 * the push into quarantine and tells this hook each ref update on stdin. Every update is checked
 * against the push rules (ancestry by `git merge-base --is-ancestor`); when all pass, the same
 * updates go upstream with the host's token, and only if GitHub takes them does the mirror take
 * them too. A refusal goes to stderr, which the guest's git prints as `remote: ...`.
 *
 * Run by the hook script as: deno run -A broker_hook.ts (environment: CAL_BROKER_*).
 */

import { basicAuth } from "./api.ts";
import {
  checkUpdate,
  type PushRules,
  type RefUpdate,
  type Refusal,
  shortReason,
} from "./push_rules.ts";
import { hostToken } from "./token.ts";

const env = (k: string) => Deno.env.get(k) ?? "";

function git(args: string[], extraEnv: Record<string, string> = {}) {
  return new Deno.Command("git", { args, env: extraEnv, stdout: "piped", stderr: "piped" })
    .outputSync();
}

function log(entry: Record<string, unknown>) {
  const file = env("CAL_BROKER_LOG");
  if (!file) return;
  try {
    Deno.writeTextFileSync(
      file,
      JSON.stringify({ time: new Date().toISOString(), ...entry }) + "\n",
      { append: true, mode: 0o600 },
    );
  } catch { /* the log is best effort; the decision stands */ }
}

function verdicts(reasons: { ref: string; reason: string }[]) {
  const file = env("CAL_BROKER_VERDICTS");
  if (!file) return;
  try {
    Deno.writeTextFileSync(file, JSON.stringify(reasons), { createNew: true, mode: 0o600 });
  } catch { /* the remote: lines still say it */ }
}

/** Guest text for a terminal line: printable ASCII only. */
const plain = (s: string) => s.replace(/[^\x20-\x7e]/g, "?").slice(0, 300);

const say = (line: string) => console.error(`cal: ${line}`);

async function main(): Promise<number> {
  const rules = JSON.parse(env("CAL_BROKER_RULES")) as PushRules;
  const repo = env("CAL_BROKER_REPO");
  const updates: RefUpdate[] = (await new Response(Deno.stdin.readable).text()).split("\n")
    .filter(Boolean).map((l) => {
      const [old, nu, ref] = l.split(" ");
      return { old, new: nu, ref };
    });
  const refusals: Refusal[] = [];
  for (const u of updates) {
    const r = checkUpdate(
      u,
      rules,
      () => git(["merge-base", "--is-ancestor", u.old, u.new]).code === 0,
    );
    if (r) refusals.push(r);
  }
  if (refusals.length) {
    // The broker puts these on the refs' own report lines (report_status.ts).
    const reasons = updates.map((u) => {
      const r = refusals.find((x) => x.ref === u.ref);
      return {
        ref: u.ref,
        reason: r ? shortReason(r.rule, rules.prefix) : "cal: not pushed, another ref was refused",
      };
    });
    verdicts(reasons);
    for (const r of refusals) {
      say(`refused ${plain(r.ref)} (rule: ${r.rule}): ${plain(r.message)}`);
      log({ repo, ref: r.ref, allowed: false, rule: r.rule });
    }
    say("nothing was pushed to GitHub.");
    return 1;
  }
  const t = await hostToken(env("CAL_BROKER_HOST"));
  if (!t) {
    say("this host has no GitHub login; run `cal-gh auth login --token-stdin` on the host.");
    return 1;
  }
  // The token reaches git in its environment (GIT_CONFIG_*), never in an argument.
  const p = git(
    ["push", "--porcelain", env("CAL_BROKER_UPSTREAM"), ...updates.map((u) => `${u.new}:${u.ref}`)],
    {
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: "http.extraHeader",
      GIT_CONFIG_VALUE_0: `Authorization: ${basicAuth(t.token)}`,
    },
  );
  const said = new TextDecoder().decode(p.stdout) + new TextDecoder().decode(p.stderr);
  if (p.code !== 0) {
    verdicts(updates.map((u) => ({ ref: u.ref, reason: "cal: GitHub refused it, see above" })));
    for (const line of said.split("\n").filter((l) => l.trim())) say(`GitHub: ${plain(line)}`);
    for (const u of updates) log({ repo, ref: u.ref, allowed: true, upstream: "refused" });
    return 1;
  }
  for (const u of updates) log({ repo, ref: u.ref, allowed: true, upstream: "ok" });
  return 0;
}

Deno.exit(await main());
