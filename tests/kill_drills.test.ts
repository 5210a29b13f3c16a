/**
 * Kill drills: `kill -9` of a cal command's whole process group (as a person or a power loss
 * would) at named points of init, start, snapshot create, snapshot restore and destroy, on the
 * sandbox and on the fake tart. The points are reached deterministically: CAL_TEST_KILL_AT makes
 * cal kill its own group there (lib/store.ts killPoint), and "copying" is inside the provider's
 * copy (a `cp` on PATH that, once the copy is whole, waits to be killed).
 *
 * After each kill: list, status and cal-snap list answer truthfully (no crash, no "bug in cal"),
 * the interrupted command run again finishes, and `cal-vm cleanup` leaves nothing behind.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import { PROVIDERS, REAL_TART, Rig, show, type TestProvider } from "./rig_env.ts";
import { interrupt } from "./interrupt.ts";
import type { CalResult } from "./helpers.ts";

interface Row {
  provider: TestProvider;
  command: string;
  point: string;
  leftovers: string[];
}
const figure: Row[] = [];

async function ls(dir: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e);
  } catch { /* none */ }
  return out;
}

const exists = (p: string) => Deno.lstat(p).then(() => true, () => false);

/**
 * What a kill left that is not a finished state: copies, folders and machines nobody records,
 * and workspaces or snapshots marked unfinished. Read from the outside (files and tart itself),
 * before any cal command runs (a tart command collects tart's own garbage).
 */
async function leftovers(rig: Rig): Promise<string[]> {
  const found: string[] = [];
  // First: any tart command (the listing below) collects tart's own tmp/ garbage, as Tart does.
  if (rig.provider === "sandbox") {
    const root = join(rig.env.CAL_HOME, "isolation", "sandboxes");
    for (const e of await ls(root)) {
      if (e.name.startsWith(".tmp-")) found.push(`sandboxes/${e.name.slice(0, 12)}…`);
      else if (!(await exists(join(root, e.name, "machine.json")))) {
        found.push(`sandboxes/${e.name} (no machine.json)`);
      }
    }
  } else {
    for (const e of await ls(join(rig.root, "tart", "tmp"))) {
      found.push(`tart tmp/${e.name.slice(0, 8)}…`);
    }
  }

  const vms = join(rig.env.CAL_HOME, "isolation", "vms");
  const recorded = new Set<string>();
  const owners = new Set<string>();
  for (const e of await ls(vms)) {
    if (e.name.startsWith(".")) {
      found.push(`vms/${e.name}`);
      continue;
    }
    const file = join(vms, e.name, "vm.yaml");
    if (!(await exists(file))) {
      found.push(`vms/${e.name} (no vm.yaml)`);
      continue;
    }
    const vm = parse(await Deno.readTextFile(file));
    owners.add(`cal-${vm.name}`);
    recorded.add(`cal-${vm.name}`);
    if (vm.status !== "ready") found.push(`${vm.name}: status ${vm.status}`);
    if (vm.restoring) found.push(`${vm.name}: restoring ${vm.restoring.snapshot}`);
    for (const s of vm.snapshots ?? []) {
      if (s.status) found.push(`${vm.name}/${s.name}: snapshot ${s.status}`);
      else recorded.add(s.vm);
    }
  }
  for (const m of await rig.machineNames()) {
    if (!recorded.has(m)) found.push(`machine ${m}`);
  }
  return found.sort();
}

/** No answer may be a crash: every failure is one of cal's own errors, never "a bug in cal". */
function noCrash(r: CalResult | { stderr: string }, what: string) {
  assert.doesNotMatch(r.stderr, /bug in cal|TypeError|ReferenceError|at file:/, what);
}

function suite(provider: TestProvider) {
  describe(`kill drills (${provider})`, { skip: REAL_TART && "needs the rig's fake tart" }, () => {
    let rig: Rig;
    let bin: string;
    let mark: string;
    before(async () => {
      rig = await Rig.create("", provider);
      // A `cp` that, once its copy is whole, says so and waits to be killed with its group.
      bin = join(rig.root, "drill-bin");
      mark = join(rig.root, "copied");
      await Deno.mkdir(bin);
      const real = new TextDecoder().decode(
        (await new Deno.Command("sh", { args: ["-c", "command -v cp"], stdout: "piped" }).output())
          .stdout,
      ).trim();
      await Deno.writeTextFile(
        join(bin, "cp"),
        `#!/bin/sh\n${real} "$@" || exit $?\n` +
          `case " $* " in *" --reflink=auto "*) : > "$CAL_DRILL_MARK"; exec sleep 600;; esac\n`,
        { mode: 0o755 },
      );
    });
    after(async () => await rig.close());

    /** Runs `tool args` and SIGKILLs its process group at `point`. */
    async function kill(tool: string, args: string[], point: string) {
      await Deno.remove(mark).catch(() => {});
      const copying = point.endsWith(":copying");
      const env = copying
        ? { ...rig.env, PATH: `${bin}:${rig.env.PATH}`, CAL_DRILL_MARK: mark }
        : { ...rig.env, CAL_TEST_KILL_AT: point };
      const r = await interrupt(env, tool, [...args, "--json"], {
        ...(copying ? { when: () => exists(mark), group: true } : {}),
      });
      assert.equal(r.signal, "SIGKILL", `${point} was reached and killed:\n${r.stderr}`);
      return r;
    }

    /** list, status and cal-snap list after a kill: answers, no crash; the workspace's record. */
    async function report(ws: string) {
      const list = await rig.vm(["list", "--json"]);
      assert.equal(list.code, 0, show(list));
      noCrash(list, "list");
      const st = await rig.vm(["status", ws, "--json"]);
      assert.ok([0, 3].includes(st.code), show(st));
      noCrash(st, "status");
      const snaps = await rig.snap(["list", ws, "--json"]);
      assert.ok([0, 3].includes(snaps.code), show(snaps));
      noCrash(snaps, "cal-snap list");
      return {
        rec: list.records.find((r) => r.workspace === ws),
        snaps: snaps.records,
      };
    }

    /** cleanup after the rerun: nothing is left, by cal's account and from the outside. */
    async function clean(row: Row) {
      const c = await rig.vm(["cleanup", "--yes", "--json"]);
      assert.equal(c.code, 0, show(c));
      noCrash(c, "cleanup");
      assert.deepEqual(await leftovers(rig), [], `after cleanup (${row.command} ${row.point})`);
      figure.push(row);
    }

    async function must(r: Promise<CalResult>, what: string) {
      const res = await r;
      assert.equal(res.code, 0, `${what}: ${show(res)}`);
      noCrash(res, what);
      return res;
    }

    const copyPoint = provider === "tart" ? ["init:copying"] : []; // a sandbox init copies nothing
    for (const point of ["init:recorded", ...copyPoint, "init:cloned"]) {
      it(`init killed at ${point}: reported broken, init again finishes`, async () => {
        const ws = rig.name(`i-${point.split(":")[1]}`);
        await kill("cal-vm", ["init", ws], point);
        const found = await leftovers(rig);
        const { rec } = await report(ws);
        assert.equal(rec?.state, "broken", JSON.stringify(rec));
        assert.match(String(rec?.problem), /init did not finish/);
        const st = await rig.vm(["start", ws]);
        assert.equal(st.code, 4, show(st));
        assert.match(st.stderr, /init was interrupted.*cal-vm init/s);
        await must(rig.vm(["init", ws]), "init again");
        assert.equal((await rig.vm(["status", ws, "--json"])).records[0].state, "stopped");
        await clean({ provider, command: "init", point, leftovers: found });
        await must(rig.vm(["destroy", ws, "--yes"]), "destroy");
      });
    }

    it("start killed once the machine is launched: running is reported, stop and start finish", async () => {
      const ws = rig.name("started");
      await must(rig.vm(["init", ws]), "init");
      await kill("cal-vm", ["start", ws], "start:launched");
      const found = await leftovers(rig);
      const { rec } = await report(ws);
      assert.equal(rec?.state, "running", JSON.stringify(rec));
      await must(rig.vm(["stop", ws, "--force"]), "stop");
      await must(rig.vm(["start", ws]), "start again");
      await must(rig.vm(["ssh", ws, "true"]), "ssh");
      await must(rig.vm(["stop", ws]), "stop");
      await clean({ provider, command: "start", point: "start:launched", leftovers: found });
      await must(rig.vm(["destroy", ws, "--yes"]), "destroy");
    });

    describe("snapshot create and restore", () => {
      let ws: string;
      before(async () => {
        ws = rig.name("snapped");
        await must(rig.vm(["init", ws]), "init");
        await must(rig.vm(["start", ws]), "start");
        await must(rig.vm(["ssh", ws, "echo base > ~/base.txt"]), "write");
        await must(rig.snap(["create", ws, "--name", "base"]), "base snapshot");
      });

      const createPoints = [
        "snapshot-create:recorded",
        "snapshot-create:stopped",
        "snapshot-create:copying",
        "snapshot-create:copied",
      ];
      for (const [i, point] of createPoints.entries()) {
        it(`snapshot create killed at ${point}: listed as unfinished, create again finishes`, async () => {
          const snap = `s${i}`;
          await kill("cal-snap", ["create", ws, "--name", snap], point);
          const found = await leftovers(rig);
          assert.ok(found.includes(`${ws}/${snap}: snapshot creating`), found.join("\n"));
          const { snaps } = await report(ws);
          const s = snaps.find((x) => x.snapshot === snap);
          assert.match(String(s?.problem), /create was interrupted/, JSON.stringify(snaps));
          const r = await rig.snap(["restore", ws, "--name", snap, "--force"]);
          assert.equal(r.code, 4, show(r));
          assert.match(r.stderr, /never finished/);
          await must(rig.snap(["create", ws, "--name", snap]), "create again");
          const after = await rig.snap(["list", ws, "--json"]);
          const done = after.records.find((x) => x.snapshot === snap);
          assert.equal(done?.problem, undefined, JSON.stringify(done));
          const st = await rig.vm(["status", ws, "--json"]);
          assert.equal(st.records[0].state, "running", "the create that finished resumed it");
          await clean({ provider, command: "snapshot create", point, leftovers: found });
          await must(rig.snap(["delete", ws, "--name", snap]), "delete");
        });
      }

      const restorePoints = [
        "restore:stopped",
        "restore:copying",
        "restore:copied",
        "restore:deleted",
        "restore:renamed",
      ];
      for (const point of restorePoints) {
        it(`restore killed at ${point}: the truth is told, restore again finishes`, async () => {
          await must(rig.vm(["ssh", ws, "echo later > ~/later.txt"]), "write");
          await kill("cal-snap", ["restore", ws, "--name", "base", "--force"], point);
          const found = await leftovers(rig);
          const { rec } = await report(ws);
          assert.match(String(rec?.problem), /restore of snapshot "base" was interrupted/);
          const st = await rig.vm(["start", ws]);
          assert.equal(st.code, 4, show(st));
          assert.match(st.stderr, /cal-snap restore .* --name base/);
          await must(rig.snap(["restore", ws, "--name", "base", "--force"]), "restore again");
          const st2 = await rig.vm(["status", ws, "--json"]);
          assert.equal(st2.records[0].state, "running", "the restore that finished resumed it");
          const files = await must(rig.vm(["ssh", ws, "ls ~"]), "ls");
          assert.match(files.stdout, /base\.txt/);
          assert.doesNotMatch(files.stdout, /later\.txt/);
          await clean({ provider, command: "snapshot restore", point, leftovers: found });
        });
      }
    });

    for (
      const point of [
        "destroy:recorded",
        "destroy:deleted",
        "destroy:machines-deleted",
        "remove-folder:aside",
      ]
    ) {
      it(`destroy killed at ${point}: said half destroyed, destroy again finishes`, async () => {
        const ws = rig.name(`d-${point.split(":")[1]}`);
        await must(rig.vm(["init", ws]), "init");
        await must(rig.snap(["create", ws, "--name", "keep"]), "snapshot");
        await kill("cal-vm", ["destroy", ws, "--yes"], point);
        const found = await leftovers(rig);
        const { rec } = await report(ws);
        const again = await rig.vm(["destroy", ws, "--yes"]);
        noCrash(again, "destroy again");
        const init = await rig.vm(["init", ws]);
        if (point === "remove-folder:aside") {
          assert.equal(rec, undefined, "the workspace is gone from the list");
          assert.equal(again.code, 3, show(again));
        } else {
          assert.equal(rec?.state, "broken", JSON.stringify(rec));
          assert.match(String(rec?.problem), /destroy was interrupted/);
          assert.equal(again.code, 0, show(again));
        }
        assert.equal(init.code, 0, `init of the same name: ${show(init)}`);
        await must(rig.vm(["destroy", ws, "--yes"]), "destroy");
        await clean({ provider, command: "destroy", point, leftovers: found });
      });
    }

    it("init after a killed destroy says exactly what to run", async () => {
      const ws = rig.name("half-gone");
      await must(rig.vm(["init", ws]), "init");
      await kill("cal-vm", ["destroy", ws, "--yes"], "destroy:deleted");
      const init = await rig.vm(["init", ws]);
      assert.equal(init.code, 4, show(init));
      noCrash(init, "init");
      assert.match(init.stderr, new RegExp(`cal-vm destroy ${ws} --yes`));
      // cleanup alone finishes it too, and then the name is free.
      const c = await rig.vm(["cleanup", "--yes", "--json"]);
      assert.equal(c.code, 0, show(c));
      assert.ok(c.records.some((r) => r.workspace === ws), show(c));
      assert.deepEqual(await leftovers(rig), []);
      await must(rig.vm(["init", ws]), "init after cleanup");
      await must(rig.vm(["destroy", ws, "--yes"]), "destroy");
    });

    it("a machine folder a kill left half deleted no longer breaks init", async () => {
      const ws = rig.name("half-deleted");
      await must(rig.vm(["init", ws]), "init");
      await kill("cal-vm", ["destroy", ws, "--yes"], "destroy:recorded");
      // The provider's delete killed halfway: its folder without its settings, or tart's tmp.
      if (provider === "sandbox") {
        await Deno.remove(
          join(rig.env.CAL_HOME, "isolation", "sandboxes", `cal-${ws}`, "machine.json"),
        );
      }
      assert.notDeepEqual(await leftovers(rig), []);
      await must(rig.vm(["destroy", ws, "--yes"]), "destroy again");
      await must(rig.vm(["init", ws]), "init");
      await must(rig.vm(["destroy", ws, "--yes"]), "destroy");
      assert.deepEqual(await leftovers(rig), []);
    });
  });
}

for (const p of PROVIDERS) suite(p);

describe("kill drills: the figure", () => {
  it("prints points × commands × providers and the leftovers each kill left", () => {
    const providers = [...new Set(figure.map((r) => r.provider))];
    const commands = [...new Set(figure.map((r) => r.command))];
    const lines = [
      `kill drills: ${figure.length} kills = ${
        commands.map((c) =>
          `${c} ${new Set(figure.filter((r) => r.command === c).map((r) => r.point)).size}`
        )
          .join(" + ")
      } points × ${providers.length} providers (${providers.join(", ")})`,
      ...figure.map((r) =>
        `  ${r.provider.padEnd(8)} ${r.point.padEnd(26)} ${
          String(r.leftovers.length).padStart(2)
        } left: ${r.leftovers.join("; ") || "-"}`
      ),
      `  leftovers found: ${figure.reduce((n, r) => n + r.leftovers.length, 0)}, after cleanup: 0`,
    ];
    console.log(lines.join("\n"));
    assert.ok(REAL_TART || figure.length > 0);
  });
});
