import { collectOutput, OutputTooLargeError, run } from "../../../host/os/exec.ts";
import { ExecError } from "../../../host/errors.ts";
import { assertEquals, assertRejects } from "../../fixtures/assert.ts";

Deno.test("run() feeds a large stdin while the program fills stdout (no pipe deadlock)", async () => {
  // 4 MiB through `cat`: far more than a pipe holds in either direction, so writing all
  // of stdin before reading stdout would hang until the timeout.
  const input = new Uint8Array(4 * 1024 * 1024).map((_, i) => i % 251);
  const { stdout } = await run("cat", [], { stdin: input, timeoutMs: 30_000 });
  assertEquals(stdout, input);
});

Deno.test("collectOutput() streams a ReadableStream to stdin and ignores a program that stops reading", async () => {
  const chunks = ["a\n", "b\n", "c\n"].map((t) => new TextEncoder().encode(t));
  const cat = new Deno.Command("cat", { stdin: "piped", stdout: "piped" }).spawn();
  const out = await collectOutput(cat, ReadableStream.from(chunks));
  assertEquals(new TextDecoder().decode(out.stdout), "a\nb\nc\n");

  // The shell exits without reading: the broken pipe is not the error, its status is.
  const early = new Deno.Command("sh", { args: ["-c", "exit 3"], stdin: "piped" }).spawn();
  const status = await collectOutput(early, new Uint8Array(1024 * 1024));
  assertEquals(status.code, 3);
  await assertRejects(() => run("sh", ["-c", "exit 3"], { stdin: "x" }), ExecError, "exit");
});

Deno.test("collectOutput() kills a program printing past its stdout limit and keeps only stderr's tail", async () => {
  const flood = new Deno.Command("sh", {
    args: ["-c", "yes 0123456789; echo never"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const err = await assertRejects(
    () => collectOutput(flood, undefined, { maxStdout: 1 << 20, maxStderrTail: 16 }),
    OutputTooLargeError,
  );
  assertEquals(err.code, "too_large");
  const noisy = new Deno.Command("sh", {
    args: ["-c", "i=0; while [ $i -lt 2000 ]; do echo line$i >&2; i=$((i+1)); done; printf ok"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = await collectOutput(noisy, undefined, { maxStdout: 16, maxStderrTail: 16 });
  assertEquals(new TextDecoder().decode(out.stdout), "ok");
  assertEquals(new TextDecoder().decode(out.stderr), "ne1998\nline1999\n", "the last 16 bytes");
});
