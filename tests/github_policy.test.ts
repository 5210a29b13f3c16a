import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConfigFile, layer } from "../lib/config.ts";
import { isProtected } from "../lib/github/repos.ts";
import { parseYaml } from "../lib/yaml.ts";

describe("protected branches", () => {
  it("main, master and develop stay protected when the config lists its own", () => {
    const file = parseYaml(
      "isolation:\n  defaults:\n    github:\n      protected_branches: [release]\n",
      "config.yaml",
      ConfigFile,
    );
    const config = layer(file);
    for (const b of ["main", "master", "develop", "release", "trunk"]) {
      assert.equal(isProtected(b, config, "trunk"), true, b);
    }
    assert.equal(isProtected("agent/feature", config, "trunk"), false);
  });
});
