/**
 * Shell completions: completions/ matches the command tree, and real bash, zsh and fish complete
 * subcommands, options, `.choices()` values and workspace names with them.
 * bash-completion, zsh and fish are needed for every case to run (`apt-get install -y
 * bash-completion zsh fish`); cases for a missing shell are skipped.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Argument, Command, Option } from "@commander-js/extra-typings";
import { bash, fish, GENERATED, zsh } from "../scripts/completions.ts";
import { specOf } from "../commands/tree.ts";
import { REPO } from "./helpers.ts";

const COMPLETIONS = join(REPO, "completions");
const BASH_COMPLETION = "/usr/share/bash-completion/bash_completion";

function has(shell: string): boolean {
  try {
    return new Deno.Command(shell, { args: ["-c", "exit 0"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const skipUnless = (shell: string) => has(shell) ? false : `${shell} is not installed`;

async function run(cmd: string, args: string[], env: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const err = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `${cmd} ${args.join(" ")} failed (${out.code}):\n${text}\n${err}`);
  assert.equal(err, "", `${cmd} wrote to stderr`);
  return text;
}

const sorted = (xs: string[]) => [...xs].sort();

let tmp: string;
let env: Record<string, string>;

before(async () => {
  tmp = await Deno.makeTempDir({ prefix: "cal-completions-" });
  const vms = join(tmp, "cal-home", "isolation", "vms");
  for (const d of ["alpha", "beta", ".hidden"]) await Deno.mkdir(join(vms, d), { recursive: true });
  await Deno.writeTextFile(join(vms, "not-a-folder"), "");
  // fish loads completions only for commands that exist.
  const bin = join(tmp, "bin");
  await Deno.mkdir(bin);
  for (const c of ["cal", "cal-vm", "cal-snap", "cal-agent"]) {
    await Deno.writeTextFile(join(bin, c), "#!/bin/sh\n", { mode: 0o755 });
  }
  env = {
    PATH: `${bin}:${Deno.env.get("PATH")}`,
    HOME: tmp,
    CAL_HOME: join(tmp, "cal-home"),
    LANG: "C.UTF-8",
    TERM: "xterm",
  };
});

after(async () => {
  await Deno.remove(tmp, { recursive: true });
});

// ---------------------------------------------------------------------------------------------
// Drivers: each takes a command line as typed before Tab and returns the candidates.

/** bash: the words as bash splits them (at spaces and `=`), then the completion function. */
async function bashComplete(script: string, line: string): Promise<string[]> {
  const words = line.split(" ").flatMap((w) => w.split(/(=)/).filter((p, i) => p || i === 0));
  const out = await run("bash", [
    "--norc",
    "--noprofile",
    "-c",
    'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); ' +
    'complete -p "${COMP_WORDS[0]}" >/dev/null && _cal && printf \'%s\\n\' "${COMPREPLY[@]}"',
    "bash",
    script,
    ...words,
  ], env);
  return out.split("\n").filter(Boolean);
}

/**
 * zsh completes only inside the line editor: drive an interactive zsh through zsh/zpty, wrap
 * compadd to print what the completion function adds (M:match, D:display with description), and
 * end at the first completion. (`%{` stands for `${`, which String.raw would interpolate.)
 */
const ZSH_HARNESS = String.raw`
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
local line
zpty -w z "PROMPT= RPROMPT= PS2=; source %{(q)1}"
zpty -w z 'compadd() { if [[ %{@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi; local -a __h __d; local h; integer n=%{@[(i)-d]}; (( n < $# )) && __d=("%{(@P)%{@[n+1]}}"); builtin compadd -A __h "$@"; for h in $__h; do print -r -- "<<M:$h>>"; done; for h in $__d; do print -r -- "<<D:$h>>"; done; builtin compadd "$@"; }'
zpty -w z "bindkey '^I' complete-word; comppostfuncs=(__t_done); __t_done() { print -r -- '<<END>>'; exit }"
zpty -w z "echo READY"
while zpty -r z line; do [[ $line == READY* ]] && break; done
zpty -w -n z "$2"$'\t'
while zpty -r z line; do
  line=%{line%$'\n'}; line=%{line%$'\r'}
  [[ $line == *'<<END>>'* ]] && break
  [[ $line == *"<<"*">>"* ]] && { line=%{line#*<<}; print -r -- %{line%>>*}; }
done
zpty -d z
`.replaceAll("%{", "${");

/** zsh: `setup` is sourced in the interactive shell (compinit, then the script or fpath). */
async function zshComplete(setup: string, line: string) {
  const harness = join(tmp, "harness.zsh");
  await Deno.writeTextFile(harness, ZSH_HARNESS);
  const setupFile = join(tmp, `setup-${crypto.randomUUID()}.zsh`);
  await Deno.writeTextFile(setupFile, setup);
  const out = (await run("zsh", ["-f", harness, setupFile, line], env)).split("\n");
  const pick = (p: string) => out.filter((l) => l.startsWith(p)).map((l) => l.slice(p.length));
  return { matches: pick("M:"), displays: pick("D:") };
}

const zshFpath = async () => {
  const dir = join(tmp, "zfunc");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.copyFile(join(COMPLETIONS, "cal.zsh"), join(dir, "_cal"));
  return `fpath=(${dir} $fpath); autoload -Uz compinit; compinit -u -D`;
};

/** fish: `complete -C`, output `candidate<TAB>description`. */
async function fishComplete(setup: string, line: string): Promise<string[]> {
  const out = await run(
    "fish",
    ["--no-config", "-c", `${setup}; complete -C ${fishQuote(line)}`],
    env,
  );
  return out.split("\n").filter(Boolean);
}

const fishQuote = (s: string) => `'${s.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
const fishAutoload = () =>
  `set -g fish_complete_path ${fishQuote(COMPLETIONS)} $fish_complete_path`;
const words = (lines: string[]) => lines.map((l) => l.split("\t")[0]);

// ---------------------------------------------------------------------------------------------

describe("completions/", () => {
  it("is what `deno task completions` generates from the command tree", async () => {
    const fresh = join(tmp, "fresh");
    await Deno.mkdir(fresh);
    const env = { ...Deno.env.toObject(), NO_COLOR: "1" };
    await run(Deno.execPath(), ["run", "-A", join(REPO, "scripts", "completions.ts"), fresh], env);
    const list = (dir: string) =>
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => GENERATED.test(n)).sort();
    const stale = "completions/ is stale: run `deno task completions` and commit the result.";
    assert.deepEqual(list(COMPLETIONS), list(fresh), stale);
    for (const name of list(fresh)) {
      const want = await Deno.readTextFile(join(fresh, name));
      const have = await Deno.readTextFile(join(COMPLETIONS, name));
      assert.ok(have === want, `completions/${name} differs. ${stale}`);
    }
  });
});

/** What every shell must do with the real tree. */
const CASES: [line: string, want: string[]][] = [
  ["cal iso st", ["start", "status", "stop"]],
  ["cal isolation st", ["start", "status", "stop"]],
  ["cal vm init --c", ["--cpu"]],
  ["cal vm start ", ["alpha", "beta"]],
  ["cal vm start a", ["alpha"]],
  ["cal iso start --timeout 9 ", ["alpha", "beta"]],
  ["cal vm ls --h", ["--help", "--human"]],
  ["cal vm init --cpu ", []],
  ["cal iso snapshot cr", ["create"]],
  ["cal-vm start ", ["alpha", "beta"]],
  ["cal-vm de", ["destroy"]],
];

describe("bash", { skip: skipUnless("bash") }, () => {
  for (const [line, want] of CASES) {
    it(`completes "${line}"`, async () => {
      assert.deepEqual(sorted(await bashComplete(join(COMPLETIONS, "cal.bash"), line)), want);
    });
  }

  it("is loaded on demand by bash-completion for cal and cal-vm", {
    skip: exists(BASH_COMPLETION) ? false : "bash-completion is not installed",
  }, async () => {
    const dir = join(tmp, "bash-user-dir");
    await Deno.mkdir(join(dir, "completions"), { recursive: true });
    for (const f of ["cal.bash", "cal-vm.bash"]) {
      await Deno.copyFile(join(COMPLETIONS, f), join(dir, "completions", f));
    }
    for (const line of ["cal iso st", "cal-vm st"]) {
      const out = await run("bash", [
        "--norc",
        "-c",
        `source ${BASH_COMPLETION}; export BASH_COMPLETION_USER_DIR=${dir}; ` +
        `COMP_WORDS=(${line}); COMP_CWORD=\${#COMP_WORDS[@]}-1; ` +
        `__load_completion "\${COMP_WORDS[0]}" && complete -p "\${COMP_WORDS[0]}" >/dev/null && ` +
        `_cal && echo "\${COMPREPLY[*]}"`,
      ], env);
      assert.deepEqual(sorted(out.trim().split(" ")), ["start", "status", "stop"], line);
    }
  });
});

describe("zsh", { skip: skipUnless("zsh") }, () => {
  for (const [line, want] of CASES) {
    it(`completes "${line}" (installed on fpath)`, async () => {
      const { matches } = await zshComplete(await zshFpath(), line);
      assert.deepEqual(sorted(matches), want);
    });
  }

  it("shows descriptions, and works sourced after compinit", async () => {
    const setup = `autoload -Uz compinit; compinit -u -D; source ${join(COMPLETIONS, "cal.zsh")}`;
    const { matches, displays } = await zshComplete(setup, "cal vm init --c");
    assert.deepEqual(matches, ["--cpu"]);
    assert.match(displays.join("\n"), /--cpu +-- CPU cores/);
  });
});

describe("fish", { skip: skipUnless("fish") }, () => {
  for (const [line, want] of CASES) {
    it(`completes "${line}" (autoloaded from completions/)`, async () => {
      assert.deepEqual(sorted(words(await fishComplete(fishAutoload(), line))), want);
    });
  }

  it("shows descriptions", async () => {
    assert.deepEqual(await fishComplete(fishAutoload(), "cal vm init --c"), ["--cpu\tCPU cores"]);
  });
});

// ---------------------------------------------------------------------------------------------
// `.choices()` (no cal command has them yet): a small tree rendered the same way.

describe("choices", () => {
  const p = new Command("cal");
  p.command("paint")
    .addOption(new Option("--color <c>", "the colour").choices(["red", "green"]))
    .option("--coats <n>", "how many coats")
    .argument("<name>", "workspace name")
    .addArgument(new Argument("<finish>", "the finish").choices(["gloss", "matte"]));
  const tree = specOf(p);
  const file = (ext: string) => join(tmp, `choices.${ext}`);
  const setup = async () => {
    await Deno.writeTextFile(file("bash"), bash(tree, ["cal"]));
    await Deno.writeTextFile(file("zsh"), zsh(tree, ["cal"]));
    await Deno.writeTextFile(file("fish"), fish(tree, ["cal"]));
  };
  const cases: [string, string[]][] = [
    ["cal paint --color ", ["green", "red"]],
    ["cal paint --coats 2 ", ["alpha", "beta"]],
    ["cal paint alpha ", ["gloss", "matte"]],
    ["cal paint alpha m", ["matte"]],
    ["cal paint alpha gloss ", []],
  ];

  it("bash", { skip: skipUnless("bash") }, async () => {
    await setup();
    for (const [line, want] of [...cases, ["cal paint --color=", ["green", "red"]]] as const) {
      assert.deepEqual(sorted(await bashComplete(file("bash"), line)), want, line);
    }
  });

  it("zsh", { skip: skipUnless("zsh") }, async () => {
    await setup();
    const init = `autoload -Uz compinit; compinit -u -D; source ${file("zsh")}`;
    for (const [line, want] of [...cases, ["cal paint --color=", ["green", "red"]]] as const) {
      assert.deepEqual(sorted((await zshComplete(init, line)).matches), want, line);
    }
  });

  it("fish", { skip: skipUnless("fish") }, async () => {
    await setup();
    const c = [...cases, ["cal paint --color=", ["--color=green", "--color=red"]]] as const;
    for (const [line, want] of c) {
      assert.deepEqual(
        sorted(words(await fishComplete(`source ${file("fish")}`, line))),
        want,
        line,
      );
    }
  });
});
