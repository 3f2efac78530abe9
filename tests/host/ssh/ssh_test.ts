import { assert, assertEquals } from "../../fixtures/assert.ts";
import {
  ensureKey,
  forgetHostKeys,
  isHostKeyMismatch,
  removeHostLines,
  shellQuote,
  shellQuoteCommand,
  sshArgs,
} from "../../../host/ssh/ssh.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";

const target = {
  host: "172.16.0.2",
  alias: "dev.vm",
  keyPath: "/s/ssh/id_ed25519",
  knownHosts: "/s/ssh/known_hosts",
  controlPath: "/r/ssh-abc.sock",
};

Deno.test("sshArgs() pins host keys in banger's known_hosts under the VM alias and quotes the command", () => {
  const args = sshArgs(target, ["sh", "-c", "exit 42"], { batch: true });
  const opts = args.filter((_, i) => args[i - 1] === "-o");
  assert(opts.includes("UserKnownHostsFile=/s/ssh/known_hosts"));
  assert(opts.includes("GlobalKnownHostsFile=/dev/null"));
  assert(opts.includes("StrictHostKeyChecking=accept-new"));
  assert(opts.includes("HashKnownHosts=no"));
  assert(opts.includes("HostKeyAlias=dev.vm"));
  assert(opts.includes("BatchMode=yes"));
  assert(opts.includes("ControlPath=/r/ssh-abc.sock"));
  assertEquals(args.slice(-3), ["-T", "root@172.16.0.2", "sh -c 'exit 42'"]);
  assertEquals(sshArgs(target, [], { tty: true }).at(-2), "-t");
});

Deno.test("shellQuoteCommand() survives the remote shell word for word", async () => {
  const words = ["printf", "%s|", "a b", "it's", "$HOME", "`x`", "", "*", "new\nline"];
  const out = await new Deno.Command("sh", {
    args: ["-c", shellQuoteCommand(words)],
    stdout: "piped",
  }).output();
  assertEquals(new TextDecoder().decode(out.stdout), "a b|it's|$HOME|`x`||*|new\nline|");
  assertEquals(shellQuote("plain-word_1.2/x"), "plain-word_1.2/x");
});

Deno.test("removeHostLines() drops exactly the named hosts, bracketed ports included", () => {
  const text = [
    "dev.vm ssh-ed25519 AAA",
    "other.vm ssh-ed25519 BBB",
    "172.16.0.2,dev.vm ssh-ed25519 CCC",
    "[172.16.0.9]:2222 ssh-ed25519 DDD",
    "# comment",
    "",
  ].join("\n");
  assertEquals(
    removeHostLines(text, ["dev.vm", "172.16.0.9"]),
    ["other.vm ssh-ed25519 BBB", "# comment", ""].join("\n"),
  );
});

Deno.test("isHostKeyMismatch() recognises ssh's changed-key errors", () => {
  assert(isHostKeyMismatch("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@"));
  assert(isHostKeyMismatch("Host key verification failed."));
  assert(!isHostKeyMismatch("ssh: connect to host 172.16.0.2 port 22: Connection refused"));
});

gatedTest("ensureKey() creates an ed25519 key once and returns its public line", [
  programs("ssh-keygen"),
], async () => {
  const dir = await Deno.makeTempDir();
  try {
    const pub = await ensureKey(`${dir}/ssh/id_ed25519`);
    assert(pub.startsWith("ssh-ed25519 "), pub);
    assertEquals(await ensureKey(`${dir}/ssh/id_ed25519`), pub, "the second call reuses the key");
    assertEquals(((await Deno.stat(`${dir}/ssh`)).mode ?? 0) & 0o777, 0o700);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("forgetHostKeys() called for many VMs at once removes every one of them (parallel deletes)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bgk-" });
  try {
    const file = `${dir}/known_hosts`;
    const names = Array.from({ length: 24 }, (_, i) => `vm${i}.vm`);
    const lines = names.map((n, i) => `${n},172.16.0.${i + 2} ssh-ed25519 AAAAC3Nza${i}`);
    await Deno.writeTextFile(file, [...lines, "keep.vm ssh-ed25519 AAAAkeep", ""].join("\n"));
    await Promise.all(names.map((n, i) => forgetHostKeys(file, [n, `172.16.0.${i + 2}`])));
    assertEquals(await Deno.readTextFile(file), "keep.vm ssh-ed25519 AAAAkeep\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
