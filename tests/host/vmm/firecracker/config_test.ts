/**
 * The pure Firecracker config renderer: exact calls and config file, and refusal of
 * values Firecracker would reject or that could inject text.
 */

import { FirecrackerError } from "../../../../host/vmm/firecracker/api.ts";
import {
  type FirecrackerVmSpec,
  renderFirecrackerConfig,
} from "../../../../host/vmm/firecracker/config.ts";
import { assertEquals, assertThrows } from "../../../fixtures/assert.ts";

const BOOT_ARGS = "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd";

const SPEC: FirecrackerVmSpec = {
  vmDir: "/state/vms/abc",
  kernelPath: "/state/kernels/k/vmlinux",
  initrdPath: "/state/kernels/k/initrd.img",
  bootArgs: `${BOOT_ARGS} quiet`,
  rootDisk: "/dev/dm-3",
  workDisk: "/state/vms/abc/work.ext4",
  network: { tapName: "bg-tap3", guestIp: 0xac100002 },
  vcpuCount: 2,
  memSizeMib: 1024,
  vsockCid: 7,
};

Deno.test("renderFirecrackerConfig() renders the calls in order with exact bodies", () => {
  const { calls } = renderFirecrackerConfig(SPEC);
  assertEquals(calls.map((c) => `${c.method} ${c.path}`), [
    "PUT /logger",
    "PUT /metrics",
    "PUT /boot-source",
    "PUT /drives/rootfs",
    "PUT /drives/work",
    "PUT /network-interfaces/eth0",
    "PUT /machine-config",
    "PUT /vsock",
    "PUT /actions",
  ]);
  assertEquals(calls.map((c) => c.body), [
    { log_path: "/state/vms/abc/vmm.log", level: "Info", show_level: true, show_log_origin: false },
    { metrics_path: "/state/vms/abc/metrics.json" },
    {
      kernel_image_path: "/state/kernels/k/vmlinux",
      initrd_path: "/state/kernels/k/initrd.img",
      boot_args: `${BOOT_ARGS} quiet`,
    },
    {
      drive_id: "rootfs",
      path_on_host: "/dev/dm-3",
      is_root_device: true,
      is_read_only: false,
      cache_type: "Writeback",
    },
    {
      drive_id: "work",
      path_on_host: "/state/vms/abc/work.ext4",
      is_root_device: false,
      is_read_only: false,
      cache_type: "Writeback",
    },
    { iface_id: "eth0", host_dev_name: "bg-tap3", guest_mac: "06:00:ac:10:00:02" },
    { vcpu_count: 2, mem_size_mib: 1024, smt: false },
    { guest_cid: 7, uds_path: "/state/vms/abc/vsock.sock" },
    { action_type: "InstanceStart" },
  ]);
});

Deno.test("renderFirecrackerConfig() renders the equivalent --config-file", () => {
  assertEquals(
    JSON.stringify(renderFirecrackerConfig(SPEC).configFile),
    JSON.stringify({
      "boot-source": {
        kernel_image_path: "/state/kernels/k/vmlinux",
        initrd_path: "/state/kernels/k/initrd.img",
        boot_args: `${BOOT_ARGS} quiet`,
      },
      "drives": [
        {
          drive_id: "rootfs",
          path_on_host: "/dev/dm-3",
          is_root_device: true,
          is_read_only: false,
          cache_type: "Writeback",
        },
        {
          drive_id: "work",
          path_on_host: "/state/vms/abc/work.ext4",
          is_root_device: false,
          is_read_only: false,
          cache_type: "Writeback",
        },
      ],
      "machine-config": { vcpu_count: 2, mem_size_mib: 1024, smt: false },
      "network-interfaces": [{
        iface_id: "eth0",
        host_dev_name: "bg-tap3",
        guest_mac: "06:00:ac:10:00:02",
      }],
      "logger": {
        log_path: "/state/vms/abc/vmm.log",
        level: "Info",
        show_level: true,
        show_log_origin: false,
      },
      "metrics": { metrics_path: "/state/vms/abc/metrics.json" },
      "vsock": { guest_cid: 7, uds_path: "/state/vms/abc/vsock.sock" },
    }),
  );
});

Deno.test("renderFirecrackerConfig() leaves out what the spec does not have", () => {
  const { calls, configFile } = renderFirecrackerConfig({
    vmDir: "/v",
    kernelPath: "/k",
    bootArgs: BOOT_ARGS,
    rootDisk: "/r",
    rootReadOnly: true,
    vcpuCount: 1,
    memSizeMib: 128,
  });
  assertEquals(calls.map((c) => c.path), [
    "/logger",
    "/metrics",
    "/boot-source",
    "/drives/rootfs",
    "/machine-config",
    "/actions",
  ]);
  assertEquals(configFile["network-interfaces"], []);
  assertEquals(configFile.vsock, undefined);
  assertEquals(configFile.drives[0].is_read_only, true);
  assertEquals(configFile["boot-source"], { kernel_image_path: "/k", boot_args: BOOT_ARGS });
});

Deno.test("renderFirecrackerConfig() rejects values Firecracker would refuse or that inject text", async (t) => {
  const bad: [string, Partial<FirecrackerVmSpec>, string][] = [
    ["newline in boot args", { bootArgs: `${BOOT_ARGS}\ninit=/bin/sh` }, "only printable ASCII"],
    ["root= in boot args", { bootArgs: `${BOOT_ARGS} root=/dev/vdb` }, "root="],
    ["oversized boot args", { bootArgs: "x".repeat(1793) }, "1793-byte"],
    ["relative kernel path", { kernelPath: "vmlinux" }, "must be absolute"],
    ["control character in a disk path", { rootDisk: "/dev/dm-3\u0000" }, "must be absolute"],
    ["0 vCPUs", { vcpuCount: 0 }, "vCPU count 0"],
    ["33 vCPUs", { vcpuCount: 33 }, "vCPU count 33"],
    ["fractional memory", { memSizeMib: 1.5 }, "memory size"],
    ["vsock CID 2", { vsockCid: 2 }, "vsock CID 2"],
    ["tap name with a space", { network: { tapName: "tap 0", guestIp: 1 } }, "tap name"],
    ["16-byte tap name", { network: { tapName: "t".repeat(16), guestIp: 1 } }, "tap name"],
    ["socket path past sun_path", { vmDir: `/${"d".repeat(90)}` }, "unix socket path limit"],
  ];
  for (const [name, change, message] of bad) {
    await t.step(name, () => {
      assertThrows(
        () => renderFirecrackerConfig({ ...SPEC, ...change }),
        FirecrackerError,
        message,
      );
    });
  }
  await t.step("a 15-byte tap name passes", () => {
    renderFirecrackerConfig({ ...SPEC, network: { tapName: "t".repeat(15), guestIp: 1 } });
  });
});
