/**
 * The per-workspace certificate authority of cal's proxy, for TLS termination toward an agent's
 * own API hosts (where the proxy swaps a stand-in for the real key; see credentials.ts).
 *
 * Generated on the host, once per workspace: the private key stays in the workspace's folder
 * (`network-ca.key`, 0600, never in the guest); the guest is given only the certificate, in a
 * trust bundle (this CA, then the host's own roots, since SSL_CERT_FILE-style variables replace
 * a client's store) at `net/ca.pem`, which a sandbox sees read-only as /run/cal-net/ca.pem.
 */

import { join } from "node:path";
import {
  createMitmCA,
  generateCa,
  type MitmCA,
  validateCaPair,
} from "@anthropic-ai/sandbox-runtime/dist/sandbox/mitm-ca.js";
import { writeFileAtomic } from "../store.ts";

export const caFiles = (vmDir: string) => ({
  key: join(vmDir, "network-ca.key"),
  cert: join(vmDir, "network-ca.pem"),
});

/** The trust bundle's name in the folder the guest sees (`/run/cal-net/ca.pem` in a sandbox). */
export const BUNDLE_NAME = "ca.pem";

/** The host's own roots: its configured bundle, else the usual system places. */
function hostRoots(): string {
  const candidates = [
    Deno.env.get("SSL_CERT_FILE"),
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
  ];
  const extra = Deno.env.get("NODE_EXTRA_CA_CERTS");
  let text = "";
  for (const c of candidates) {
    if (!c) continue;
    try {
      text = Deno.readTextFileSync(c);
      break;
    } catch { /* next */ }
  }
  if (extra) {
    try {
      const more = Deno.readTextFileSync(extra);
      if (!text.includes(more.trim())) text += "\n" + more;
    } catch { /* not there */ }
  }
  return text;
}

/** The workspace's CA, made on first use; a damaged pair is replaced. */
export async function workspaceCa(vmDir: string): Promise<MitmCA> {
  const f = caFiles(vmDir);
  let certPem = "";
  let keyPem = "";
  try {
    certPem = await Deno.readTextFile(f.cert);
    keyPem = await Deno.readTextFile(f.key);
  } catch { /* none yet */ }
  if (!certPem || !keyPem || !validateCaPair(certPem, keyPem).ok) {
    const made = generateCa({ cn: "cal workspace proxy CA", validityDays: 825 });
    certPem = made.certPem;
    keyPem = made.keyPem;
    await writeFileAtomic(f.key, keyPem, 0o600);
    await writeFileAtomic(f.cert, certPem);
  }
  return createMitmCA({ caCertPem: certPem, caKeyPem: keyPem });
}

/** Writes the guest's trust bundle (this CA first, then the host's roots) into `dir`. */
export async function writeTrustBundle(dir: string, ca: MitmCA): Promise<string> {
  const path = join(dir, BUNDLE_NAME);
  await writeFileAtomic(path, ca.certPem.trim() + "\n" + hostRoots(), 0o644);
  return path;
}
