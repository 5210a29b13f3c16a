/**
 * The launch confirmation screen and the status banner, driven in a real terminal (tmux):
 * the screen shows the spec's fields, Q leaves without launching, Enter launches under the banner
 * (yellow while preparing and winding up, green while the agent runs, red when it failed), and
 * after the session cal offers to commit, then to keep, roll back or save a snapshot.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PROVIDERS, Rig, show, type TestProvider } from "./rig_env.ts";
import { getDenoDir, REPO } from "./helpers.ts";
import { hasTmux, tmux, waitFor } from "./tmux.ts";

const STAND_IN = `#!/bin/sh
[ "$1" = "--version" ] && { echo "2.1.0 (Claude Code)"; exit 0; }
echo "stand-in agent running" ; echo started >> "$HOME/screen-calls.log"
[ -d .git ] && echo "the agent was here" > agent.txt
sleep 2; exit "$(cat "$HOME/stand-in-exit" 2>/dev/null || echo 0)"`;

function suite(provider: TestProvider) {
  describe(
    `launch screen and banner in a terminal (${provider})`,
    { skip: !hasTmux && "tmux is not installed" },
    () => {
      let rig: Rig;
      let ws: string;
      const session = `cal-test-${crypto.randomUUID().slice(0, 8)}`;
      before(async () => {
        rig = await Rig.create("", provider);
        ws = rig.name("screen");
        assert.equal((await rig.vm(["init", ws])).code, 0);
        assert.equal((await rig.vm(["start", ws])).code, 0);
        const r = await rig.vm([
          "ssh",
          ws,
          `mkdir -p ~/.local/bin && printf '%s\\n' '${
            STAND_IN.replaceAll("'", "'\\''")
          }' > ~/.local/bin/claude && chmod +x ~/.local/bin/claude`,
        ]);
        assert.equal(r.code, 0, show(r));
      });
      after(async () => {
        await tmux("kill-session", "-t", session);
        await rig.close();
      });

      async function startRun() {
        const env = {
          ...rig.env,
          DENO_DIR: await getDenoDir(),
          ANTHROPIC_API_KEY: "sk-screen-test",
          TERM: "xterm-256color",
        };
        // `env` rather than tmux's -e: tmux keeps its server's PATH for the command it starts.
        const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
        await tmux("kill-session", "-t", session);
        await tmux(
          "new-session",
          "-d",
          "-s",
          session,
          "-x",
          "110",
          "-y",
          "45",
          "env",
          ...envArgs,
          // The pane stays after cal exits, so its last words can be read.
          "sh",
          "-c",
          '"$@"; echo "[exit $?]"; sleep 30',
          "cal-screen",
          Deno.execPath(),
          "run",
          "-A",
          "--quiet",
          join(REPO, "commands", "cal.ts"),
          "isolation",
          "run",
          ws,
          "--agent",
          "claude-code",
          "--no-snapshot",
        );
      }

      it("shows the confirmation with the spec's fields; Q leaves without launching", async () => {
        await startRun();
        const screen = await waitFor(session, "[Q] Quit");
        for (
          const want of [
            "CAL Isolation Check",
            `Workspace:     ${ws}`,
            "VM Status:     ● Running",
            "Isolation:     ✓ Active",
            "Environments:  (none)",
            "Agent:         Claude Code",
            "Repository:    (none cloned",
            "Last backup:",
            "[Enter] Launch Agent",
            "[B] Backup First",
          ]
        ) {
          assert.ok(screen.includes(want), `missing ${JSON.stringify(want)} in:\n${screen}`);
        }
        await tmux("send-keys", "-t", session, "q");
        await waitFor(session, "Not launched.");
        const calls = await rig.vm(["ssh", ws, "cat ~/screen-calls.log 2>/dev/null | wc -l"]);
        assert.equal(calls.stdout.trim(), "0", "the agent was not started");
      });

      it("Enter launches the agent under the green banner, then offers keep / snapshot", async () => {
        await startRun();
        await waitFor(session, "[Q] Quit");
        await tmux("send-keys", "-t", session, "Enter");
        const screen = await waitFor(session, "stand-in agent running");
        const where = provider === "sandbox"
          ? `Sandbox: ${ws} \\(namespaces, shared kernel\\)`
          : `VM: ${ws}`;
        assert.match(
          screen,
          new RegExp(`CAL ISOLATION ACTIVE │ ${where} │ Env: none │ Safe Mode`),
        );
        const colored = await tmux("capture-pane", "-p", "-e", "-t", session);
        // deno-lint-ignore no-control-regex
        assert.match(colored, /\x1b\[(\d+;)*42(;\d+)*m.*CAL ISOLATION ACTIVE/, "green background");
        const ended = await waitFor(session, "Session ended. [K]eep changes");
        assert.ok(ended.includes("CAL ISOLATION STARTING"), "yellow while it prepares");
        assert.ok(ended.includes("CAL ISOLATION STOPPING"), "yellow again once the agent is done");
        assert.ok(!ended.includes("CAL ISOLATION ERROR"), ended);
        await tmux("send-keys", "-t", session, "k");
        const calls = await rig.vm(["ssh", ws, "cat ~/screen-calls.log | wc -l"]);
        assert.equal(calls.stdout.trim(), "1");
      });

      it("with changes in the repository: commit (no push), then the snapshot question", async () => {
        const setup = [
          "set -e",
          "git init -q --bare ~/remote.git",
          "git init -q -b main ~/workspace/app && cd ~/workspace/app",
          "git config user.email agent@example.com && git config user.name agent",
          "git commit -q --allow-empty -m init && git remote add origin ~/remote.git",
          "git push -q origin main && git checkout -q -b agent/screen",
        ].join("\n");
        const r = await rig.vm(["ssh", ws, setup]);
        assert.equal(r.code, 0, show(r));
        const vmYaml = join(rig.env.CAL_HOME, "isolation", "vms", ws, "vm.yaml");
        const text = await Deno.readTextFile(vmYaml);
        await Deno.writeTextFile(
          vmYaml,
          text +
            "github:\n  repos:\n    - name: app\n      url: /Users/admin/remote.git\n      branch: agent/screen\n",
        );
        await startRun();
        await waitFor(session, "[Q] Quit");
        await tmux("send-keys", "-t", session, "Enter");
        await waitFor(session, "[C]ommit   Commit and [P]ush   [L]eave them uncommitted");
        await tmux("send-keys", "-t", session, "c");
        await waitFor(session, "Commit message:");
        await tmux("send-keys", "-t", session, "-l", "what the agent did");
        await tmux("send-keys", "-t", session, "Enter");
        const screen = await waitFor(session, "Session ended. [K]eep changes");
        assert.match(screen, /Committed [0-9a-f]{7} on agent\/screen\./);
        assert.doesNotMatch(screen, /pushed/);
        await tmux("send-keys", "-t", session, "k");
        await waitFor(session, "[exit 0]");
        const log = await rig.vm(["ssh", ws, "cd ~/workspace/app && git log -1 --format=%s"]);
        assert.equal(log.stdout, "what the agent did\n");
        const remote = await rig.vm(["ssh", ws, "git -C ~/remote.git branch --list agent/screen"]);
        assert.equal(remote.stdout, "", "nothing was pushed");
      });

      it("an agent that fails: the red banner, and its exit code is cal's", async () => {
        assert.equal((await rig.vm(["ssh", ws, "echo 3 > ~/stand-in-exit"])).code, 0);
        try {
          await startRun();
          await waitFor(session, "[Q] Quit");
          await tmux("send-keys", "-t", session, "Enter");
          const screen = await waitFor(session, "Session ended. [K]eep changes");
          assert.ok(screen.includes("CAL ISOLATION ERROR"), screen);
          assert.ok(screen.includes("Claude Code exited with code 3."), screen);
          const colored = await tmux("capture-pane", "-p", "-e", "-t", session);
          // deno-lint-ignore no-control-regex
          assert.match(colored, /\x1b\[(\d+;)*41(;\d+)*m.*CAL ISOLATION ERROR/, "red background");
          await tmux("send-keys", "-t", session, "k");
          await waitFor(session, "[exit 3]");
        } finally {
          await rig.vm(["ssh", ws, "rm -f ~/stand-in-exit"]);
        }
      });
    },
  );
}

for (const provider of PROVIDERS) suite(provider);
