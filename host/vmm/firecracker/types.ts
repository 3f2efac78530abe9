/**
 * The request and response bodies of Firecracker's API, mirroring
 * `src/firecracker/swagger/firecracker.yaml` (field names as on the wire). Types only.
 *
 * @module
 */

/** A token bucket of a rate limiter (`size` tokens refilled every `refill_time` ms). */
export interface TokenBucket {
  size: number;
  refill_time: number;
  one_time_burst?: number;
}

/** Bandwidth (bytes) and operations limits of a device. */
export interface RateLimiter {
  bandwidth?: TokenBucket;
  ops?: TokenBucket;
}

/** Log levels `PUT /logger` accepts. */
export type LogLevel = "Error" | "Warning" | "Info" | "Debug" | "Trace" | "Off";

/** `PUT /logger`. Firecracker opens `log_path` without truncating or appending. */
export interface Logger {
  log_path?: string;
  level?: LogLevel;
  show_level?: boolean;
  show_log_origin?: boolean;
  module?: string;
}

/** `PUT /metrics`: JSON lines, flushed every 60 s and on `FlushMetrics`. */
export interface Metrics {
  metrics_path: string;
}

/** `PUT /boot-source`. `boot_args` replaces Firecracker's default command line. */
export interface BootSource {
  kernel_image_path: string;
  initrd_path?: string;
  boot_args?: string;
}

/** `PUT /drives/{drive_id}`. At most one drive has `is_root_device` (it becomes `/dev/vda`). */
export interface Drive {
  drive_id: string;
  is_root_device: boolean;
  path_on_host?: string;
  is_read_only?: boolean;
  partuuid?: string;
  cache_type?: "Unsafe" | "Writeback";
  io_engine?: "Sync" | "Async";
  rate_limiter?: RateLimiter;
  socket?: string;
}

/** `PATCH /drives/{drive_id}` after boot: swap the backing file or the limiter. */
export interface PartialDrive {
  drive_id: string;
  path_on_host?: string;
  rate_limiter?: RateLimiter;
}

/** `PUT /network-interfaces/{iface_id}`: `host_dev_name` is an existing tap. */
export interface NetworkInterface {
  iface_id: string;
  host_dev_name: string;
  guest_mac?: string;
  rx_rate_limiter?: RateLimiter;
  tx_rate_limiter?: RateLimiter;
}

/** `PATCH /network-interfaces/{iface_id}` after boot: rate limiters only. */
export interface PartialNetworkInterface {
  iface_id: string;
  rx_rate_limiter?: RateLimiter;
  tx_rate_limiter?: RateLimiter;
}

/** `PUT /machine-config` (unset optional fields reset to defaults) and `GET /machine-config`. */
export interface MachineConfiguration {
  /** 1–32; 1 or even with `smt`. */
  vcpu_count: number;
  mem_size_mib: number;
  smt?: boolean;
  track_dirty_pages?: boolean;
  huge_pages?: "None" | "2M";
}

/** `PUT /vsock`: Firecracker binds and listens on `uds_path`. */
export interface Vsock {
  /** At least 3. */
  guest_cid: number;
  uds_path: string;
}

/** `PUT /actions` action types. `SendCtrlAltDel` and `FlushMetrics` are post-boot only. */
export type ActionType = "InstanceStart" | "SendCtrlAltDel" | "FlushMetrics";

/** `GET /`. */
export interface InstanceInfo {
  app_name: string;
  id: string;
  state: "Not started" | "Running" | "Paused";
  vmm_version: string;
}

/** `GET /vm/config`: the same keys as a `--config-file`. */
export type FullVmConfiguration = Record<string, unknown>;

/** `PATCH /vm`: pause or resume a running microVM. */
export interface VmState {
  state: "Paused" | "Resumed";
}

/** `PUT /snapshot/create` (post-boot, Paused only). Existing files are overwritten. */
export interface SnapshotCreateParams {
  snapshot_path: string;
  mem_file_path: string;
  /** @default {"Full"}; `Diff` needs `track_dirty_pages` at boot (developer preview). */
  snapshot_type?: "Full" | "Diff";
}

/** Where a snapshot's guest memory comes from on load. */
export interface MemoryBackend {
  /** `File`: the memory file, mapped MAP_PRIVATE — it must stay unchanged while the VM runs. */
  backend_type: "File" | "Uffd";
  backend_path: string;
}

/** Swaps the tap behind a network interface on load (Firecracker ≥ 1.12). */
export interface NetworkOverride {
  iface_id: string;
  host_dev_name: string;
}

/** `PUT /snapshot/load`: only on a fresh process (logger and metrics at most). */
export interface SnapshotLoadParams {
  snapshot_path: string;
  mem_backend: MemoryBackend;
  track_dirty_pages?: boolean;
  /** Resume once loaded; otherwise the VM is left Paused. */
  resume_vm?: boolean;
  /** Firecracker ≥ 1.12. */
  network_overrides?: NetworkOverride[];
  /** Firecracker ≥ 1.16. */
  vsock_override?: { uds_path: string };
  /** Advance kvmclock by the wall time since the snapshot (Firecracker ≥ 1.16, x86_64). */
  clock_realtime?: boolean;
}
