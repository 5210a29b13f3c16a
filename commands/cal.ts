/**
 * cal: the dispatcher. `cal <noun> ...` runs `cal-<noun>` in-process (no second Deno start),
 * `cal isolation <verb> ...` (alias `cal iso`) maps the spec's surface onto the micro-commands,
 * and calendar-style invocations go to the system's `cal(1)`.
 */

import pc from "picocolors";
import { isCalendarInvocation, runCalendar } from "../lib/calendar.ts";
import { runAsProcess } from "../lib/cli.ts";
import { VERSION } from "../lib/version.ts";

type Main = (args: string[]) => Promise<number>;

/** The micro-commands, loaded only when used (completion runs cal on every Tab). */
export const NOUNS: Record<string, { describe: string; load: () => Promise<{ main: Main }> }> = {
  vm: { describe: "workspace lifecycle (cal-vm)", load: () => import("./cal-vm.ts") },
  snap: { describe: "snapshots and rollback (cal-snap)", load: () => import("./cal-snap.ts") },
  env: {
    describe: "development environments and templates (cal-env)",
    load: () => import("./cal-env.ts"),
  },
  agent: {
    describe: "coding agents: install, use, run (cal-agent)",
    load: () => import("./cal-agent.ts"),
  },
  gh: {
    describe: "GitHub: auth, clone, commit, push, pr (cal-gh)",
    load: () => import("./cal-gh.ts"),
  },
  quick: {
    describe: "the main job in one command (cal-quick)",
    load: () => import("./cal-quick.ts"),
  },
  sync: {
    describe: "build artifacts: sync, watch with hooks, logs, sign (cal-sync)",
    load: () => import("./cal-sync.ts"),
  },
};

/** `cal isolation <verb>` → `cal-<noun> [<verb>]`, so the spec's examples work word for word. */
export const ISOLATION: Record<string, { noun: string; verb?: string }> = {
  init: { noun: "vm", verb: "init" },
  start: { noun: "vm", verb: "start" },
  stop: { noun: "vm", verb: "stop" },
  destroy: { noun: "vm", verb: "destroy" },
  list: { noun: "vm", verb: "list" },
  status: { noun: "vm", verb: "status" },
  ip: { noun: "vm", verb: "ip" },
  ssh: { noun: "vm", verb: "ssh" },
  exec: { noun: "vm", verb: "exec" },
  health: { noun: "vm", verb: "health" },
  cleanup: { noun: "vm", verb: "cleanup" },
  snapshot: { noun: "snap" },
  rollback: { noun: "snap", verb: "rollback" },
  "disk-usage": { noun: "snap", verb: "disk-usage" },
  env: { noun: "env" },
  agent: { noun: "agent" },
  run: { noun: "agent", verb: "run" },
  auth: { noun: "gh", verb: "auth" },
  clone: { noun: "gh", verb: "clone" },
  commit: { noun: "gh", verb: "commit" },
  push: { noun: "gh", verb: "push" },
  pr: { noun: "gh", verb: "pr" },
  sync: { noun: "sync", verb: "sync" },
  watch: { noun: "sync", verb: "watch" },
  logs: { noun: "sync", verb: "logs" },
  sign: { noun: "sync", verb: "sign" },
};

function overview(): string {
  const nouns = Object.entries(NOUNS).map(([n, d]) => `  cal ${n.padEnd(10)} ${d.describe}`);
  return [
    `${
      pc.bold("cal")
    } ${VERSION}: run coding agents at full power in disposable, isolated workspaces.`,
    "",
    "Usage:",
    "  cal isolation <verb> ...   the spec's surface (alias: cal iso)",
    ...nouns,
    "",
    `Isolation verbs: ${Object.keys(ISOLATION).join(", ")}`,
    "",
    "Start here:",
    "  cal isolation init my-workspace",
    "  cal isolation start my-workspace",
    "  cal isolation ssh my-workspace",
    "",
    "Every command takes --help. Calendar invocations (cal 2026, cal -3) run the system's cal(1).",
  ].join("\n");
}

/** The known word closest to a mistyped one (as commander suggests for a micro-command's verbs). */
export function suggest(word: string, known: string[]): string | undefined {
  // Optimal string alignment distance: a swap of two neighbours ("strat") counts as one edit.
  const distance = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++) {
        const cost = a[i - 1] === b[j - 1] ? 0 : 1;
        d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
        if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
          d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
        }
      }
    }
    return d[a.length][b.length];
  };
  let best: { word: string; d: number } | undefined;
  for (const k of known) {
    const d = distance(word.toLowerCase(), k);
    // Close enough to be a typo, not merely another short word.
    if (d <= Math.min(3, Math.floor(k.length * 0.6)) && d < (best?.d ?? Infinity)) {
      best = { word: k, d };
    }
  }
  return best?.word;
}

const didYouMean = (word: string, known: string[], prefix: string) => {
  const s = suggest(word, known);
  return s ? ` Did you mean \`${prefix}${s}\`?` : "";
};

function fail(message: string, hint: string): number {
  Deno.stderr.writeSync(new TextEncoder().encode(`error: ${message}\n${hint}\n`));
  return 2;
}

export async function main(args: string[]): Promise<number> {
  if (!args.length || ["-h", "--help", "help"].includes(args[0])) {
    console.log(overview());
    return 0;
  }
  if (args[0] === "-V" || args[0] === "--version") {
    console.log(VERSION);
    return 0;
  }
  if (isCalendarInvocation(args)) {
    const code = await runCalendar(args);
    if (code !== undefined) return code;
    return fail(
      `"cal ${args.join(" ")}" looks like a calendar request, and no system calendar is installed.`,
      "This cal is the Coding Agent Loader; install your system's cal(1) (e.g. `apt-get install ncal`) for calendars.",
    );
  }
  const [first, ...rest] = args;
  if (first === "isolation" || first === "iso") {
    const [verb, ...more] = rest;
    if (!verb || verb === "--help" || verb === "-h") {
      console.log(overview());
      return verb ? 0 : 2;
    }
    const target = ISOLATION[verb];
    if (!target) {
      return fail(
        `"${verb}" is not a cal isolation verb.${
          didYouMean(verb, Object.keys(ISOLATION), "cal isolation ")
        }`,
        `Known verbs: ${Object.keys(ISOLATION).join(", ")}.`,
      );
    }
    const mod = await NOUNS[target.noun].load();
    return await mod.main(target.verb ? [target.verb, ...more] : more);
  }
  const noun = NOUNS[first];
  if (!noun) {
    return fail(
      `"${first}" is not a cal command.${didYouMean(first, Object.keys(NOUNS), "cal ")}`,
      `Run \`cal --help\`; commands: ${Object.keys(NOUNS).join(", ")}, isolation.`,
    );
  }
  return await (await noun.load()).main(rest);
}

if (import.meta.main) await runAsProcess(main);
