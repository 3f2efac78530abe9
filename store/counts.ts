/**
 * Row counts for `daemon status`.
 *
 * @module
 */

import type { Store } from "./db.ts";

/** How many VMs (and running VMs), images and kernels the store holds. */
export interface RowCounts {
  vms: number;
  vms_running: number;
  images: number;
  kernels: number;
}

/** Counts rows in one read. */
export function countRows(store: Store): RowCounts {
  return store.read((db) => {
    const row = db.prepare(`SELECT
      (SELECT COUNT(*) FROM vms) AS vms,
      (SELECT COUNT(*) FROM vms WHERE status = 'running') AS vms_running,
      (SELECT COUNT(*) FROM images) AS images,
      (SELECT COUNT(*) FROM kernels) AS kernels`).get() as unknown as RowCounts;
    return { ...row };
  });
}
