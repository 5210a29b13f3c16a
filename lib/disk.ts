/** Disk space a folder really uses (allocated blocks: sparse and copy-on-write files count what they use). */

import { join } from "node:path";

export function allocatedBytes(path: string): number {
  let total = 0;
  const walk = (p: string) => {
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(p);
    } catch {
      return;
    }
    total += (st.blocks ?? 0) * 512;
    if (st.isDirectory) {
      try {
        for (const e of Deno.readDirSync(p)) walk(join(p, e.name));
      } catch { /* unreadable */ }
    }
  };
  walk(path);
  return total;
}
