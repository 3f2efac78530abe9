/**
 * `banger doctor` checks (placeholder filled in below).
 *
 * @module
 */
import type { Layout } from "../host/layout.ts";
import type { DoctorReport } from "./api.ts";

/** Runs every host check. */
export function runDoctor(_layout: Layout, _options: { home: string }): Promise<DoctorReport> {
  return Promise.resolve({ checks: [] });
}
