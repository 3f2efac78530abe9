/**
 * The Firecracker API client: exact request bytes (whole bodies with Content-Length, never
 * chunked), fault_message surfacing, timeouts, and round trips against the fake.
 */

import {
  encodeRequest,
  FirecrackerClient,
  FirecrackerError,
} from "../../../../host/vmm/firecracker/api.ts";
import { assertEquals, assertRejects, assertStringIncludes } from "../../../fixtures/assert.ts";
import { startFake } from "../../../fixtures/fake_firecracker/spawn.ts";
import { rawUnixServer } from "../../../fixtures/raw_unix_server.ts";
import { elfExecutable } from "../../../fixtures/tiny_elf.ts";
import type { SnapshotLoadParams } from "../../../../host/vmm/firecracker/types.ts";
import { BangerError } from "../../../../host/errors.ts";

const dec = new TextDecoder();

Deno.test("encodeRequest() sends the whole JSON body with Content-Length and no Transfer-Encoding", () => {
  const bytes = encodeRequest("PUT", "/actions", { action_type: "InstanceStart" });
  assertEquals(
    dec.decode(bytes),
    "PUT /actions HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n" +
      "Content-Type: application/json\r\nContent-Length: 31\r\n\r\n" +
      '{"action_type":"InstanceStart"}',
  );
  assertEquals(
    dec.decode(encodeRequest("GET", "/")),
    "GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
  );
});

Deno.test("encodeRequest() rejects a path that could inject a header", () => {
  for (const path of ["/a b", "/x\r\nEvil: 1"]) {
    try {
      encodeRequest("GET", path);
      throw new Error("accepted");
    } catch (err) {
      assertEquals(err instanceof BangerError && err.code === "invalid_argument", true);
    }
  }
});

Deno.test("FirecrackerClient sends bodies whole, never chunked (seen by a raw listener)", async () => {
  await using srv = await rawUnixServer([
    "HTTP/1.1 204 No Content\r\nServer: Firecracker API\r\n\r\n",
  ]);
  const fc = new FirecrackerClient(srv.path);
  const drive = {
    drive_id: "rootfs",
    path_on_host: "/dev/dm-3",
    is_root_device: true,
    is_read_only: false,
  };
  await fc.putDrive(drive);
  await fc.putAction("InstanceStart");
  assertEquals(srv.requests.length, 2);
  const [head, body] = srv.requests[0].split("\r\n\r\n");
  assertEquals(head.split("\r\n")[0], "PUT /drives/rootfs HTTP/1.1");
  assertEquals(/transfer-encoding/i.test(head), false);
  assertStringIncludes(head, `Content-Length: ${JSON.stringify(drive).length}`);
  assertEquals(JSON.parse(body), drive);
});

Deno.test("FirecrackerClient surfaces a 400's fault_message on FirecrackerError", async () => {
  const body = JSON.stringify({
    fault_message: "Drive config error: A root block device already exists!",
  });
  await using srv = await rawUnixServer([
    `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
  ]);
  const err = await assertRejects(
    () =>
      new FirecrackerClient(srv.path).putDrive({
        drive_id: "b",
        path_on_host: "/x",
        is_root_device: true,
      }),
    FirecrackerError,
  );
  assertEquals(err.faultMessage, "Drive config error: A root block device already exists!");
  assertEquals(err.status, 400);
  assertEquals(
    err.message,
    "Cannot PUT /drives/b on Firecracker: Drive config error: A root block device already exists!",
  );
});

Deno.test("FirecrackerClient times out, naming the wait, when Firecracker does not answer", async () => {
  await using srv = await rawUnixServer(undefined);
  const err = await assertRejects(
    () => new FirecrackerClient(srv.path, { timeoutMs: 200 }).getInstanceInfo(),
    FirecrackerError,
    "no answer within 200 ms",
  );
  assertEquals(err.code, "timeout");
});

Deno.test("FirecrackerClient reports a missing socket as unavailable", async () => {
  const err = await assertRejects(
    () => new FirecrackerClient("/nonexistent/fc.sock").getVersion(),
    FirecrackerError,
    "nothing is listening on the API socket",
  );
  assertEquals(err.code, "unavailable");
});

Deno.test("FirecrackerClient refuses resource ids Firecracker would reject, before sending", async () => {
  const err = await assertRejects(
    () =>
      new FirecrackerClient("/nonexistent/fc.sock").putDrive({
        drive_id: "../x",
        is_root_device: false,
      }),
    FirecrackerError,
    'Cannot use Firecracker resource id "../x"',
  );
  assertEquals(err.code, "invalid_argument");
});

Deno.test("FirecrackerClient GETs round-trip against the fake firecracker", async () => {
  await using fake = await startFake({ id: "api-test" });
  const fc = new FirecrackerClient(fake.socket);
  assertEquals(await fc.getInstanceInfo(), {
    app_name: "Firecracker",
    id: "api-test",
    state: "Not started",
    vmm_version: "1.16.1",
  });
  assertEquals(await fc.getVersion(), "1.16.1");
  await fc.putMachineConfig({ vcpu_count: 2, mem_size_mib: 512 });
  await fc.patchMachineConfig({ mem_size_mib: 1024 });
  assertEquals((await fc.getMachineConfig()).mem_size_mib, 1024);
  assertEquals((await fc.getVmConfig())["machine-config"], {
    vcpu_count: 2,
    mem_size_mib: 1024,
    smt: false,
    track_dirty_pages: false,
    huge_pages: "None",
  });
  const err = await assertRejects(() => fc.putAction("SendCtrlAltDel"), FirecrackerError);
  assertEquals(
    err.faultMessage,
    "The requested operation is not supported before starting the microVM.",
  );
});

Deno.test("FirecrackerClient snapshots through the fake: pause, create, load in a fresh process, resume", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bgt-fcsnap-" });
  try {
    await Deno.writeFile(`${dir}/vmlinux`, elfExecutable());
    await Deno.writeFile(`${dir}/rootfs.ext4`, new Uint8Array(4096));
    const create = { snapshot_path: `${dir}/state`, mem_file_path: `${dir}/mem` };
    {
      await using fake = await startFake({ id: "snap-src" });
      const fc = new FirecrackerClient(fake.socket);
      await fc.putBootSource({ kernel_image_path: `${dir}/vmlinux`, boot_args: "console=ttyS0" });
      await fc.putDrive({
        drive_id: "rootfs",
        path_on_host: `${dir}/rootfs.ext4`,
        is_root_device: true,
        is_read_only: false,
      });
      await fc.putAction("InstanceStart");
      // Firecracker's own rule, surfaced verbatim: only a Paused VM is snapshotted.
      const running = await assertRejects(() => fc.createSnapshot(create), FirecrackerError);
      assertStringIncludes(running.faultMessage ?? "", "save/restore unavailable while running");
      await fc.patchVm({ state: "Paused" });
      assertEquals((await fc.getInstanceInfo()).state, "Paused");
      await fc.createSnapshot(create);
    }
    await using fresh = await startFake({ id: "snap-dst" });
    const fc = new FirecrackerClient(fresh.socket);
    await fc.loadSnapshot({
      snapshot_path: `${dir}/state`,
      mem_backend: { backend_type: "File", backend_path: `${dir}/mem` },
      resume_vm: true,
    }, "1.16.1");
    assertEquals((await fc.getInstanceInfo()).state, "Running");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FirecrackerClient.loadSnapshot() refuses a field the release lacks, naming the release", async () => {
  const fc = new FirecrackerClient("/nonexistent/fc.sock");
  const base = {
    snapshot_path: "/s",
    mem_backend: { backend_type: "File" as const, backend_path: "/m" },
  };
  const cases: [Partial<SnapshotLoadParams>, string, string][] = [
    [{ network_overrides: [{ iface_id: "eth0", host_dev_name: "bg-t1" }] }, "1.11.0", "1.12.0"],
    [{ vsock_override: { uds_path: "/v.sock" } }, "1.15.1", "1.16.0"],
    [{ clock_realtime: true }, "1.15.1", "1.16.0"],
  ];
  for (const [extra, version, since] of cases) {
    const field = Object.keys(extra)[0];
    const err = await assertRejects(
      () => fc.loadSnapshot({ ...base, ...extra }, version),
      FirecrackerError,
      `Cannot load a snapshot with "${field}" on Firecracker ${version}: it needs ${since} or newer`,
    );
    assertEquals(err.code, "failed_precondition");
  }
  // From the release that has them, the request goes out (and here finds no socket).
  const sent = await assertRejects(
    () => fc.loadSnapshot({ ...base, clock_realtime: true }, "1.16.1"),
    FirecrackerError,
  );
  assertEquals(sent.code, "unavailable");
});
