/**
 * Wire API of VMs: create, lifecycle verbs (several refs each, fanned out), list/show,
 * set, logs, stats, and the SSH invocations the CLI executes itself.
 *
 * A ref is an exact name, or a unique prefix of a name or id.
 *
 * @module
 */

import * as s from "../../host/schema.ts";
import { method } from "./protocol.ts";

const ref = s.string({ min: 1, max: 128, expected: "a VM name or id prefix" });
const refs = s.array(ref, { max: 256 });

/** How a VM is shown: everything `vm show` prints. */
export const vmView = s.object({
  id: s.string(),
  name: s.string(),
  status: s.literal("created", "starting", "running", "stopping", "stopped", "error", "broken"),
  image: s.string(),
  guest_ip: s.string(),
  dns_name: s.string(),
  vcpu: s.number({ int: true }),
  memory_mib: s.number({ int: true }),
  disk_bytes: s.number({ int: true }),
  overlay_bytes: s.number({ int: true }),
  nat: s.boolean(),
  vmm: s.literal("firecracker", "qemu"),
  created_at: s.string(),
  started_at: s.optional(s.string()),
  pid: s.optional(s.number({ int: true })),
  tap: s.optional(s.string()),
  root_disk: s.optional(s.string()),
  workspace: s.optional(s.object({
    guest_path: s.string(),
    host_path: s.string(),
    base_commit: s.string(),
    host_head: s.string(),
    mode: s.literal("overlay", "full_copy"),
    readonly: s.boolean(),
    prepared_at: s.string(),
  })),
  last_error: s.optional(s.object({ step: s.string(), message: s.string(), at: s.string() })),
  /** Problems found while inspecting (a `broken` VM lists why). */
  errors: s.array(s.string()),
});
/** A VM as the CLI sees it. */
export type VmView = s.Infer<typeof vmView>;

/** The sizing and options shared by `vm create` and `vm run`. */
export const vmCreateRequest = s.object({
  name: s.optional(s.string({ min: 1, max: 63 })),
  image: s.optional(s.string({ min: 1, max: 128 })),
  vcpu: s.optional(s.number({ int: true })),
  memory_mib: s.optional(s.number({ int: true })),
  disk_size: s.optional(s.string({ min: 1, max: 32 })),
  system_overlay_size: s.optional(s.string({ min: 1, max: 32 })),
  nat: s.optional(s.boolean()),
  /** `[ADDR:]HOST:GUEST[/udp]` each (`-p`). */
  publish: s.optional(s.array(s.string({ min: 1, max: 64 }), { max: 64 })),
  no_start: s.optional(s.boolean()),
  /** Delete the VM when its boot fails or is cancelled (`vm run --rm`), instead of keeping it in `error`. */
  remove_on_failure: s.optional(s.boolean()),
});

/** `vm.create` (streams stages): validate, resolve the image, reserve, boot. */
export const vmCreate = method("vm.create", vmCreateRequest, vmView, { stream: true });

/** `vm.list`. */
export const vmList = method("vm.list", s.object({}), s.object({ vms: s.array(vmView) }));

/** `vm.show`. */
export const vmShow = method("vm.show", s.object({ ref }), vmView);

/** Per-ref outcome of a lifecycle verb. */
export const bulkResult = s.object({
  op_id: s.string(),
  results: s.array(s.object({
    ref: s.string(),
    ok: s.boolean(),
    vm: s.optional(vmView),
    error: s.optional(
      s.object({ code: s.string(), message: s.string(), hint: s.optional(s.string()) }),
    ),
  })),
});
/** Result of a lifecycle verb. */
export type BulkResult = s.Infer<typeof bulkResult>;

/** `vm.start`: boot stopped VMs (streams stages). */
export const vmStart = method("vm.start", s.object({ refs }), bulkResult, { stream: true });
/** `vm.stop`: sync and shut down; disks are kept. */
export const vmStop = method("vm.stop", s.object({ refs }), bulkResult);
/** `vm.restart`: stop then start (a new boot). */
export const vmRestart = method("vm.restart", s.object({ refs }), bulkResult, { stream: true });
/** `vm.kill`: signal the VMM now; the VM ends stopped with its disks released. */
export const vmKill = method(
  "vm.kill",
  s.object({ refs, signal: s.optional(s.string({ pattern: /^(SIG)?[A-Z0-9]+$/ })) }),
  bulkResult,
);
/**
 * `vm.delete`: remove disks, DNS, NAT and known_hosts entries. A running VM is refused
 * (`conflict`) unless `force`, which stops it first.
 */
export const vmDelete = method(
  "vm.delete",
  s.object({ refs, force: s.optional(s.boolean()) }),
  bulkResult,
);
/** `vm.prune`: delete every VM that is not running. */
export const vmPrune = method("vm.prune", s.object({}), s.object({ deleted: s.array(s.string()) }));

/** `vm.set`: change vcpu, memory or NAT, or grow the work or root disk, of a stopped VM. */
export const vmSet = method(
  "vm.set",
  s.object({
    refs,
    vcpu: s.optional(s.number({ int: true })),
    memory_mib: s.optional(s.number({ int: true })),
    disk_size: s.optional(s.string({ min: 1, max: 32 })),
    system_overlay_size: s.optional(s.string({ min: 1, max: 32 })),
    nat: s.optional(s.boolean()),
  }),
  bulkResult,
);

/** One publication as the API shows it. */
export const publishedPortView = s.object({
  address: s.string(),
  host_port: s.number({ int: true }),
  guest_port: s.number({ int: true }),
  proto: s.literal("tcp", "udp"),
  /** Whether its listener is open now (the VM runs). */
  active: s.boolean(),
});
/** A VM's publications. */
export type PublishedPortView = s.Infer<typeof publishedPortView>;
const publishedPorts = s.object({ vm: s.string(), ports: s.array(publishedPortView) });

/** `vm.port.publish`: forward a host port to the guest (now, when running, and at every start). */
export const vmPortPublish = method(
  "vm.port.publish",
  s.object({ ref, publish: s.string({ min: 1, max: 64 }) }),
  publishedPorts,
);
/** `vm.port.unpublish`: stop forwarding a host port. */
export const vmPortUnpublish = method(
  "vm.port.unpublish",
  s.object({
    ref,
    host_port: s.number({ int: true, min: 1, max: 65535 }),
    proto: s.optional(s.literal("tcp", "udp")),
  }),
  publishedPorts,
);
/** `vm.port.list`: a VM's publications, host side and guest side. */
export const vmPortList = method("vm.port.list", s.object({ ref }), publishedPorts);

/** `vm.logs`: the serial console (the last `lines`, or everything after `offset`). */
export const vmLogs = method(
  "vm.logs",
  s.object({
    ref,
    lines: s.optional(s.number({ int: true, min: 1, max: 1_000_000 })),
    offset: s.optional(s.number({ int: true, min: 0 })),
  }),
  s.object({ text: s.string(), offset: s.number({ int: true }), running: s.boolean() }),
);

/** `vm.stats`: VMM metrics and process figures. */
export const vmStats = method(
  "vm.stats",
  s.object({ ref }),
  s.object({
    name: s.string(),
    status: s.string(),
    pid: s.optional(s.number({ int: true })),
    cpu_seconds: s.optional(s.number()),
    rss_bytes: s.optional(s.number()),
    uptime_ms: s.optional(s.number()),
    vmm: s.string(),
    metrics: s.optional(s.unknownValue()),
  }),
);

/** Result of `vm.stats`. */
export type VmStatsView = s.Infer<typeof vmStats.response>;

/** An ssh command line for the CLI to run in the foreground. */
export const sshInvocation = s.object({
  argv: s.array(s.string()),
  vm: vmView,
  warnings: s.array(s.string()),
});
/** An ssh command line for the CLI. */
export type SshInvocation = s.Infer<typeof sshInvocation>;

/** `vm.ssh`: how to open a shell (or run `command`) in a running VM. */
export const vmSsh = method(
  "vm.ssh",
  s.object({
    ref,
    command: s.optional(s.array(s.string(), { max: 4096 })),
    tty: s.optional(s.boolean()),
  }),
  sshInvocation,
);

/** `ssh_config.update`: rewrite banger's ssh_config and add/remove the Include. */
export const sshConfigUpdate = method(
  "ssh_config.update",
  s.object({ home: s.string({ min: 1 }), action: s.literal("show", "install", "uninstall") }),
  s.object({
    path: s.string(),
    user_config: s.string(),
    included: s.boolean(),
    changed: s.boolean(),
  }),
);
