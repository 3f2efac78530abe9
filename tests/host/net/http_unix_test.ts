/**
 * The one HTTP/1.1 unix-socket client: each body framing (length, chunked, until close,
 * none for 204), a body far larger than one read, refusal of header injection, an
 * unreachable socket and an abort mid-body — each against a raw listener that writes
 * exactly the bytes a test gives it.
 */

import {
  encodeHttpRequest,
  readAllText,
  requestUnix,
  SocketUnavailableError,
  type UnixRequest,
} from "../../../host/net/http_unix.ts";
import { BangerError } from "../../../host/errors.ts";
import { assertEquals, assertRejects } from "../../fixtures/assert.ts";
import { rawUnixServer } from "../../fixtures/raw_unix_server.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function text(path: string, method = "GET") {
  const res = await requestUnix(path, { method, path: "/x" });
  return { status: res.status, body: await readAllText(res.body) };
}

Deno.test("requestUnix() reads a Content-Length body and not a byte past it", async () => {
  await using srv = await rawUnixServer([
    enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"),
  ], { close: true });
  assertEquals(await text(srv.path), { status: 200, body: "hello" });
});

Deno.test("requestUnix() gives a 204 no body whatever follows it, as Firecracker's keep-alive answers need", async () => {
  await using srv = await rawUnixServer([enc.encode("HTTP/1.1 204 No Content\r\n\r\nnext")], {
    close: true,
  });
  assertEquals(await text(srv.path), { status: 204, body: "" });
});

Deno.test("requestUnix() decodes a chunked body split across writes", async () => {
  await using srv = await rawUnixServer([
    enc.encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"),
    enc.encode("c\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n"),
  ], { close: false });
  assertEquals(await text(srv.path), { status: 200, body: "abcdefg" });
});

Deno.test("requestUnix() reads a body with no length until the server closes", async () => {
  await using srv = await rawUnixServer([
    enc.encode("HTTP/1.0 200 OK\r\n\r\nall of "),
    enc.encode("it"),
  ], { close: true });
  assertEquals(await text(srv.path), { status: 200, body: "all of it" });
});

Deno.test("requestUnix() reads an 8 MiB body written in 1 KiB pieces byte for byte", async () => {
  const body = new Uint8Array(8 << 20);
  for (let i = 0; i < body.length; i++) body[i] = (i * 31 + (i >> 10)) & 0xff;
  const pieces = [enc.encode(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`)];
  for (let at = 0; at < body.length; at += 1024) pieces.push(body.subarray(at, at + 1024));
  await using srv = await rawUnixServer(pieces, { close: false });
  const res = await requestUnix(srv.path, { method: "GET", path: "/big" });
  let at = 0;
  let mismatches = 0;
  for await (const chunk of res.body) {
    for (let i = 0; i < chunk.length; i++) if (chunk[i] !== body[at + i]) mismatches++;
    at += chunk.length;
  }
  assertEquals({ at, mismatches }, { at: body.length, mismatches: 0 });
});

Deno.test("requestUnix() refuses a Content-Length that is not a number", async () => {
  await using srv = await rawUnixServer(["HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n"], {
    close: false,
  });
  await assertRejects(() => text(srv.path), Error, 'Bad Content-Length "5x"');
});

Deno.test("requestUnix() sends the body whole with its length, and no body on HEAD's answer", async () => {
  await using srv = await rawUnixServer(["HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"], {
    close: false,
  });
  const res = await requestUnix(srv.path, { method: "HEAD", path: "/h" });
  assertEquals(await readAllText(res.body), "");
  assertEquals(srv.requests, ["HEAD /h HTTP/1.1\r\nHost: localhost\r\n\r\n"]);
});

Deno.test("encodeHttpRequest() refuses a path or header that could smuggle a line", () => {
  const bad: UnixRequest[] = [
    { method: "GET", path: "/a b" },
    { method: "GET", path: "/x\r\nEvil: 1" },
    { method: "GET", path: "/", headers: { "X-A": "1\r\nEvil: 1" } },
    { method: "GET", path: "/", headers: { "X-A\r\nEvil": "1" } },
  ];
  const refused = bad.filter((request) => {
    try {
      encodeHttpRequest(request);
      return false;
    } catch (err) {
      return err instanceof BangerError && err.code === "invalid_argument";
    }
  });
  assertEquals(refused.length, bad.length);
  assertEquals(
    dec.decode(encodeHttpRequest({ method: "PUT", path: "/p", body: enc.encode("{}") })),
    "PUT /p HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}",
  );
});

Deno.test("requestUnix() says which socket nobody listens on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bgt-http-" });
  try {
    const err = await assertRejects(
      () => requestUnix(`${dir}/none.sock`, { method: "GET", path: "/" }),
      SocketUnavailableError,
    );
    assertEquals(err.path, `${dir}/none.sock`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("requestUnix() stops a body mid-stream when its signal aborts", async () => {
  await using srv = await rawUnixServer(["HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst"], {
    close: false,
  });
  const controller = new AbortController();
  const res = await requestUnix(srv.path, { method: "GET", path: "/" }, controller.signal);
  const seen: string[] = [];
  const read = (async () => {
    for await (const chunk of res.body) {
      seen.push(dec.decode(chunk));
      controller.abort(new Error("stop"));
    }
  })();
  await assertRejects(() => read, Error, "before the response body ended");
  assertEquals(seen, ["first"]);
});
