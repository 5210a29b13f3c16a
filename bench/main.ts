/**
 * `deno task bench`: cal's speed and its calls to the outside, on the test rig.
 *
 * - cal's own time for `cal-vm list --json` with 50 workspaces (a `tart` that answers at once,
 *   so only cal is measured), and the same against the fake tart;
 * - `tart` calls and SSH handshakes (logins accepted by the guest's sshd) per `start`, `status`,
 *   snapshot `create` and `restore`;
 * - `cal-vm exec` against a plain `ssh` to the same guest;
 * - the sandbox provider: create, start-to-SSH-ready, snapshot and restore times;
 * - the egress proxy against direct: 100 small requests and a large download (bench/proxy.ts);
 * - a git push through cal's GitHub broker against a direct one (bench/github_broker.ts).
 */

import { join } from "node:path";
import { Rig } from "../tests/rig_env.ts";
import { getDenoDir, REPO } from "../tests/helpers.ts";
import { proxyBench } from "./proxy.ts";
import { brokerBench } from "./github_broker.ts";

const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? 5);
const rows: [string, string][] = [];
const report = (what: string, value: string) => {
  rows.push([what, value]);
  console.error(`${what}: ${value}`);
};

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function ms(fn: () => Promise<unknown>, runs = RUNS): Promise<string> {
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await time(fn));
  return `${median(xs).toFixed(0)} ms (median of ${runs})`;
}

async function must(p: Promise<{ code: number; stderr: string }>) {
  const r = await p;
  if (r.code !== 0) throw new Error(r.stderr);
  return r;
}

/** Logins the guest's sshd accepted, from its log (the fake tart's VM log holds sshd's output). */
async function handshakes(rig: Rig, ws: string): Promise<number> {
  const log = await Deno.readTextFile(join(rig.env.CAL_HOME, "isolation", "vms", ws, "vm.log"))
    .catch(() => "");
  return (log.match(/Accepted (publickey|password)/g) ?? []).length;
}

async function listWith50() {
  const rig = await Rig.create();
  for (let i = 0; i < 50; i++) {
    const name = `ws-${String(i).padStart(2, "0")}`;
    const dir = join(rig.env.CAL_HOME, "isolation", "vms", name);
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(
      join(dir, "vm.yaml"),
      `name: ${name}\nbase_image: ghcr.io/cirruslabs/macos-sequoia-base:latest\ncreated_at: "2026-11-26T10:00:00Z"\nprovider: tart\nvm: cal-${name}\nstatus: ready\nresources:\n  cpu: 4\n  memory: 8192\n  disk_size: 80\n`,
    );
  }
  const stubDir = join(rig.root, "stub");
  await Deno.mkdir(stubDir);
  await Deno.writeTextFile(join(stubDir, "tart"), "#!/bin/sh\nprintf '[\\n\\n]\\n'\n", {
    mode: 0o755,
  });
  const stubEnv = { PATH: `${stubDir}:${Deno.env.get("PATH")}` };
  const check = await rig.vm(["list", "--json"], { env: stubEnv });
  if (check.records.length !== 50) {
    throw new Error(`expected 50 records, got ${check.records.length}`);
  }
  report(
    "cal-vm list --json, 50 workspaces, cal's own time (instant tart)",
    await ms(() => rig.vm(["list", "--json"], { env: stubEnv })),
  );
  report(
    "cal-vm list --json, 50 workspaces, with the fake tart",
    await ms(() => rig.vm(["list", "--json"])),
  );
  await rig.close();
}

async function tartRig() {
  const rig = await Rig.create();
  const ws = rig.name("bench");
  await must(rig.vm(["init", ws]));
  const calls = async () => (await rig.tartCalls()).length;

  let before = await calls();
  let hs = await handshakes(rig, ws);
  const startMs = await time(() => must(rig.vm(["start", ws])));
  report("start: time on the rig", `${startMs.toFixed(0)} ms`);
  report("start: tart calls", String((await calls()) - before));
  report(
    "start: SSH handshakes (incl. the first-contact key install)",
    String((await handshakes(rig, ws)) - hs),
  );

  before = await calls();
  hs = await handshakes(rig, ws);
  await must(rig.vm(["status", ws, "--json"]));
  report("status: tart calls", String((await calls()) - before));
  report("status: SSH handshakes", String((await handshakes(rig, ws)) - hs));

  // exec vs plain ssh, both over the workspace's (warm) ControlMaster, and ssh without it.
  const cfg = join(rig.env.CAL_HOME, "isolation", "vms", ws, "ssh", "config");
  const ssh = (extra: string[]) =>
    new Deno.Command("ssh", { args: ["-F", cfg, ...extra, `cal-${ws}`, "true"] }).output();
  await must(rig.vm(["exec", ws, "--", "true"]));
  report("cal-vm exec ws -- true", await ms(() => must(rig.vm(["exec", ws, "--", "true"]))));
  report("plain ssh true (shared ControlMaster)", await ms(() => ssh([])));
  report(
    "plain ssh true (new connection each time)",
    await ms(() => ssh(["-o", "ControlPath=none"])),
  );
  hs = await handshakes(rig, ws);
  for (let i = 0; i < 5; i++) await must(rig.vm(["exec", ws, "--", "true"]));
  report("SSH handshakes for 5 cal-vm exec in a row", String((await handshakes(rig, ws)) - hs));

  before = await calls();
  const createMs = await time(() => must(rig.snap(["create", ws, "--name", "b1"])));
  report("snapshot create (running workspace): time", `${createMs.toFixed(0)} ms`);
  report("snapshot create: tart calls", String((await calls()) - before));
  before = await calls();
  const restoreMs = await time(() => must(rig.snap(["restore", ws, "--name", "b1", "--force"])));
  report("snapshot restore (running workspace): time", `${restoreMs.toFixed(0)} ms`);
  report("snapshot restore: tart calls", String((await calls()) - before));
  await must(rig.vm(["stop", ws]));
  before = await calls();
  const restoreStopped = await time(() =>
    must(rig.snap(["restore", ws, "--name", "b1", "--force"]))
  );
  report("snapshot restore (stopped workspace): time", `${restoreStopped.toFixed(0)} ms`);
  report("snapshot restore (stopped): tart calls", String((await calls()) - before));
  await rig.close();
}

async function sandbox() {
  if (Deno.build.os !== "linux") return;
  const rig = await Rig.create("", "sandbox");
  const ws = rig.name("bench-sandbox");
  report(
    "sandbox: create (init)",
    `${(await time(() => must(rig.vm(["init", ws])))).toFixed(0)} ms`,
  );
  report(
    "sandbox: start to SSH-ready",
    `${(await time(() => must(rig.vm(["start", ws])))).toFixed(0)} ms`,
  );
  await must(rig.vm(["ssh", ws, "head -c 50000000 /dev/urandom > ~/blob"]));
  report(
    "sandbox: snapshot create (50 MB home, running)",
    `${(await time(() => must(rig.snap(["create", ws, "--name", "s1"])))).toFixed(0)} ms`,
  );
  report(
    "sandbox: snapshot restore (running)",
    `${
      (await time(() => must(rig.snap(["restore", ws, "--name", "s1", "--force"])))).toFixed(0)
    } ms`,
  );
  await rig.close();
}

await getDenoDir();
console.error(`cal bench (${REPO})`);
await listWith50();
await proxyBench(report);
await brokerBench(report);
await tartRig();
await sandbox();
const width = Math.max(...rows.map(([w]) => w.length));
console.log("\n" + rows.map(([w, v]) => `${w.padEnd(width)}  ${v}`).join("\n"));
