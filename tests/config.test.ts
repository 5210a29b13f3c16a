import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConfigFile, layer, resolveVmSettings } from "../lib/config.ts";
import { InvalidFile, parseYaml } from "../lib/yaml.ts";
import { VmFile } from "../lib/store.ts";

describe("global configuration", () => {
  it("has the spec's defaults", () => {
    const c = layer(undefined);
    assert.equal(c.vm.cpu, 4);
    assert.equal(c.vm.memory, 8192);
    assert.equal(c.vm.disk_size, 80);
    assert.equal(c.vm.base_image, "ghcr.io/cirruslabs/macos-sequoia-base:latest");
    assert.equal(c.github.default_branch_prefix, "agent/");
    assert.equal(c.output.sync_dir, "~/cal-output");
    assert.ok(c.output.watch_patterns.includes("*.xcarchive"));
    assert.equal(c.snapshots.max_auto_snapshots, 3);
    assert.equal(c.snapshots.snapshot_prefix, "session");
  });

  it("layers defaults < file < template < flags", () => {
    const file = parseYaml(
      "version: 1\nisolation:\n  defaults:\n    vm:\n      cpu: 6\n      memory: 12288\n",
      "config.yaml",
      ConfigFile,
    );
    const c = layer(file);
    assert.equal(c.vm.cpu, 6);
    assert.equal(c.vm.disk_size, 80, "untouched keys keep their defaults");
    const s = resolveVmSettings(c, { memory: 16384, disk_size: 100 }, { disk_size: 150 });
    assert.deepEqual([s.cpu, s.memory, s.disk_size], [6, 16384, 150]);
  });

  it("points at the line and column of a typo and lists the allowed keys", () => {
    const text = "isolation:\n  defaults:\n    vm:\n      cpus: 6\n";
    assert.throws(() => parseYaml(text, "/h/.cal/config.yaml", ConfigFile), (e) => {
      assert.ok(e instanceof InvalidFile);
      assert.equal(e.exit, 2);
      assert.match(
        e.message,
        /^\/h\/\.cal\/config\.yaml:4:7: isolation\.defaults\.vm: unknown key "cpus"/,
      );
      assert.match(e.message, /allowed: provider, cpu, memory/);
      return true;
    });
  });

  it("reports wrong types and broken YAML with positions", () => {
    assert.throws(
      () =>
        parseYaml("isolation:\n  snapshots:\n    max_auto_snapshots: many\n", "c.yaml", ConfigFile),
      /c\.yaml:3:25: isolation\.snapshots\.max_auto_snapshots: .*expected number/,
    );
    assert.throws(() => parseYaml("a: [1, 2\nb: 3\n", "c.yaml", ConfigFile), /c\.yaml:\d+:\d+: /);
    assert.throws(
      () => parseYaml("version: 1\nversion: 1\n", "c.yaml", ConfigFile),
      /c\.yaml:2:1: /,
    );
  });

  it("reads the spec's vm.yaml example", () => {
    const text = `
name: "my-ios-workspace"
base_image: "ghcr.io/cirruslabs/macos-sequoia-xcode:16"
created_at: "2026-01-17T10:00:00Z"
resources:
  cpu: 6
  memory: 12288
  disk_size: 150
github:
  authenticated: true
  repos:
    - name: "my-ios-app"
      url: "github.com/owner/my-ios-app"
      branch: "agent/refactor-auth"
      cloned_at: "2026-01-17T10:30:00Z"
agent: "claude-code"
agent_config:
  claude-code:
    mode: "acceptEdits"
    allowed_tools: ["Bash(git:*)"]
  opencode:
    auto_approve: ["read", "write"]
snapshots:
  - name: "clean-install"
    created_at: "2026-01-17T10:30:00Z"
`;
    const vm = parseYaml(text, "vm.yaml", VmFile);
    assert.equal(vm.resources.cpu, 6);
    assert.equal(vm.provider, "tart");
    assert.equal(vm.status, "ready");
    assert.equal(vm.github?.repos?.[0].branch, "agent/refactor-auth");
  });
});

describe("vm.yaml names that end up in paths", () => {
  it("refuses path-like snapshot, machine and repository names, at the line", () => {
    const base = "name: ws\nbase_image: img\ncreated_at: now\n" +
      "resources: { cpu: 1, memory: 1024, disk_size: 10 }\n";
    for (
      const [extra, where] of [
        ["snapshots:\n  - { name: ../../../t/victim, created_at: now }\n", /snapshots\.0\.name/],
        ["snapshots:\n  - { name: ok, created_at: now, vm: ../x }\n", /snapshots\.0\.vm/],
        ["vm: /etc\n", /^vm\.yaml:5:\d+: vm:/],
        ["github:\n  repos:\n    - { name: .., url: u }\n", /github\.repos\.0\.name/],
      ] as const
    ) {
      assert.throws(() => parseYaml(base + extra, "vm.yaml", VmFile), (e: unknown) => {
        assert.ok(e instanceof InvalidFile, String(e));
        assert.match(e.message, where);
        return true;
      });
    }
    assert.equal(
      parseYaml(
        base + "snapshots:\n  - { name: session-2026-11-26-2356-2, created_at: now, " +
          "vm: cal-ws--session-2026-11-26-2356-2 }\n",
        "vm.yaml",
        VmFile,
      ).snapshots?.[0].name,
      "session-2026-11-26-2356-2",
    );
  });
});

describe("the global agents block", () => {
  it("takes each agent's own settings, under the workspace's agent_config", async () => {
    const { agentSettings } = await import("../lib/agents/manage.ts");
    const file = parseYaml(
      'agents:\n  claude-code:\n    mode: acceptEdits\n    allowed_tools: ["Bash(git:*)"]\n',
      "config.yaml",
      ConfigFile,
    );
    const config = layer(file);
    const vm = parseYaml(
      "name: ws\nbase_image: img\ncreated_at: now\n" +
        "resources: { cpu: 1, memory: 1024, disk_size: 10 }\n" +
        "agent_config:\n  claude-code: { mode: plan }\n",
      "vm.yaml",
      VmFile,
    );
    assert.deepEqual(agentSettings(vm, config, "claude-code"), {
      mode: "plan",
      allowed_tools: ["Bash(git:*)"],
    });
  });
});
