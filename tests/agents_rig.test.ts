/**
 * cal-agent on the rig: stand-in agents in a real guest record their argv, cwd and environment
 * names; credentials travel in no argument list and land in no file under ~/.cal; in a sandbox
 * and a Tart VM (their egress through cal's proxy) the agent gets a stand-in, never the key, and
 * where the key cannot stay on the host (Cursor CLI, an open network) a run needs --pass-key;
 * config files are written in each agent's format.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PROVIDERS, Rig, show, type TestProvider } from "./rig_env.ts";
import { argvSightings, getDenoDir, REPO } from "./helpers.ts";
import { quoteArgs } from "../lib/shell.ts";

const SECRET = "sk-test-" + crypto.randomUUID().replaceAll("-", "") + "-SECRET";
const PROMPT = `Fix "it"; $(touch /tmp/pwned) \`id\` — ünïcødé ✓\nsecond line 'quoted'`;

/** A stand-in agent: records how it was started, answers like the real one. */
const STAND_IN = `#!/usr/bin/env node
const fs = require("fs");
const name = require("path").basename(process.argv[1]);
const argv = process.argv.slice(2);
if (argv[0] === "--version") { console.log(name === "claude" ? "2.1.0 (Claude Code)" : "1.2.3"); process.exit(0); }
fs.appendFileSync(process.env.HOME + "/agent-calls.ndjson", JSON.stringify({
  name, argv, cwd: process.cwd(), env: Object.keys(process.env).sort(),
  keyLength: (process.env.ANTHROPIC_API_KEY || process.env.CURSOR_API_KEY || process.env.OPENAI_API_KEY || process.env.GEMINI_API_KEY || "").length,
  standIn: /^cal-standin-[0-9a-f]{48}$/.test(process.env.ANTHROPIC_API_KEY || process.env.CURSOR_API_KEY || process.env.OPENAI_API_KEY || process.env.GEMINI_API_KEY || ""),
  // A stand-in's last 20 characters (what Claude records of an approved key); never a key's.
  standInTail: /^cal-standin-/.test(process.env.ANTHROPIC_API_KEY || "") ? process.env.ANTHROPIC_API_KEY.slice(-20) : undefined,
}) + "\\n");
setTimeout(() => {
  if (argv.includes("-p")) console.log(JSON.stringify({ type: "result", subtype: "success", is_error: false, result: "done", session_id: "ses-42", total_cost_usd: 0.05, permission_denials: [] }));
  process.exit(Number(process.env.STANDIN_EXIT || 0));
}, 1500);
`;

function suite(provider: TestProvider) {
  describe(`agents in a workspace (${provider})`, () => {
    let rig: Rig;
    let ws: string;
    /** Both providers send the agent through cal's proxy (allowlist, the default network). */
    const swaps = true;
    const keyFlags: string[] = [];
    /** Whether `agent`'s key stays on the host in this suite (Cursor CLI's cannot). */
    const swapped = (agent: string) => swaps && agent !== "cursor-cli";
    const env = () => ({
      ANTHROPIC_API_KEY: SECRET,
      CURSOR_API_KEY: SECRET,
      OPENAI_API_KEY: SECRET,
      GEMINI_API_KEY: SECRET,
    });

    async function calls(): Promise<Record<string, unknown>[]> {
      const r = await rig.vm([
        "ssh",
        ws,
        "cat ~/agent-calls.ndjson 2>/dev/null; rm -f ~/agent-calls.ndjson",
      ]);
      return r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l));
    }

    before(async () => {
      rig = await Rig.create("", provider);
      ws = rig.name("agents");
      assert.equal((await rig.vm(["init", ws])).code, 0);
      assert.equal((await rig.vm(["start", ws])).code, 0);
      const install =
        "mkdir -p ~/.local/bin && cat > ~/.local/bin/claude && chmod +x ~/.local/bin/claude && " +
        "for b in opencode cursor-agent codex gemini; do cp ~/.local/bin/claude ~/.local/bin/$b; done";
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", join(REPO, "commands", "cal-vm.ts"), "ssh", ws, install],
        env: { ...rig.env, DENO_DIR: await getDenoDir() },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = r.stdin.getWriter();
      await w.write(new TextEncoder().encode(STAND_IN));
      await w.close();
      assert.equal((await r.output()).code, 0);
    });
    after(async () => await rig.close());

    it("lists the known agents with what is installed", async () => {
      const r = await rig.cal(["isolation", "agent", "list", ws, "--json"]);
      assert.equal(r.code, 0, show(r));
      const names = r.records.map((x) => x.agent);
      assert.deepEqual(names, ["claude-code", "opencode", "cursor-cli", "codex", "gemini"]);
      assert.ok(r.records.every((x) => x.installed === true));
      assert.equal(r.records[0].version, "2.1.0");
    });

    it("use switches the active agent", async () => {
      const r = await rig.cal(["isolation", "agent", "use", ws, "opencode"]);
      assert.equal(r.code, 0, show(r));
      const l = await rig.vm(["status", ws, "--json"]);
      assert.equal(l.records[0].agent, "opencode");
      const bad = await rig.cal(["isolation", "agent", "use", ws, "nope"]);
      assert.equal(bad.code, 2, show(bad));
      assert.match(bad.stderr, /Known agents: claude-code, opencode, cursor-cli, codex, gemini/);
    });

    const expected: Record<
      string,
      { bin: string; interactive: string[]; headless: string[]; autonomous: string[] }
    > = {
      "claude-code": {
        bin: "claude",
        interactive: ["--permission-mode", "acceptEdits"],
        headless: ["--permission-mode", "acceptEdits", "-p", PROMPT, "--output-format", "json"],
        autonomous: ["--dangerously-skip-permissions", "-p", PROMPT, "--output-format", "json"],
      },
      opencode: {
        bin: "opencode",
        interactive: [],
        headless: ["run", "--format", "json", PROMPT],
        autonomous: ["run", "--auto", "--format", "json", PROMPT],
      },
      "cursor-cli": {
        bin: "cursor-agent",
        interactive: ["--trust"],
        headless: ["--trust", "-p", "--output-format", "json", PROMPT],
        autonomous: ["--trust", "--force", "-p", "--output-format", "json", PROMPT],
      },
      codex: {
        bin: "codex",
        interactive: [],
        headless: ["exec", "--json", "--skip-git-repo-check", PROMPT],
        autonomous: [
          "exec",
          "--json",
          "--skip-git-repo-check",
          "--dangerously-bypass-approvals-and-sandbox",
          PROMPT,
        ],
      },
      gemini: {
        bin: "gemini",
        interactive: [],
        headless: ["-p", PROMPT, "--output-format", "json"],
        autonomous: ["--approval-mode", "yolo", "-p", PROMPT, "--output-format", "json"],
      },
    };

    for (const [agent, want] of Object.entries(expected)) {
      it(`${agent}: exact command lines, cwd, credentials by name only`, async () => {
        const runs: [string[], string[]][] = [
          [["--yes"], want.interactive],
          [["--yes", "--prompt", PROMPT], want.headless],
          [["--yes", "--prompt", PROMPT, "--autonomous"], want.autonomous],
        ];
        const pass = swapped(agent) ? [] : ["--pass-key"];
        for (const [flags, argv] of runs) {
          const r = await rig.cal([
            "isolation",
            "run",
            ws,
            "--agent",
            agent,
            "--no-snapshot",
            ...flags,
            ...pass,
            "--json",
          ], { env: env() });
          assert.equal(r.code, 0, show(r));
          const [c] = await calls();
          assert.equal(c.name, want.bin);
          assert.deepEqual(c.argv, argv, `${agent} ${flags.join(" ")}`);
          assert.equal(c.cwd, "/Users/admin/workspace");
          if (swapped(agent)) {
            assert.equal(c.standIn, true, "the agent got a stand-in, not the key");
            if (agent === "claude-code") {
              // Claude's key approval is pre-seeded for this session's stand-in alone.
              const state = await rig.vm(["ssh", ws, "cat ~/.claude.json"]);
              const approved = JSON.parse(state.stdout).customApiKeyResponses?.approved;
              assert.deepEqual(approved, [c.standInTail]);
            }
          } else {
            assert.equal(c.keyLength, SECRET.length, "with --pass-key the key reached the agent");
            assert.match(r.stderr, /--pass-key: the real \w+ goes into/);
          }
          assert.ok((c.env as string[]).length > 0);
          const run = r.records.find((x) => x.kind === "run")!;
          assert.equal(run.agent, agent);
          assert.equal(run.exit, 0);
        }
      });
    }

    it("a headless run reports a run record from the agent's JSON", async () => {
      const r = await rig.cal([
        "isolation",
        "run",
        ws,
        "--agent",
        "claude-code",
        "--no-snapshot",
        ...keyFlags,
        "--prompt",
        "hi",
        "--json",
      ], { env: env() });
      assert.equal(r.code, 0, show(r));
      const run = r.records[0];
      assert.equal(run.kind, "run");
      assert.equal(run.mode, "headless");
      assert.equal(run.session_id, "ses-42");
      assert.equal(run.cost_usd, 0.05);
      assert.deepEqual(run.permission_denials, []);
      assert.equal(typeof run.duration_s, "number");
      await calls();
    });

    it("the agent's exit code is passed through", async () => {
      const r = await rig.cal(
        ["isolation", "run", ws, "--agent", "codex", "--no-snapshot", "--yes", ...keyFlags],
        {
          env: { ...env() },
        },
      );
      assert.equal(r.code, 0, show(r));
      await rig.vm([
        "ssh",
        ws,
        "sed -i 's/STANDIN_EXIT || 0/STANDIN_EXIT || 3/' ~/.local/bin/codex",
      ]);
      const failing = await rig.cal([
        "isolation",
        "run",
        ws,
        "--agent",
        "codex",
        "--no-snapshot",
        "--yes",
        ...keyFlags,
        "--prompt",
        "x",
      ], { env: env() });
      assert.equal(failing.code, 3, show(failing));
      await rig.vm([
        "ssh",
        ws,
        "sed -i 's/STANDIN_EXIT || 3/STANDIN_EXIT || 0/' ~/.local/bin/codex",
      ]);
      await calls();
    });

    /** A headless gemini run that cal stops after 2 seconds. */
    const runWithTimeout = (prompt: string) =>
      rig.cal([
        "isolation",
        "run",
        ws,
        "--agent",
        "gemini",
        "--no-snapshot",
        ...keyFlags,
        "--prompt",
        prompt,
        "--timeout",
        "2",
        "--json",
      ], { env: env() });

    it("--timeout really stops the remote agent (exit 124)", async () => {
      await rig.vm(["ssh", ws, "sed -i 's/}, 1500);/}, 60000);/' ~/.local/bin/gemini"]);
      const t0 = Date.now();
      const r = await runWithTimeout("slow");
      assert.equal(r.code, 124, show(r));
      assert.ok(Date.now() - t0 < 30_000);
      assert.equal(r.records[0].timed_out, true);
      const ps = await rig.vm(["ssh", ws, "ps ax -o args | grep -c '[g]emini -p' || true"]);
      assert.equal(ps.stdout.trim(), "0", "no gemini left running in the guest");
      await rig.vm(["ssh", ws, "sed -i 's/}, 60000);/}, 1500);/' ~/.local/bin/gemini"]);
      await calls();
    });

    it("--timeout stops the agent's whole process tree, grandchildren included (exit 124)", async () => {
      // An agent whose shell tool left work behind: one grandchild detached from the output, one
      // holding it open (and ignoring TERM), and a foreground child. Unique durations find them.
      const lines = [
        "#!/bin/sh",
        `[ "$1" = --version ] && { echo 1.2.3; exit 0; }`,
        "sh -c 'sleep 301; :' >/dev/null 2>&1 &",
        `sh -c 'trap "" TERM; sleep 43; :' &`,
        "sleep 302",
      ];
      const left = "ps ax -o args= | grep -cE '^sleep (301|302|43)$' || true";
      await rig.vm(["ssh", ws, "cp ~/.local/bin/gemini ~/.local/bin/gemini.node"]);
      try {
        await rig.vm(["ssh", ws, `printf '%s\\n' ${quoteArgs(lines)} > ~/.local/bin/gemini`]);
        const t0 = Date.now();
        const r = await runWithTimeout("tree");
        assert.equal(r.code, 124, show(r));
        assert.equal(r.records[0].timed_out, true);
        assert.ok(Date.now() - t0 < 30_000, `took ${Date.now() - t0} ms`);
        const ps = await rig.vm(["ssh", ws, left]);
        assert.equal(ps.stdout.trim(), "0", "no process the agent started is left in the guest");
      } finally {
        await rig.vm(["ssh", ws, `pkill -KILL -f '^sleep (301|302|43)$'; true`]);
        await rig.vm(["ssh", ws, "mv ~/.local/bin/gemini.node ~/.local/bin/gemini"]);
      }
    });

    it("opencode --autonomous in an interactive session carries OPENCODE_PERMISSION; without, not", async () => {
      for (const autonomous of [true, false]) {
        const r = await rig.cal([
          "isolation",
          "run",
          ws,
          "--agent",
          "opencode",
          "--no-snapshot",
          "--yes",
          ...keyFlags,
          ...(autonomous ? ["--autonomous"] : []),
          "--json",
        ], { env: env() });
        assert.equal(r.code, 0, show(r));
        const [c] = await calls();
        assert.deepEqual(c.argv, []);
        assert.equal((c.env as string[]).includes("OPENCODE_PERMISSION"), autonomous);
        assert.ok((c.env as string[]).includes("OPENCODE_DISABLE_AUTOUPDATE"));
      }
    });

    it("the credential appears in no process argument list and in no file under ~/.cal", async () => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          join(REPO, "commands", "cal-agent.ts"),
          "run",
          ws,
          "--agent",
          "claude-code",
          "--no-snapshot",
          ...keyFlags,
          "--prompt",
          "scan",
          "--json",
        ],
        env: { ...rig.env, DENO_DIR: await getDenoDir(), ...env() },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const done = child.output();
      const { seen, scans } = await argvSightings(SECRET, done);
      const out = await done;
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.ok(scans > 10, `scanned ${scans} times while the agent ran`);
      assert.equal(seen, 0, "the secret was in a process's argv");
      const [c] = await calls();
      if (swaps) assert.equal(c.standIn, true, "the agent got a stand-in");
      else assert.equal(c.keyLength, SECRET.length);
      const grep = await new Deno.Command("grep", {
        // Any part of it: its last 12 characters (Claude records a key by its last 20).
        args: ["-rlF", SECRET.slice(-12), rig.env.CAL_HOME],
        stdout: "piped",
      }).output();
      assert.equal(
        new TextDecoder().decode(grep.stdout),
        "",
        "the secret is in a file under ~/.cal",
      );
      const guestFiles = await rig.vm([
        "ssh",
        ws,
        `grep -rlF ${SECRET.slice(-12)} ~ 2>/dev/null; true`,
      ]);
      assert.equal(
        guestFiles.stdout.trim(),
        "",
        "no part of the key in any file of the guest's home",
      );
    });

    it("config files parse in their formats, with the allow/deny rules; rerun keeps foreign keys", async () => {
      await rig.vm([
        "ssh",
        ws,
        `mkdir -p ~/.claude && echo '{"theme":"dark","permissions":{"allow":["Bash(make:*)"]}}' > ~/.claude/settings.json`,
      ]);
      for (const agent of ["claude-code", "opencode", "cursor-cli", "codex", "gemini"]) {
        const r = await rig.agent(["configure", ws, agent]);
        assert.equal(r.code, 0, show(r));
      }
      const read = async (f: string) => (await rig.vm(["ssh", ws, `cat ~/${f}`])).stdout;
      const claude = JSON.parse(await read(".claude/settings.json"));
      assert.equal(claude.theme, "dark");
      assert.ok(claude.permissions.allow.includes("Bash(make:*)"));
      assert.ok(claude.permissions.allow.includes("Bash(git:*)"));
      assert.ok(claude.permissions.deny.includes("Bash(sudo:*)"));
      const state = JSON.parse(await read(".claude.json"));
      assert.equal(state.hasCompletedOnboarding, true);
      assert.equal(state.projects["/Users/admin/workspace"].hasTrustDialogAccepted, true);
      const mode = await rig.vm(["ssh", ws, "stat -c %a ~/.claude.json ~/.cursor/cli-config.json"]);
      assert.equal(mode.stdout, "600\n600\n");
      const oc = JSON.parse(await read(".config/opencode/opencode.json"));
      assert.equal(oc.permission.read, "allow");
      assert.equal(oc.permission.bash["sudo*"], "deny");
      const cur = JSON.parse(await read(".cursor/cli-config.json"));
      assert.ok(cur.permissions.deny.includes("Shell(sudo)"));
      const codex = await read(".codex/config.toml");
      assert.match(codex, /^sandbox_mode = "workspace-write"$/m);
      const gem = JSON.parse(await read(".gemini/settings.json"));
      assert.equal(gem.general.defaultApprovalMode, "auto_edit");
      // The user edits a file cal wrote; a second configure keeps the edit.
      await rig.vm([
        "ssh",
        ws,
        `cd ~/.claude && node -e 'const f="settings.json";const j=JSON.parse(require("fs").readFileSync(f));j.model="opus";require("fs").writeFileSync(f,JSON.stringify(j))'`,
      ]);
      assert.equal((await rig.agent(["configure", ws, "claude-code"])).code, 0);
      const again = JSON.parse(await read(".claude/settings.json"));
      assert.equal(again.model, "opus");
      assert.equal(again.permissions.allow.filter((x: string) => x === "Bash(git:*)").length, 1);
    });

    it("bad input: unknown agent (2), missing credential (2), not installed (4)", async () => {
      const unknown = await rig.cal(["isolation", "run", ws, "--agent", "nope", "--yes"], {
        env: env(),
      });
      assert.equal(unknown.code, 2, show(unknown));
      assert.match(unknown.stderr, /Known agents: claude-code/);
      const noKey = await rig.cal([
        "isolation",
        "run",
        ws,
        "--agent",
        "claude-code",
        "--yes",
        "--prompt",
        "x",
      ], {
        env: { ANTHROPIC_API_KEY: "", CLAUDE_CODE_OAUTH_TOKEN: "" },
      });
      assert.equal(noKey.code, 2, show(noKey));
      assert.match(
        noKey.stderr,
        /needs ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN; cal looked in the environment/,
      );
      await rig.vm(["ssh", ws, "mv ~/.local/bin/codex ~/.local/bin/codex.off"]);
      const missing = await rig.cal(["isolation", "run", ws, "--agent", "codex", "--yes"], {
        env: env(),
      });
      assert.equal(missing.code, 4, show(missing));
      assert.match(missing.stderr, /cal-agent install agents codex/);
      await rig.vm(["ssh", ws, "mv ~/.local/bin/codex.off ~/.local/bin/codex"]);
    });

    it("a key that cannot stay on the host needs --pass-key: refused before the agent starts (2)", async () => {
      // Cursor CLI does not say how its key travels.
      for (const agent of ["cursor-cli"]) {
        const r = await rig.cal([
          "isolation",
          "run",
          ws,
          "--agent",
          agent,
          "--no-snapshot",
          "--yes",
          "--prompt",
          "x",
        ], { env: env() });
        assert.equal(r.code, 2, show(r));
        assert.match(r.stderr, /key cannot stay on the host here/);
        assert.match(r.stderr, /--pass-key/);
        assert.deepEqual(await calls(), [], `${agent} was not started`);
      }
      if (swaps) {
        // In a workspace whose network is open there is no proxy to swap the key.
        assert.equal((await rig.vm(["net", "mode", ws, "open"])).code, 0);
        assert.equal((await rig.vm(["stop", ws])).code, 0);
        assert.equal((await rig.vm(["start", ws])).code, 0);
        try {
          const r = await rig.cal([
            "isolation",
            "run",
            ws,
            "--agent",
            "claude-code",
            "--no-snapshot",
            "--yes",
            "--prompt",
            "x",
          ], { env: env() });
          assert.equal(r.code, 2, show(r));
          assert.match(r.stderr, /does not go through cal's proxy/);
          assert.deepEqual(await calls(), []);
        } finally {
          assert.equal((await rig.vm(["net", "mode", ws, "allowlist"])).code, 0);
          assert.equal((await rig.vm(["stop", ws])).code, 0);
          assert.equal((await rig.vm(["start", ws])).code, 0);
        }
      }
    });

    it("a run takes the session-start snapshot first", async () => {
      const r = await rig.cal([
        "isolation",
        "run",
        ws,
        "--agent",
        "claude-code",
        "--yes",
        ...keyFlags,
        "--prompt",
        "snap",
        "--json",
      ], { env: env() });
      assert.equal(r.code, 0, show(r));
      const run = r.records.find((x) => x.kind === "run")!;
      assert.match(String(run.snapshot), /^session-\d{4}-\d{2}-\d{2}-\d{4}/);
      const snaps = await rig.snap(["list", ws, "--json"]);
      assert.ok(snaps.records.some((s) => s.snapshot === run.snapshot && s.auto === true));
      await calls();
    });
  });
}

for (const provider of PROVIDERS) suite(provider);
