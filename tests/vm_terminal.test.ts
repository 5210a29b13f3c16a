/** cal-vm in a real terminal (tmux): an interactive shell in the guest, and tables for people. */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PROVIDERS, Rig, show, type TestProvider } from "./rig_env.ts";
import { getDenoDir, REPO } from "./helpers.ts";
import { hasTmux, tmux, waitFor } from "./tmux.ts";

function suite(provider: TestProvider) {
  describe(
    `cal-vm in a terminal (${provider})`,
    { skip: !hasTmux && "tmux is not installed" },
    () => {
      let rig: Rig;
      let ws: string;
      const session = `cal-term-${crypto.randomUUID().slice(0, 8)}`;
      before(async () => {
        rig = await Rig.create("", provider);
        ws = rig.name("term");
        assert.equal((await rig.vm(["init", ws])).code, 0);
        assert.equal((await rig.vm(["start", ws])).code, 0);
      });
      after(async () => {
        await tmux("kill-session", "-t", session);
        await rig.close();
      });

      async function open(...args: string[]) {
        const env = Object.entries({
          ...rig.env,
          DENO_DIR: await getDenoDir(),
          TERM: "xterm-256color",
        })
          .map(([k, v]) => `${k}=${v}`);
        await tmux("kill-session", "-t", session);
        await tmux(
          "new-session",
          "-d",
          "-s",
          session,
          "-x",
          "120",
          "-y",
          "30",
          "env",
          ...env,
          "sh",
          "-c",
          `"$@"; echo "[exit $?]"; sleep 30`,
          "cal-term",
          Deno.execPath(),
          "run",
          "-A",
          "--quiet",
          join(REPO, "commands", "cal.ts"),
          ...args,
        );
      }

      it("cal isolation ssh opens a real interactive shell; its exit code comes back", async () => {
        await open("isolation", "ssh", ws);
        await tmux("send-keys", "-t", session, "tty && echo answer-$((6*7))", "Enter");
        const screen = await waitFor(session, /answer-42/);
        assert.match(screen, /\/dev\/pts\/\d+/, "the shell has a terminal");
        await tmux("send-keys", "-t", session, "exit 3", "Enter");
        await waitFor(session, /\[exit 3\]/);
      });

      it("list prints a table on a terminal", async () => {
        await open("vm", "list");
        const screen = await waitFor(session, /\[exit 0\]/);
        assert.match(
          screen,
          /^NAME\s+STATE\s+PROVIDER\s+CPU\s+MEMORY\s+DISK/m,
          show({ code: 0, stdout: screen, stderr: "", records: [] }),
        );
        assert.match(screen, new RegExp(`^${ws}\\s+running\\s+${provider}`, "m"));
      });
    },
  );
}

for (const provider of PROVIDERS) suite(provider);
