/**
 * The root helper's wire protocol, shared by {@linkcode HelperServer} and `HelperOps`.
 *
 * One request per connection on the helper's unix socket: the client writes one line of
 * JSON `{op, args, op_id}` and the helper answers one line, `{ok: true, result}` or
 * `{ok: false, error: {code, message, hint?}}`, then closes. Requests are limited to
 * {@linkcode MAX_HELPER_REQUEST_BYTES}. `op` is one of {@linkcode HELPER_OPS} (the
 * privileged part of `PrivilegedOps`) or `ping`.
 *
 * The ext4 operations are not here on purpose: they work on regular files the owner owns
 * and parse image content the owner controls (registry layers), so they run unprivileged
 * in the owner daemon instead of as root ({@linkcode OWNER_LOCAL_OPS}).
 *
 * @module
 */

import type { ErrorCode } from "../errors.ts";
import type { PrivilegedOpName } from "../privileged/privileged_ops.ts";
import * as s from "../schema.ts";

/** Largest request line the helper reads. */
export const MAX_HELPER_REQUEST_BYTES = 4 * 1024 * 1024;
/** Largest answer line a client reads. */
export const MAX_HELPER_RESPONSE_BYTES = 64 * 1024 * 1024;
/** Name of the helper's socket inside its runtime directory. */
export const HELPER_SOCKET_NAME = "helper.sock";
/** The one operation that is not a `PrivilegedOps` method: who is answering. */
export const HELPER_PING = "ping";

/** The `PrivilegedOps` methods the helper runs as root. */
export const HELPER_OPS = [
  "ensureBridge",
  "createTap",
  "deleteTap",
  "checkGuestNetwork",
  "listTaps",
  "addNat",
  "removeNat",
  "listNat",
  "guardTap",
  "unguardTap",
  "listGuards",
  "rootDiskStrategy",
  "createRootDisk",
  "releaseRootDisk",
  "listLoops",
  "detachLoop",
  "readProcFile",
  "signalVmm",
  "probeHost",
  "launchJailedFirecracker",
  "cleanupJailedFirecracker",
] as const satisfies readonly PrivilegedOpName[];

/** The `PrivilegedOps` methods the owner daemon runs itself, unprivileged. */
export const OWNER_LOCAL_OPS = [
  "createWorkDisk",
  "writeExt4",
  "applyExt4Ownership",
  "readExt4File",
  "dumpExt4",
  "checkExt4",
  "growExt4",
] as const satisfies readonly PrivilegedOpName[];

/** A method the helper serves. */
export type HelperOpName = (typeof HELPER_OPS)[number];

/** Whether `name` is served by the helper. */
export function isHelperOp(name: string): name is HelperOpName {
  return (HELPER_OPS as readonly string[]).includes(name);
}

/** One request. `args` is validated per op by `parseOpArgs`. */
export const helperRequestSchema = s.object({
  op: s.string({
    min: 1,
    max: 64,
    pattern: /^[A-Za-z][A-Za-z0-9]{0,63}$/,
    expected: "an operation name",
  }),
  args: s.optional(s.unknownValue()),
  op_id: s.string({ pattern: /^[A-Za-z0-9._:-]{1,64}$/, expected: "an op id" }),
});

/** One request, parsed. */
export type HelperRequest = s.Infer<typeof helperRequestSchema>;

/** The error half of an answer. */
export interface HelperErrorBody {
  code: ErrorCode;
  message: string;
  hint?: string;
}

/** One answer. */
export type HelperResponse =
  | { ok: true; result: unknown }
  | { ok: false; error: HelperErrorBody };

/** The answer to `ping`. */
export interface HelperPing {
  pid: number;
  version: string;
  owner_uid: number;
}

const ERROR_CODES: readonly ErrorCode[] = [
  "invalid_argument",
  "not_found",
  "conflict",
  "failed_precondition",
  "permission_denied",
  "too_large",
  "unavailable",
  "cancelled",
  "timeout",
  "internal",
];

const okSchema = s.object({ ok: s.boolean(), result: s.optional(s.unknownValue()) });
const errorSchema = s.object({
  ok: s.boolean(),
  error: s.object({
    code: s.literal(...ERROR_CODES),
    message: s.string({ max: 64 * 1024 }),
    hint: s.optional(s.string({ max: 4096 })),
  }),
});

/**
 * Parses one answer line.
 *
 * @throws {SchemaError} or {SyntaxError} for a malformed answer.
 */
export function parseHelperResponse(text: string): HelperResponse {
  const value: unknown = JSON.parse(text);
  if ((value as { ok?: unknown } | null)?.ok === true) {
    return { ok: true, result: okSchema.parse(value).result };
  }
  return { ok: false, error: errorSchema.parse(value).error };
}
