/**
 * Wire API of the daemon itself: status and shutdown.
 *
 * @module
 */

import * as s from "../../host/schema.ts";
import { method } from "./protocol.ts";

/** Result of `daemon.status`. */
export type DaemonStatus = s.Infer<typeof daemonStatus.response>;

/** `daemon.status`: who is answering and what it holds; never blocks on other work. */
export const daemonStatus = method(
  "daemon.status",
  s.object({}),
  s.object({
    pid: s.number({ int: true }),
    version: s.string(),
    started_at: s.string(),
    uptime_ms: s.number(),
    socket: s.string(),
    dns_listen: s.string(),
    dns_listening: s.boolean(),
    state_dir: s.string(),
    operations_in_flight: s.number({ int: true, min: 0 }),
    counts: s.object({
      vms: s.number({ int: true, min: 0 }),
      vms_running: s.number({ int: true, min: 0 }),
      images: s.number({ int: true, min: 0 }),
      kernels: s.number({ int: true, min: 0 }),
    }),
  }),
);

/**
 * `daemon.shutdown`: exit once the reply is sent. Running VMs keep running. Refused with
 * `conflict` while other operations are in flight unless `force`.
 */
export const daemonShutdown = method(
  "daemon.shutdown",
  s.object({ force: s.optional(s.boolean()) }),
  s.object({ pid: s.number({ int: true }) }),
);

/** One row of `banger doctor`. */
export const doctorCheck = s.object({
  name: s.string(),
  status: s.literal("PASS", "WARN", "FAIL"),
  detail: s.string(),
  fix: s.optional(s.string()),
});
/** One row of `banger doctor`. */
export type DoctorCheck = s.Infer<typeof doctorCheck>;
/** The whole `banger doctor` report (computed in the CLI process, not over RPC). */
export interface DoctorReport {
  checks: DoctorCheck[];
}
