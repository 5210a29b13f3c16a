import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CompiledPolicy,
  type NetworkMode,
  parsePattern,
  type Policy,
} from "../lib/network/policy.ts";
import { entryProblem, githubHosts, REGISTRIES } from "../lib/network/presets.ts";
import { effectivePolicy } from "../lib/network/settings.ts";
import { ConfigFile, layer } from "../lib/config.ts";
import { InvalidFile, parseYaml } from "../lib/yaml.ts";

const rules = (ps: string[], source = "test") => ps.map((pattern) => ({ pattern, source }));
const policy = (mode: NetworkMode, allow: string[], deny: string[] = []) =>
  new CompiledPolicy({ mode, allow: rules(allow), deny: rules(deny) });
const ok = (p: CompiledPolicy, host: string, port = 443) => p.decide(host, port).allowed;

describe("network policy: patterns", () => {
  it("matches a name exactly, case and a trailing dot aside", () => {
    const p = policy("allowlist", ["example.com"]);
    assert.ok(ok(p, "example.com"));
    assert.ok(ok(p, "EXAMPLE.com."));
    assert.ok(!ok(p, "www.example.com"), "a plain name does not cover subdomains");
    assert.ok(!ok(p, "example.com.evil.net"));
    assert.ok(!ok(p, "notexample.com"));
  });

  it("*.domain matches strict subdomains only", () => {
    const p = policy("allowlist", ["*.example.com"]);
    assert.ok(ok(p, "a.example.com"));
    assert.ok(ok(p, "a.b.example.com"));
    assert.ok(!ok(p, "example.com"));
    assert.ok(!ok(p, "evilexample.com"));
  });

  it("a :port limits a rule to that port; no port means every port", () => {
    const p = policy("allowlist", ["github.com:22", "example.com"]);
    assert.ok(ok(p, "github.com", 22));
    assert.ok(!ok(p, "github.com", 443));
    assert.ok(ok(p, "example.com", 8080));
  });

  it("IP literals and CIDRs match addresses, whatever their spelling", () => {
    const p = policy("allowlist", [
      "10.1.2.3",
      "192.168.0.0/16:5432",
      "[fd00::1]:443",
      "fe80::/10",
    ]);
    assert.ok(ok(p, "10.1.2.3", 80));
    assert.ok(ok(p, "0x0a.1.2.3", 80), "hex octets mean the same address");
    assert.ok(ok(p, "::ffff:10.1.2.3", 80), "an IPv4-mapped spelling means the same address");
    assert.ok(ok(p, "192.168.7.9", 5432));
    assert.ok(!ok(p, "192.168.7.9", 22));
    assert.ok(ok(p, "[fd00::1]", 443));
    assert.ok(ok(p, "fe80::5", 1));
    assert.ok(!ok(p, "10.1.2.4", 80));
  });

  it("a name rule never matches an address, nor an address rule a name", () => {
    assert.ok(!ok(policy("allowlist", ["*.0.0.1"]), "127.0.0.1", 80), "a wildcard is for names");
    const p = policy("allowlist", ["127.0.0.1"]);
    assert.ok(!ok(p, "localhost", 80), "allowing an address does not allow a name for it");
    assert.ok(ok(p, "127.1", 80), "127.1 is 127.0.0.1");
  });

  it("refuses over-broad and malformed patterns, with a reason", () => {
    for (
      const bad of [
        "*",
        "*.com",
        "http://example.com",
        "example.com/path",
        "a b",
        "10.0.0.0/33",
        "example.com:0",
        "fd00::/8:443",
        "",
      ]
    ) {
      assert.equal(typeof parsePattern(bad), "string", bad);
      assert.ok(entryProblem(bad), bad);
    }
    for (
      const good of [
        "example.com",
        "*.example.com",
        "x.example.com:8443",
        "10.0.0.0/8",
        "[::1]:22",
        "@npm",
        "@registries",
      ]
    ) {
      assert.equal(entryProblem(good), undefined, good);
    }
    assert.match(entryProblem("@nope")!, /unknown preset.*@npm/);
  });
});

describe("network policy: decisions", () => {
  it("deny wins over allow", () => {
    const p = policy("allowlist", ["*.example.com"], ["secret.example.com"]);
    assert.ok(ok(p, "public.example.com"));
    const d = p.decide("secret.example.com", 443);
    assert.equal(d.allowed, false);
    assert.equal(d.rule, "secret.example.com");
    assert.equal(d.reason, "on the deny list");
  });

  it("deny wins in open mode too, and by address", () => {
    const p = policy("open", [], ["bad.example.net", "203.0.113.0/24"]);
    assert.ok(ok(p, "anything.example.org"));
    assert.equal(p.decide("anything.example.org", 443).rule, "mode:open");
    assert.ok(!ok(p, "bad.example.net"));
    assert.ok(!ok(p, "203.0.113.9"));
  });

  it("allowlist refuses what no rule names, saying which rule decided", () => {
    const p = policy("allowlist", ["example.com"]);
    assert.deepEqual(p.decide("other.org", 443), {
      allowed: false,
      rule: "not-allowed",
      reason: "not on the allow list",
    });
    assert.deepEqual(p.decide("example.com", 443), {
      allowed: true,
      rule: "example.com",
      source: "test",
    });
  });

  it("none refuses everything, even what is allowed", () => {
    const p = policy("none", ["example.com"]);
    assert.equal(p.decide("example.com", 443).rule, "mode:none");
    assert.ok(!ok(p, "example.com"));
  });

  it("open does not reach this host's names unless they are allowed by name", () => {
    assert.equal(policy("open", []).decide("localhost", 80).rule, "host-local");
    assert.equal(policy("open", []).decide("db.localhost", 80).rule, "host-local");
    assert.ok(ok(policy("open", ["localhost:8080"]), "localhost", 8080));
  });

  it("refuses a host that is not a host", () => {
    const p = policy("open", []);
    for (const bad of ["", "a b", "evil.com%x", "x".repeat(300), "a\x1b]52;c;x\x07"]) {
      assert.equal(p.decide(bad, 443).rule, "bad-host", JSON.stringify(bad));
    }
  });
});

describe("network policy: presets and layers", () => {
  const ctx = { agentHosts: ["api.anthropic.com"], githubHost: "github.com" };

  it("every workspace starts with its agent, GitHub and the registries", () => {
    const pol: Policy = effectivePolicy({}, { allow: [], deny: [] }, ctx);
    const p = new CompiledPolicy(pol);
    assert.equal(pol.mode, "allowlist", "allowlist is the default");
    for (
      const host of [
        "api.anthropic.com",
        "github.com",
        "api.github.com",
        "registry.npmjs.org",
        "pypi.org",
        "files.pythonhosted.org",
        "index.crates.io",
        "proxy.golang.org",
        "repo1.maven.org",
        "cdn.cocoapods.org",
        "formulae.brew.sh",
        "download.developer.apple.com",
        "deb.debian.org",
        "objects.githubusercontent.com",
      ]
    ) {
      assert.ok(ok(p, host), host);
    }
    assert.ok(!ok(p, "example.com"));
    const npm = p.decide("registry.npmjs.org", 443);
    assert.equal(npm.source, "default @npm", "the log says which preset allowed it");
    assert.equal(p.decide("api.anthropic.com", 443).source, "default @agent");
  });

  it("a GitHub Enterprise host replaces github.com in @github", () => {
    assert.deepEqual(githubHosts("ghe.example.com"), ["ghe.example.com", "*.ghe.example.com"]);
    const p = new CompiledPolicy(
      effectivePolicy({}, { allow: [], deny: [] }, {
        agentHosts: [],
        githubHost: "ghe.example.com",
      }),
    );
    assert.ok(ok(p, "api.ghe.example.com"));
    assert.ok(!ok(p, "github.com"));
  });

  it("config and workspace rules add up; a deny from either wins over every allow", () => {
    const pol = effectivePolicy(
      { mode: "allowlist", allow: ["intranet.example.com"], deny: ["@cocoapods"] },
      { allow: ["*.corp.example"], deny: ["pypi.org"] },
      ctx,
    );
    const p = new CompiledPolicy(pol);
    assert.ok(ok(p, "intranet.example.com"));
    assert.equal(p.decide("a.corp.example", 443).source, "workspace");
    assert.ok(!ok(p, "cdn.cocoapods.org"), "a preset can be denied by name");
    assert.equal(p.decide("cdn.cocoapods.org", 443).source, "config @cocoapods");
    assert.ok(!ok(p, "pypi.org"));
  });

  it("the workspace's mode wins over the config's", () => {
    assert.equal(effectivePolicy({ mode: "none" }, { allow: [], deny: [] }, ctx).mode, "none");
    assert.equal(
      effectivePolicy({ mode: "none" }, { mode: "open", allow: [], deny: [] }, ctx).mode,
      "open",
    );
  });

  it("environment hosts (the manifests' hook) join @registries", () => {
    const p = new CompiledPolicy(
      effectivePolicy({}, { allow: [], deny: [] }, {
        ...ctx,
        environmentHosts: ["dl.example.dev"],
      }),
    );
    assert.ok(ok(p, "dl.example.dev"));
  });

  it("each registry preset has hosts that are valid patterns", () => {
    for (const [name, preset] of Object.entries(REGISTRIES)) {
      assert.ok(preset.hosts.length, name);
      for (const h of preset.hosts) assert.equal(entryProblem(h), undefined, `${name}: ${h}`);
    }
  });
});

describe("config: isolation.network", () => {
  it("takes mode, allow and deny, defaulting to allowlist", () => {
    const noProxy = ["localhost", "127.0.0.1", "::1"];
    assert.deepEqual(layer(undefined).network, {
      mode: "allowlist",
      allow: [],
      deny: [],
      no_proxy: noProxy,
    });
    const file = parseYaml(
      "isolation:\n  network:\n    mode: open\n    allow: [example.com, '@npm']\n    deny: ['10.0.0.0/8']\n",
      "config.yaml",
      ConfigFile,
    );
    assert.deepEqual(layer(file).network, {
      mode: "open",
      allow: ["example.com", "@npm"],
      deny: ["10.0.0.0/8"],
      no_proxy: noProxy,
    });
  });

  it("refuses a bad pattern, a bad mode and unknown keys at their line", () => {
    for (
      const [text, what] of [
        ["isolation:\n  network:\n    allow: ['*']\n", /allow/],
        ["isolation:\n  network:\n    mode: closed\n", /mode/],
        ["isolation:\n  network:\n    allowed: [a.com]\n", /allowed/],
        ["isolation:\n  network:\n    deny: ['@nope']\n", /unknown preset/],
      ] as const
    ) {
      assert.throws(() => parseYaml(text, "config.yaml", ConfigFile), (e: unknown) => {
        assert.ok(e instanceof InvalidFile);
        assert.match(String((e as Error).message), what);
        return true;
      });
    }
  });
});
