import {
  encodeSockaddrUn,
  encodeTimeval,
  SOCKADDR_UN_SIZE,
  UnixListener,
  UnixSocketError,
} from "../../../host/helper/_unix_server.ts";
import { assertEquals, assertRejects, assertThrows, within } from "../../fixtures/assert.ts";

Deno.test("encodeSockaddrUn() writes AF_UNIX and the path, and counts family + path + NUL", () => {
  const { addr, length } = encodeSockaddrUn("/run/x.sock");
  assertEquals(addr.length, SOCKADDR_UN_SIZE);
  assertEquals([addr[0], addr[1]], [1, 0]);
  assertEquals(new TextDecoder().decode(addr.subarray(2, 13)), "/run/x.sock");
  assertEquals(addr[13], 0);
  assertEquals(length, 2 + 11 + 1);
});

Deno.test("encodeSockaddrUn() takes 107 bytes and refuses 108", () => {
  assertEquals(encodeSockaddrUn("/" + "a".repeat(106)).length, 110);
  assertThrows(() => encodeSockaddrUn("/" + "a".repeat(107)), UnixSocketError, "1–107 bytes");
  assertThrows(() => encodeSockaddrUn(""), UnixSocketError);
});

Deno.test("encodeTimeval() splits milliseconds into seconds and microseconds", () => {
  const dv = new DataView(encodeTimeval(2500).buffer);
  assertEquals([dv.getBigInt64(0, true), dv.getBigInt64(8, true)], [2n, 500000n]);
});

async function withListener(
  fn: (l: UnixListener, path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/s.sock`;
  const listener = UnixListener.listen(path, { timeoutMs: 5000 });
  try {
    await fn(listener, path);
  } finally {
    await listener.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("UnixListener.accept() yields a connection with the peer's credentials", async () => {
  await withListener(async (listener, path) => {
    const client = await Deno.connect({ transport: "unix", path });
    const conn = await listener.accept();
    if (!conn) throw new Error("no connection");
    using c = conn;
    assertEquals(c.peer.uid, Deno.uid());
    assertEquals(c.peer.pid, Deno.pid);
    await client.write(new TextEncoder().encode("one line\nrest"));
    assertEquals(new TextDecoder().decode(await c.readLine(100)), "one line");
    await c.writeAll(new TextEncoder().encode("answer"));
    c.close();
    assertEquals(await new Response(client.readable).text(), "answer");
  });
});

Deno.test("UnixConnection.readLine() refuses a line over its limit", async () => {
  await withListener(async (listener, path) => {
    const client = await Deno.connect({ transport: "unix", path });
    const conn = await listener.accept();
    if (!conn) throw new Error("no connection");
    using c = conn;
    await client.write(new Uint8Array(300).fill(0x61));
    await assertRejects(() => c.readLine(100), UnixSocketError, "larger than 100 bytes");
    client.close();
  });
});

Deno.test("UnixListener.close() wakes a pending accept, which then yields undefined", async () => {
  const dir = await Deno.makeTempDir();
  const listener = UnixListener.listen(`${dir}/s.sock`);
  const pending = listener.accept();
  await listener.close();
  assertEquals(await pending, undefined);
  await assertRejects(() => Deno.lstat(`${dir}/s.sock`), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("UnixConnection.readLine() gives the whole request one deadline: a peer dripping bytes is cut off", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/s.sock`;
  const listener = UnixListener.listen(path, { timeoutMs: 600 });
  try {
    const client = await Deno.connect({ transport: "unix", path });
    const conn = await listener.accept();
    if (!conn) throw new Error("no connection");
    using c = conn;
    let dripping = true;
    // One byte every 150 ms: each read alone is well inside the timeout.
    const drip = (async () => {
      while (dripping) {
        await client.write(new Uint8Array([0x61])).catch(() => (dripping = false));
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    // Without the deadline the read would go on as long as the drip: the guard turns that
    // into a failure instead of a hang.
    await within(
      assertRejects(() => c.readLine(1 << 20), UnixSocketError, "did not arrive in time"),
      10_000,
      "the dripping request to be cut off",
    );
    dripping = false;
    await drip;
    client.close();
  } finally {
    await listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});
