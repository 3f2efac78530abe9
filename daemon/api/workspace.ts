/**
 * Wire API of what runs inside guests: workspaces (prepare, export), commands in the
 * workspace (`vm exec`), the guest's listening ports and its agent's health.
 *
 * Allowed VM statuses: prepare (except `dry_run`), export, exec, ports and health need a
 * running VM.
 *
 * @module
 */

import * as s from "../../host/schema.ts";
import { method } from "./protocol.ts";
import { vmView } from "./vm.ts";

const ref = s.string({ min: 1, max: 128, expected: "a VM name or id prefix" });
const guestPath = s.string({ min: 1, max: 4096, pattern: /^\//, expected: "an absolute path" });
const mode = s.literal("overlay", "full_copy");

/** What `vm.workspace.prepare` sends, or would send with `dry_run`. */
export const prepareResult = s.object({
  dry_run: s.boolean(),
  /** The VM, unless this was a dry run without one. */
  vm: s.optional(s.string()),
  /** The repository root on the host. */
  host_path: s.string(),
  guest_path: s.string(),
  mode,
  branch: s.string(),
  readonly: s.boolean(),
  include_untracked: s.boolean(),
  file_count: s.number({ int: true, min: 0 }),
  bytes: s.number({ int: true, min: 0 }),
  /** Every file sent, relative to the root (dry runs only). */
  files: s.optional(s.array(s.string())),
  /** The base commit recorded (not for dry runs). */
  base_commit: s.optional(s.string()),
  host_head: s.optional(s.string()),
});
/** Result of `vm.workspace.prepare`. */
export type PrepareResult = s.Infer<typeof prepareResult>;

/**
 * `vm.workspace.prepare` (streams stages): copy the git repository at `path` (absolute,
 * on the daemon's host) into a running VM and record it. With `dry_run`, only list what
 * would be sent; `ref` may then be omitted.
 */
export const vmWorkspacePrepare = method(
  "vm.workspace.prepare",
  s.object({
    ref: s.optional(ref),
    path: s.string({ min: 1, max: 4096, pattern: /^\//, expected: "an absolute path" }),
    include_untracked: s.optional(s.boolean()),
    dry_run: s.optional(s.boolean()),
    readonly: s.optional(s.boolean()),
    mode: s.optional(mode),
    branch: s.optional(s.string({ min: 1, max: 255 })),
    from: s.optional(s.string({ min: 1, max: 255 })),
    guest_path: s.optional(guestPath),
  }),
  prepareResult,
  { stream: true },
);

/** `vm.workspace.export`: the guest's changes since the base commit, as a binary patch. */
export const vmWorkspaceExport = method(
  "vm.workspace.export",
  s.object({
    ref,
    base_commit: s.optional(s.string({ min: 4, max: 255 })),
    guest_path: s.optional(guestPath),
  }),
  s.object({
    /** The `git diff --binary` output, base64 (patches need not be UTF-8). */
    patch_base64: s.string(),
    bytes: s.number({ int: true, min: 0 }),
    base_commit: s.string(),
    guest_path: s.string(),
  }),
);

/**
 * `vm.exec` (streams stages when `auto_prepare`): the ssh command line running `command`
 * in the recorded workspace (or `guest_path`, else `/root`); without `command`, a login
 * shell there. Warns when the host HEAD moved since the prepare.
 */
export const vmExec = method(
  "vm.exec",
  s.object({
    ref,
    command: s.optional(s.array(s.string(), { max: 4096 })),
    guest_path: s.optional(guestPath),
    auto_prepare: s.optional(s.boolean()),
    tty: s.optional(s.boolean()),
  }),
  s.object({
    argv: s.array(s.string()),
    vm: vmView,
    warnings: s.array(s.string()),
    guest_path: s.string(),
  }),
  { stream: true },
);

/** One listening socket in a guest. */
export const portView = s.object({
  proto: s.string(),
  /** The guest address it is bound to (`0.0.0.0`, `*`, `127.0.0.1`, …). */
  address: s.string(),
  port: s.number({ int: true, min: 0, max: 65535 }),
  /** `<name>.vm:<port>`. */
  endpoint: s.string(),
  processes: s.array(s.string()),
  /** Bound to loopback only: not reachable from the host. */
  local_only: s.boolean(),
  /** `http://<name>.vm:<port>/` when the port answered an HTTP request. */
  url: s.optional(s.string()),
});
/** A listening socket as the CLI sees it. */
export type PortView = s.Infer<typeof portView>;

/** `vm.ports`: listening ports of running VMs, from their guest agents. */
export const vmPorts = method(
  "vm.ports",
  s.object({ refs: s.array(ref, { max: 256 }) }),
  s.object({
    results: s.array(s.object({
      ref: s.string(),
      ok: s.boolean(),
      vm: s.optional(s.string()),
      ports: s.optional(s.array(portView)),
      error: s.optional(
        s.object({ code: s.string(), message: s.string(), hint: s.optional(s.string()) }),
      ),
    })),
  }),
);
/** Result of `vm.ports`. */
export type PortsResult = s.Infer<typeof vmPorts.response>;

/** `vm.health`: the guest agent's health answer; `ok: false` (never an error) when it has none. */
export const vmHealth = method(
  "vm.health",
  s.object({ ref }),
  s.object({
    name: s.string(),
    ok: s.boolean(),
    hostname: s.optional(s.string()),
    uptime_seconds: s.optional(s.number({ min: 0 })),
    boot_id: s.optional(s.string()),
    error: s.optional(s.string()),
  }),
);
/** Result of `vm.health`. */
export type HealthView = s.Infer<typeof vmHealth.response>;
