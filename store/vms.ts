/**
 * VM rows: the durable spec, the runtime identity (mirrored from `handles.json`, so a
 * crash never loses what must be torn down) and the recorded workspace.
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";
import type { Store } from "./db.ts";

/** The closed set of VM states. */
export const VM_STATUSES = [
  "created",
  "starting",
  "running",
  "stopping",
  "stopped",
  "error",
] as const;
/** A VM's state. */
export type VmStatus = (typeof VM_STATUSES)[number];

/** What the VM is: fixed at create, changed only by `vm set` while stopped. */
export interface VmSpec {
  vcpu: number;
  memoryMib: number;
  /** Work disk (`/root`) size. */
  diskBytes: number;
  /** Copy-on-write space for the root disk. */
  overlayBytes: number;
  /** Outbound NAT for the guest. */
  nat: boolean;
  /** The VMM chosen at create. */
  vmm: "firecracker" | "qemu";
  /** Host ports forwarded to the guest while it runs (`-p`, `vm port publish`). */
  publish?: PortPublication[];
}

/** One published port (`daemon/network/published_ports.ts` forwards it). */
export interface PortPublication {
  /** The host address it listens on (`127.0.0.1` unless given). */
  address: string;
  hostPort: number;
  guestPort: number;
  proto: "tcp" | "udp";
}

/** Why the last start or stop failed. */
export interface VmError {
  /** The start step or operation that failed, e.g. `root_disk`. */
  step: string;
  message: string;
  at: string;
  opId?: string;
}

/**
 * Runtime identity. `pid` is set exactly while a VMM process exists for the VM (statuses
 * `starting`, `running`, `stopping`); `tap` and `rootDisk` are set from the moment they are
 * acquired until they are released, so teardown can always find them.
 */
export interface VmRuntime {
  vmDir: string;
  mac: string;
  dnsName: string;
  tap?: string;
  pid?: number;
  /** The root disk handle as the host layer returned it (plain JSON). */
  rootDisk?: unknown;
  /** Whether NAT rules are installed. */
  natInstalled?: boolean;
  /** Whether the guest answered SSH at its last boot (false: only its agent answered). */
  guestSsh?: boolean;
  startedAt?: string;
  stoppedAt?: string;
  lastError?: VmError;
}

/** A workspace recorded by `vm workspace prepare`. */
export interface WorkspaceRecord {
  guestPath: string;
  hostPath: string;
  baseCommit: string;
  hostHead: string;
  mode: "overlay" | "full_copy";
  readonly: boolean;
  branch?: string;
  preparedAt: string;
}

/** A VM row. */
export interface VmRecord {
  id: string;
  name: string;
  status: VmStatus;
  imageId: string;
  guestIp: string;
  vsockCid: number;
  spec: VmSpec;
  runtime: VmRuntime;
  workspace?: WorkspaceRecord;
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  name: string;
  status: VmStatus;
  image_id: string;
  guest_ip: string;
  vsock_cid: number;
  spec_json: string;
  runtime_json: string;
  workspace_json: string | null;
  created_at: string;
  updated_at: string;
}

const COLUMNS =
  "id, name, status, image_id, guest_ip, vsock_cid, spec_json, runtime_json, workspace_json, created_at, updated_at";

function fromRow(r: Row): VmRecord {
  return {
    id: r.id,
    name: r.name,
    status: r.status,
    imageId: r.image_id,
    guestIp: r.guest_ip,
    vsockCid: Number(r.vsock_cid),
    spec: JSON.parse(r.spec_json),
    runtime: JSON.parse(r.runtime_json),
    ...(r.workspace_json ? { workspace: JSON.parse(r.workspace_json) } : {}),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** Inserts a new VM row. Runs inside the caller's write transaction (the reservation). */
export function insertVm(db: DatabaseSync, vm: VmRecord): void {
  db.prepare(`INSERT INTO vms (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
    vm.id,
    vm.name,
    vm.status,
    vm.imageId,
    vm.guestIp,
    vm.vsockCid,
    JSON.stringify(vm.spec),
    JSON.stringify(vm.runtime),
    vm.workspace ? JSON.stringify(vm.workspace) : null,
    vm.createdAt,
    vm.updatedAt,
  );
}

/** Writes the mutable columns of `vm` (status, spec, runtime, workspace). */
export function saveVm(store: Store, vm: VmRecord): void {
  store.write((db) =>
    db.prepare(`UPDATE vms SET status = ?, spec_json = ?, runtime_json = ?, workspace_json = ?,
      updated_at = ? WHERE id = ?`).run(
      vm.status,
      JSON.stringify(vm.spec),
      JSON.stringify(vm.runtime),
      vm.workspace ? JSON.stringify(vm.workspace) : null,
      vm.updatedAt,
      vm.id,
    )
  );
}

/** The VM with id `id`. */
export function getVm(store: Store, id: string): VmRecord | undefined {
  const row = store.read((db) => db.prepare(`SELECT ${COLUMNS} FROM vms WHERE id = ?`).get(id)) as
    | Row
    | undefined;
  return row ? fromRow(row) : undefined;
}

/** The VM named exactly `name` (uniqueness checks use this, never prefixes). */
export function getVmByName(db: DatabaseSync, name: string): VmRecord | undefined {
  const row = db.prepare(`SELECT ${COLUMNS} FROM vms WHERE name = ?`).get(name) as Row | undefined;
  return row ? fromRow(row) : undefined;
}

/** Every VM, oldest first. */
export function listVms(store: Store): VmRecord[] {
  const rows = store.read((db) =>
    db.prepare(`SELECT ${COLUMNS} FROM vms ORDER BY created_at, name`).all()
  ) as unknown as Row[];
  return rows.map(fromRow);
}

/** Guest addresses and vsock CIDs in use. Runs inside the reservation transaction. */
export function usedAddresses(db: DatabaseSync): { ips: Set<string>; cids: Set<number> } {
  const rows = db.prepare("SELECT guest_ip, vsock_cid FROM vms").all() as {
    guest_ip: string;
    vsock_cid: number;
  }[];
  return {
    ips: new Set(rows.map((r) => r.guest_ip)),
    cids: new Set(rows.map((r) => Number(r.vsock_cid))),
  };
}

/** Deletes the VM row; returns whether one existed. */
export function deleteVm(store: Store, id: string): boolean {
  return store.write((db) =>
    Number(db.prepare("DELETE FROM vms WHERE id = ?").run(id).changes) > 0
  );
}
