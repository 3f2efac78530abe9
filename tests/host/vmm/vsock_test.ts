/**
 * The host-side vsock client: the CONNECT/OK handshake against the fake firecracker's
 * vsock device (and its simulated guest agent), and the byte stream after it.
 */

import { connectVsock, VsockError } from "../../../host/vmm/vsock.ts";
import { assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { call, startFake } from "../../fixtures/fake_firecracker/spawn.ts";
import { elfExecutable } from "../../fixtures/tiny_elf.ts";

async function vsockVm() {
  const fake = await startFake();
  await Deno.writeFile(`${fake.dir}/vmlinux`, elfExecutable());
  const uds = `${fake.dir}/vsock.sock`;
  assertEquals(
    (await call(fake.socket, "PUT", "/boot-source", { kernel_image_path: `${fake.dir}/vmlinux` }))
      .status,
    204,
  );
  assertEquals(
    (await call(fake.socket, "PUT", "/vsock", { guest_cid: 3, uds_path: uds })).status,
    204,
  );
  const start = async () =>
    assertEquals(
      (await call(fake.socket, "PUT", "/actions", { action_type: "InstanceStart" })).status,
      204,
    );
  return { fake, uds, start };
}

Deno.test("connectVsock() completes CONNECT/OK and talks to the guest agent on port 1024", async () => {
  const { fake, uds, start } = await vsockVm();
  await using _ = fake;
  await start();
  using agent = await connectVsock(uds, 1024);
  assertEquals(agent.hostPort, 1073741824);
  await agent.write("health\n");
  const health = JSON.parse((await agent.readLine()) ?? "");
  assertEquals([health.ok, health.hostname], [true, "fake-guest"]);
  await agent.write("ports\n");
  assertEquals(JSON.parse((await agent.readLine()) ?? "").ports, []);
  using second = await connectVsock(uds, 1024);
  assertEquals(second.hostPort, 1073741825, "Firecracker numbers host-side ports upwards");
});

Deno.test("connectVsock() made before boot is answered once the guest starts", async () => {
  const { fake, uds, start } = await vsockVm();
  await using _ = fake;
  const pending = connectVsock(uds, 1024, { timeoutMs: 10_000 });
  await start();
  using conn = await pending;
  assertEquals(conn.port, 1024);
});

Deno.test("connectVsock() reports a port nobody listens on in the guest (closed connection)", async () => {
  const { fake, uds, start } = await vsockVm();
  await using _ = fake;
  await start();
  const err = await assertRejects(
    () => connectVsock(uds, 5555),
    VsockError,
    "nothing listens on that port in the guest",
  );
  assertEquals(err.code, "unavailable");
});

Deno.test("connectVsock() times out, naming the wait, when the handshake is never answered", async () => {
  const { fake, uds } = await vsockVm(); // not started: the device holds the connection
  await using _ = fake;
  const err = await assertRejects(
    () => connectVsock(uds, 1024, { timeoutMs: 200 }),
    VsockError,
    "no answer within 200 ms",
  );
  assertEquals(err.code, "timeout");
});

Deno.test("connectVsock() fails as unavailable when the vsock socket is missing", async () => {
  const err = await assertRejects(() => connectVsock("/nonexistent/vsock.sock", 1024), VsockError);
  assertEquals(err.code, "unavailable");
});

Deno.test("VsockConnection keeps the bytes the guest sent in the same packet as OK", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bgt-vsock-" });
  const path = `${dir}/v.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const served = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(64);
    await conn.read(buf);
    await conn.write(new TextEncoder().encode("OK 99\nhello\nworld\n"));
    conn.close();
  })();
  try {
    using conn = await connectVsock(path, 52);
    assertEquals(conn.hostPort, 99);
    assertEquals(await conn.readLine(), "hello");
    assertEquals(await conn.readLine(), "world");
    assertEquals(await conn.readLine(), undefined);
  } finally {
    await served;
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connectVsock() rejects a port outside 0–4294967295", async () => {
  await assertRejects(() => connectVsock("/x", -1), VsockError, "it must be 0 to 4294967295");
});
