/** The providers cal knows, by name. */

import { usageError } from "../errors.ts";
import type { Provider } from "../provider.ts";
import { SandboxProvider } from "./sandbox.ts";
import { TartProvider } from "./tart.ts";

export const PROVIDERS = ["tart", "sandbox"] as const;

const instances = new Map<string, Provider>();

/** The (per-process) provider instance for `name`; unknown names are usage errors. */
export function getProvider(name: string): Provider {
  let p = instances.get(name);
  if (p) return p;
  if (name === "tart") p = new TartProvider();
  else if (name === "sandbox") p = new SandboxProvider();
  else {
    throw usageError(
      `Unknown provider "${name}".`,
      `Use one of: ${PROVIDERS.join(", ")}.`,
    );
  }
  instances.set(name, p);
  return p;
}
