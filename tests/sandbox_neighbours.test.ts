/**
 * Sandbox workspaces are kept apart: from inside one (playing the attacker, as a hijacked agent
 * would), the other's sshd, though on the same host network, refuses every login (the image's
 * password, no key, a key the attacker made), and what each guest writes is owned on the host by
 * a uid of its own (as root: neither root's, nor 501, nor the other's).
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Rig, show } from "./rig_env.ts";

const linux = Deno.build.os === "linux";

describe("sandbox neighbours", { skip: !linux && "the sandbox provider needs Linux" }, () => {
  let rig: Rig;
  let attacker: string;
  let victim: string;
  let target: { host: string; port: number };
  before(async () => {
    rig = await Rig.create("", "sandbox");
    [attacker, victim] = [rig.name("attacker"), rig.name("victim")];
    // On the host's network (open), so the victim's sshd is reachable and must refuse by itself;
    // the default network (its own namespace) does not even reach it (the last test).
    for (const n of [attacker, victim]) {
      assert.equal(
        (await rig.vm(["init", n, "--provider", "sandbox", "--network", "open"])).code,
        0,
      );
      const r = await rig.vm(["start", n]);
      assert.equal(r.code, 0, show(r));
    }
    // Where cal itself reaches the victim; the attacker finds the same in /proc/net/tcp.
    const cfg = await Deno.readTextFile(
      join(rig.env.CAL_HOME, "isolation", "vms", victim, "ssh", "config"),
    );
    target = {
      host: cfg.match(/^\s*HostName (\S+)$/m)![1],
      port: Number(cfg.match(/^\s*Port (\d+)$/m)![1]),
    };
  });
  after(async () => await rig.close());

  /** Runs ssh from inside the attacker toward the victim's sshd, with these options. */
  const fromAttacker = (setup: string, options: string[]) =>
    rig.vm([
      "exec",
      attacker,
      "--",
      "sh",
      "-c",
      `${setup}; ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null ` +
      `-o ConnectTimeout=10 -o NumberOfPasswordPrompts=1 ${options.join(" ")} ` +
      `-p ${target.port} admin@${target.host} 'echo IN-THE-NEIGHBOUR' </dev/null 2>&1; ` +
      "echo exit=$?",
    ]);

  const refused = (r: Awaited<ReturnType<typeof fromAttacker>>, what: string) => {
    assert.equal(r.code, 0, show(r));
    assert.doesNotMatch(r.stdout, /IN-THE-NEIGHBOUR/, `${what} logged into the neighbour`);
    // The neighbour's sshd answered and said no (not an unreachable port that proves nothing).
    assert.match(r.stdout, /Permission denied/, `${what}: ${r.stdout}`);
    assert.match(r.stdout, /exit=255/);
  };

  it("the neighbour's sshd refuses every login: the image's password, no key, the attacker's key", async () => {
    const askpass = "printf '#!/bin/sh\\necho admin\\n' > /tmp/pw && chmod +x /tmp/pw && " +
      "export SSH_ASKPASS=/tmp/pw SSH_ASKPASS_REQUIRE=force DISPLAY=:0";
    refused(
      await fromAttacker(askpass, [
        "-o PreferredAuthentications=password,keyboard-interactive",
        "-o PubkeyAuthentication=no",
      ]),
      "the password admin/admin",
    );
    refused(
      await fromAttacker("true", [
        "-o BatchMode=yes",
        "-o PubkeyAuthentication=no",
        "-o PasswordAuthentication=no",
        "-o KbdInteractiveAuthentication=no",
      ]),
      "no key",
    );
    refused(
      await fromAttacker("rm -f /tmp/k /tmp/k.pub; ssh-keygen -q -t ed25519 -N '' -f /tmp/k", [
        "-o BatchMode=yes",
        "-o IdentitiesOnly=yes",
        "-i /tmp/k",
      ]),
      "a key made in the attacker",
    );
  });

  it("what each guest writes is owned by a host uid of its own", {
    skip: Deno.uid() !== 0 && "rootless, every guest is the caller",
  }, async () => {
    const owners: number[] = [];
    for (const n of [attacker, victim]) {
      const r = await rig.vm(["ssh", n, "echo mine > ~/owned.txt && mkdir -p ~/d && id -u"]);
      assert.equal(r.code, 0, show(r));
      assert.equal(r.stdout.trim(), "501", "inside, the guest is still admin (501)");
      const home = join(rig.env.CAL_HOME, "isolation", "sandboxes", `cal-${n}`, "guest", "home");
      const file = await Deno.lstat(join(home, "owned.txt"));
      const dir = await Deno.lstat(join(home, "d"));
      assert.equal(dir.uid, file.uid);
      assert.equal(file.gid, file.uid, "and a group of its own");
      owners.push(file.uid!);
    }
    for (const uid of owners) {
      assert.ok(![0, 501].includes(uid), `a guest's files are owned by ${uid}`);
    }
    assert.notEqual(owners[0], owners[1], "two guests share a host uid");
  });

  it("with the default network, the neighbour's sshd cannot even be reached", async () => {
    const confined = rig.name("confined");
    assert.equal((await rig.vm(["init", confined, "--provider", "sandbox"])).code, 0);
    const started = await rig.vm(["start", confined]);
    assert.equal(started.code, 0, show(started));
    const r = await rig.vm([
      "exec",
      confined,
      "--",
      "bash",
      "-c",
      `echo RAN; exec 3<>/dev/tcp/${target.host}/${target.port} && echo REACHED; true`,
    ]);
    assert.match(r.stdout, /^RAN$/m, show(r));
    assert.doesNotMatch(r.stdout, /REACHED/, "a confined guest reached its neighbour's sshd");
  });
});
