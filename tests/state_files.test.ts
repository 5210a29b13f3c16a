/**
 * vm.yaml is checked on load by the rules the command line applies: a hand-edited (or
 * guest-influenced) field is refused at file:line:column, with a hint, and nothing runs — no
 * machine is started, no ssh config line is written, no host folder is given to the guest.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { PROVIDERS, Rig, show, type TestProvider } from "./rig_env.ts";
import { CalError } from "../lib/errors.ts";
import { Guest } from "../lib/guest/ssh.ts";
import { readVm, updateVm } from "../lib/store.ts";

function suite(provider: TestProvider) {
  describe(`vm.yaml refused at load (${provider})`, () => {
    let rig: Rig;
    let ws: string;
    let file: string;
    let original: string;
    let sync: string;
    before(async () => {
      rig = await Rig.create("", provider);
      ws = rig.name("stateful");
      const init = await rig.vm(["init", ws]);
      assert.equal(init.code, 0, show(init));
      file = join(rig.env.CAL_HOME, "isolation", "vms", ws, "vm.yaml");
      original = await Deno.readTextFile(file);
      sync = join(rig.env.HOME, "cal-output");
    });
    after(async () => await rig.close());

    /** Puts `edit(original)` in place, runs `start`, and puts the original back. */
    async function startWith(edit: (text: string) => string) {
      await Deno.writeTextFile(file, edit(original));
      const before = (await rig.tartCalls()).length;
      try {
        const r = await rig.vm(["start", ws, "--timeout", "20"]);
        const calls = (await rig.tartCalls()).slice(before);
        const pid = join(rig.env.CAL_HOME, "isolation", "sandboxes", `cal-${ws}`, "run.pid");
        const ran = provider === "sandbox"
          ? Number(await exists(pid))
          : calls.filter((a) => a[0] === "run").length;
        return { r, ran };
      } finally {
        await Deno.writeTextFile(file, original);
        // Today's cal would have started it: leave the next case a stopped workspace.
        await rig.vm(["stop", ws, "--force"]);
      }
    }

    const line = (field: string) => {
      const n = original.split("\n").findIndex((l) => l.startsWith(`${field}:`));
      assert.ok(n >= 0, `vm.yaml has ${field}: ${original}`);
      return n + 1;
    };

    it("a user with a newline (an ssh config line of its own) is refused", async () => {
      const marker = join(rig.root, "proxy-ran");
      const { r, ran } = await startWith((t) =>
        t.replace(/^user: .*$/m, `user: "admin\\nProxyCommand sh -c 'touch ${marker}'"`)
      );
      assert.equal(r.code, 2, show(r));
      assert.match(r.stderr, new RegExp(`vm\\.yaml:${line("user")}:\\d+: user: .*newlines`));
      assert.match(r.stderr, /Fix .*vm\.yaml at line/);
      assert.equal(ran, 0, "no machine was started");
      assert.ok(!(await exists(marker)), "the injected ProxyCommand never ran");
    });

    it("a name that is not its folder's is refused", async () => {
      const { r, ran } = await startWith((t) => t.replace(/^name: .*$/m, "name: someone-else"));
      assert.equal(r.code, 2, show(r));
      assert.match(
        r.stderr,
        new RegExp(
          `vm\\.yaml:${line("name")}:\\d+: name: "someone-else" is not the name of its folder`,
        ),
      );
      assert.equal(ran, 0);
    });

    it("a machine that is not the workspace's own (or a path) is refused", async () => {
      for (const vm of ["cal-someone-else", "../x"]) {
        const { r, ran } = await startWith((t) => t.replace(/^vm: .*$/m, `vm: ${vm}`));
        assert.equal(r.code, 2, `${vm}: ${show(r)}`);
        assert.match(r.stderr, new RegExp(`vm\\.yaml:${line("vm")}:\\d+: vm: `), vm);
        assert.equal(ran, 0, vm);
      }
    });

    it("an output_dir outside the sync folder (/etc, a victim) is refused, with a hint", async () => {
      const victim = await Deno.makeTempDir({ dir: rig.root, prefix: "victim-" });
      await Deno.writeTextFile(join(victim, "keep"), "mine\n");
      const owner = (await Deno.stat(victim)).uid;
      // `status` changes nothing, so /etc itself is safe to name here.
      await Deno.writeTextFile(file, original.replace(/^output_dir: .*$/m, "output_dir: /etc"));
      try {
        const st = await rig.vm(["status", ws]);
        assert.equal(st.code, 2, show(st));
        assert.match(
          st.stderr,
          new RegExp(
            `vm\\.yaml:${
              line("output_dir")
            }:\\d+: output_dir: /etc is not a folder under the sync folder ${sync}`,
          ),
        );
        assert.match(
          st.stderr,
          /Delete the output_dir line \(cal then uses .*cal-output\/stateful\)/,
        );
      } finally {
        await Deno.writeTextFile(file, original);
      }
      for (const dir of [victim, `${sync}/../${victim.split("/").pop()}`]) {
        const { r, ran } = await startWith((t) =>
          t.replace(/^output_dir: .*$/m, `output_dir: ${dir}`)
        );
        assert.equal(r.code, 2, `${dir}: ${show(r)}`);
        assert.match(r.stderr, /output_dir: /);
        assert.equal(ran, 0, dir);
      }
      assert.equal((await Deno.stat(victim)).uid, owner, "the victim was not given to the guest");
      assert.equal((await Deno.stat(join(victim, "keep"))).uid, owner);
    });

    it("an output_dir that is a link under the sync folder is refused", async () => {
      const victim = await Deno.makeTempDir({ dir: rig.root, prefix: "linked-" });
      const owner = (await Deno.stat(victim)).uid;
      await Deno.mkdir(sync, { recursive: true });
      const link = join(sync, "elsewhere");
      await Deno.symlink(victim, link);
      const { r, ran } = await startWith((t) =>
        t.replace(/^output_dir: .*$/m, `output_dir: ${link}`)
      );
      assert.equal(r.code, 2, show(r));
      assert.match(r.stderr, new RegExp(`output_dir: ${link} is a link`));
      assert.equal(ran, 0);
      assert.equal((await Deno.stat(victim)).uid, owner, "the link's target was not chowned");
    });

    it("other fields that reach a command line or a path are refused too", async () => {
      const cases: [string, RegExp][] = [
        [original.replace(/^base_image: .*$/m, "base_image: --help"), /base_image: /],
        [original.replace(/^provider: .*$/m, "provider: orchard-x"), /provider: /],
        [
          original + "github:\n  repos:\n    - { name: app, url: '-oProxyCommand=x' }\n",
          /github\.repos\.0\.url: /,
        ],
        [
          original +
          'github:\n  repos:\n    - { name: app, url: github.com/o/app, branch: "a\\nb" }\n',
          /github\.repos\.0\.branch: /,
        ],
        [original.replace(/^environments:.*$/m, "environments: [../../x]"), /environments\.0: /],
      ];
      for (const [text, where] of cases) {
        await Deno.writeTextFile(file, text);
        const r = await rig.vm(["status", ws]);
        assert.equal(r.code, 2, `${where}: ${show(r)}`);
        assert.match(r.stderr, new RegExp(`vm\\.yaml:\\d+:\\d+: ${where.source}`));
      }
      await Deno.writeTextFile(file, original);
      const ok = await rig.vm(["status", ws]);
      assert.equal(ok.code, 0, show(ok));
    });
  });
}

for (const p of PROVIDERS) suite(p);

describe("the second line of defence", () => {
  let home: string;
  let saved: string | undefined;
  before(async () => {
    home = await Deno.makeTempDir({ prefix: "cal-state-" });
    saved = Deno.env.get("CAL_HOME");
    Deno.env.set("CAL_HOME", home);
  });
  after(async () => {
    if (saved === undefined) Deno.env.delete("CAL_HOME");
    else Deno.env.set("CAL_HOME", saved);
    await Deno.remove(home, { recursive: true });
  });

  it("the ssh config writer refuses a value with a newline or a control character", async () => {
    for (
      const [user, host] of [
        ["admin\nProxyCommand touch /tmp/x", "127.0.0.1"],
        ["admin", "127.0.0.1\n  ProxyCommand x"],
        ["ad\x1bmin", "127.0.0.1"],
      ]
    ) {
      const g = new Guest("ws", { host, port: 22 }, user);
      await assert.rejects(g.prepare(), (e) => {
        assert.ok(e instanceof CalError, String(e));
        assert.match(e.message, /newline or control character/);
        assert.ok(!e.message.includes("\x1b"), "the message itself is safe to print");
        return true;
      });
      assert.ok(!(await exists(g.configFile)), "no config was written");
    }
  });

  it("cal never writes a vm.yaml it would refuse to read", async () => {
    const dir = join(home, "isolation", "vms", "ws");
    await Deno.mkdir(dir, { recursive: true });
    const text = "name: ws\nbase_image: img\ncreated_at: now\nprovider: tart\n" +
      "resources: { cpu: 1, memory: 1024, disk_size: 10 }\n";
    await Deno.writeTextFile(join(dir, "vm.yaml"), text);
    await assert.rejects(
      updateVm("ws", (vm) => {
        vm.user = "admin\nProxyCommand x";
      }),
      /cal refused to record a value in "ws"'s vm\.yaml: user: /,
    );
    assert.equal(await Deno.readTextFile(join(dir, "vm.yaml")), text, "nothing was written");
    assert.equal((await readVm("ws")).user, "admin");
  });
});

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}
