/**
 * The daemon's wire API: every RPC method with its request and response schema. The CLI
 * imports this file (and the protocol it re-exports) and nothing else from `daemon/`.
 *
 * @module
 */

import * as s from "../host/schema.ts";
import { method } from "./rpc_protocol.ts";

export * from "./rpc_protocol.ts";
export { formatSize, formatSizeShort, parseSize } from "./size.ts";

const empty = s.object({});

/** `daemon.status`: who is answering and what it holds. */
export const daemonStatusResult = s.object({
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
});
/** Result of `daemon.status`. */
export type DaemonStatus = s.Infer<typeof daemonStatusResult>;

/** One row of `banger doctor`. */
export const doctorCheck = s.object({
  name: s.string(),
  status: s.literal("PASS", "WARN", "FAIL"),
  detail: s.string(),
  fix: s.optional(s.string()),
});
/** One row of `banger doctor`. */
export type DoctorCheck = s.Infer<typeof doctorCheck>;
/** The whole `banger doctor` report. */
export interface DoctorReport {
  checks: DoctorCheck[];
}

/** Methods about the daemon itself. */
export const DAEMON_METHODS = {
  /** Who is answering; never blocks on other work. */
  "daemon.status": method(empty, daemonStatusResult),
  /**
   * Asks the daemon to exit once the reply is sent. Running VMs keep running.
   * Refused with `conflict` while other operations are in flight unless `force`.
   */
  "daemon.shutdown": method(
    s.object({ force: s.optional(s.boolean()) }),
    s.object({ pid: s.number({ int: true }) }),
  ),
};

/** Every method the daemon serves. */
export const METHODS = {
  ...DAEMON_METHODS,
};

/** Names of all methods. */
export type MethodName = keyof typeof METHODS;
