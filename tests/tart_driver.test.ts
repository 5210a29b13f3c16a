import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { softnetArgs, tartError } from "../lib/providers/tart.ts";
import { decide, deniesByDefault, softnetRules } from "./faketart/softnet.ts";

const r = (code: number, stderr: string) => ({ code, stderr, stdout: "", timedOut: false });

describe("Tart's errors mapped to cal's exit codes", () => {
  it("maps a missing VM to not found (3)", () => {
    const e = tartError(["get", "x"], r(2, 'the specified VM "x" does not exist\n'));
    assert.equal(e.exit, 3);
    // `tart run missing` takes the other error path, with an "Error: " prefix and exit 1.
    const e2 = tartError(["run", "x"], r(1, 'Error: the specified VM "x" does not exist\n'));
    assert.equal(e2.exit, 3);
    assert.doesNotMatch(e2.message, /Error: /);
  });

  it("maps running/not running to wrong state (4)", () => {
    assert.equal(tartError(["delete", "x"], r(1, 'VM "x" is running\n')).exit, 4);
    assert.equal(tartError(["stop", "x"], r(2, 'VM "x" is not running\n')).exit, 4);
    assert.equal(tartError(["run", "x"], r(2, 'VM "x" is already running!\n')).exit, 4);
  });

  it("maps the two-VM limit to wrong state with the next step", () => {
    const e = tartError(
      ["run", "x"],
      r(1, "The number of VMs exceeds the system limit (other running VMs: a, b)\n"),
    );
    assert.equal(e.exit, 4);
    assert.equal(e.code, "vm-limit");
    assert.match(e.hint ?? "", /cal-vm stop/);
  });

  it("treats usage errors (64) as a bug in cal, and resource errors as bad input", () => {
    const e = tartError(["list"], r(64, "Error: Unknown option '--foo'\nUsage: tart list\n"));
    assert.equal(e.exit, 1);
    assert.match(e.hint ?? "", /bug in cal/);
    const small = tartError(
      ["set", "x"],
      r(1, "new disk size of 40 GB should be larger than the current disk size of 50 GB\n"),
    );
    assert.equal(small.exit, 2);
    const cpu = tartError(
      ["set", "x"],
      r(
        1,
        "Error: LessThanMinimalResourcesError: VM should have 4 CPU cores at minimum (requested 2)\n",
      ),
    );
    assert.equal(cpu.exit, 2);
    assert.match(cpu.message, /4 CPU cores at minimum/);
  });
});

describe("Softnet's flags for a closed network", () => {
  it("allow only the gateway's /32 and block everything else (longest prefix wins)", () => {
    assert.deepEqual(softnetArgs("192.168.64.1"), [
      "--net-softnet",
      "--net-softnet-allow=192.168.64.1/32",
      "--net-softnet-block=0.0.0.0/0",
    ]);
  });
});

describe("the fake tart's Softnet rules, decided as Softnet does", () => {
  const rules = (allow?: string, block?: string) =>
    softnetRules(
      {
        ...(allow ? { "--net-softnet-allow": [allow] } : {}),
        ...(block ? { "--net-softnet-block": [block] } : {}),
      },
      new Set(),
      "127.0.64.1",
    );

  it("the longest prefix wins, and a tie blocks", () => {
    const s = rules("192.168.64.1/32,10.0.0.0/8", "0.0.0.0/0,10.1.0.0/16,10.0.0.0/8");
    assert.equal(decide(s, "192.168.64.1"), "allow");
    assert.equal(decide(s, "192.168.64.2"), "block");
    assert.equal(decide(s, "10.2.3.4"), "block"); // 10.0.0.0/8 both allowed and blocked
    assert.equal(decide(s, "8.8.8.8"), "block");
    assert.ok(deniesByDefault(s));
    assert.ok(!deniesByDefault(rules("0.0.0.0/0", "0.0.0.0/0")));
    assert.equal(decide(rules("@host"), "127.0.64.1"), "allow");
  });

  it("a plain address is no CIDR: softnet refuses it", () => {
    assert.throws(() => rules(undefined, "192.168.64.1"), /invalid value '192\.168\.64\.1'/);
    assert.throws(() => rules("10.0.0.0/33"), /invalid IP address syntax/);
  });
});
