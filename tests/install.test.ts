/** `deno task install` installs commands that run a real workspace, not just the tests' `-A`. */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { getDenoDir, REPO, tempDir } from "./helpers.ts";

async function run(cmd: string, args: string[], env: Record<string, string>) {
  const o = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  return { code: o.code, stdout: d.decode(o.stdout), stderr: d.decode(o.stderr) };
}

describe("deno task install", {
  skip: Deno.build.os !== "linux" && "runs the sandbox provider",
}, () => {
  it("installs every command, and the installed cal-vm runs a sandbox workspace", async () => {
    const root = await tempDir("cal-install-");
    try {
      const env = {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: join(root, "home"),
        CAL_HOME: join(root, "home", ".cal"),
        DENO_DIR: await getDenoDir(),
        NO_COLOR: "1",
      };
      const install = await run(
        Deno.execPath(),
        ["run", "-A", join(REPO, "scripts", "install.ts"), "--root", join(root, "inst")],
        env,
      );
      assert.equal(install.code, 0, install.stderr);
      const bin = join(root, "inst", "bin");
      const names = [...Deno.readDirSync(bin)].map((e) => e.name).sort();
      for (const n of ["cal", "cal-agent", "cal-env", "cal-gh", "cal-quick", "cal-snap"]) {
        assert.ok(names.includes(n), `${n} in ${names.join(", ")}`);
      }
      const vm = join(bin, "cal-vm");
      for (const args of [["init", "inst", "--provider", "sandbox"], ["start", "inst"]]) {
        const r = await run(vm, args, env);
        assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      }
      const ssh = await run(vm, ["ssh", "inst", "echo from the guest"], env);
      assert.equal(ssh.stdout, "from the guest\n", ssh.stderr);
      assert.equal((await run(vm, ["destroy", "inst", "--yes", "--force"], env)).code, 0);
    } finally {
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  });
});
