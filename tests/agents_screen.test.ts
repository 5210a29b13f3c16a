/**
 * The launch confirmation screen and the status banner, driven in a real terminal (tmux):
 * the screen shows the spec's fields, Q leaves without launching, Enter launches under the banner.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Rig, show } from "./rig_env.ts";
import { getDenoDir, REPO } from "./helpers.ts";
import { hasTmux, tmux, waitFor } from "./tmux.ts";

const STAND_IN = `#!/bin/sh
[ "$1" = "--version" ] && { echo "2.1.0 (Claude Code)"; exit 0; }
echo "stand-in agent running" ; echo started >> "$HOME/screen-calls.log"; sleep 2`;

describe(
  "launch screen and banner in a terminal",
  { skip: !hasTmux && "tmux is not installed" },
  () => {
    let rig: Rig;
    let ws: string;
    const session = `cal-test-${crypto.randomUUID().slice(0, 8)}`;
    before(async () => {
      rig = await Rig.create();
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
      assert.match(screen, new RegExp(`CAL ISOLATION ACTIVE │ VM: ${ws} │ Env: none │ Safe Mode`));
      const colored = await tmux("capture-pane", "-p", "-e", "-t", session);
      // deno-lint-ignore no-control-regex
      assert.match(colored, /\x1b\[(\d+;)*42(;\d+)*m.*CAL ISOLATION ACTIVE/, "green background");
      await waitFor(session, "Session ended. [K]eep changes");
      await tmux("send-keys", "-t", session, "k");
      const calls = await rig.vm(["ssh", ws, "cat ~/screen-calls.log | wc -l"]);
      assert.equal(calls.stdout.trim(), "1");
    });
  },
);
