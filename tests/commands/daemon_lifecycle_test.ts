import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "../fixtures/assert.ts";
import { tempBangerHome } from "../fixtures/banger_cli.ts";
import { type CliEnv, CliError } from "../../commands/env.ts";
import { RpcClient } from "../../commands/client/rpc_client.ts";
import { callDaemon } from "../../commands/client/daemon_control.ts";
import { vmList } from "../../daemon/api/vm.ts";
import { BANGER_VERSION } from "../../daemon/api/protocol.ts";

function daemonPids(home: string): number[] {
  // Count daemons serving this BANGER_HOME by their command line.
  const out = new Deno.Command("pgrep", { args: ["-f", "main.ts daemon$"], stdout: "piped" })
    .outputSync();
  const pids = new TextDecoder().decode(out.stdout).trim().split("\n").filter(Boolean).map(Number);
  return pids.filter((pid) => {
    try {
      const env = Deno.readFileSync(`/proc/${pid}/environ`);
      return new TextDecoder().decode(env).split("\0").includes(`BANGER_HOME=${home}`);
    } catch {
      return false;
    }
  });
}

Deno.test("two CLIs racing to auto-start start exactly one daemon", async () => {
  await using h = await tempBangerHome();
  const [a, b, c] = await Promise.all([
    h.run(["daemon", "start"]),
    h.run(["daemon", "start"]),
    h.run(["daemon", "start"]),
  ]);
  for (const r of [a, b, c]) assertEquals(r.code, 0, r.stderr);
  const pids = daemonPids(h.home);
  assertEquals(pids.length, 1, `daemons running: ${pids}`);
  const status = await h.run(["daemon", "status", "--json"]);
  assertEquals(JSON.parse(status.stdout).pid, pids[0]);
});

Deno.test("the daemon socket is 0600 and its runtime dir 0700", async () => {
  await using h = await tempBangerHome();
  assertEquals((await h.run(["daemon", "start"])).code, 0);
  const sock = await Deno.lstat(`${h.home}/run/daemon.sock`);
  assert(sock.isSocket);
  assertEquals((sock.mode ?? 0) & 0o777, 0o600);
  for (const dir of ["run", "state", "cache", "config"]) {
    assertEquals(((await Deno.stat(`${h.home}/${dir}`)).mode ?? 0) & 0o777, 0o700, dir);
  }
});

Deno.test("a second `banger daemon` refuses to start while one answers", async () => {
  await using h = await tempBangerHome();
  assertEquals((await h.run(["daemon", "start"])).code, 0);
  const second = await h.run(["daemon"]);
  assertEquals(second.code, 1);
  assertMatch(second.stderr, /^error: Cannot start the daemon: another one is running \(pid \d+\)/);
  assertEquals(daemonPids(h.home).length, 1);
});

Deno.test("`banger daemon status` reports not running without starting one, and stop is idempotent", async () => {
  await using h = await tempBangerHome();
  const status = await h.run(["daemon", "status"]);
  assertEquals(status.code, 3);
  assertStringIncludes(status.stdout, "not running");
  assertEquals(daemonPids(h.home).length, 0);
  const stop = await h.run(["daemon", "stop"]);
  assertEquals(stop.code, 0);
  assertStringIncludes(stop.stdout, "not running");
});

Deno.test("`banger daemon stop` stops the daemon and removes its socket", async () => {
  await using h = await tempBangerHome();
  assertEquals((await h.run(["daemon", "start"])).code, 0);
  const stop = await h.run(["daemon", "stop"]);
  assertEquals(stop.code, 0, stop.stderr);
  assertMatch(stop.stdout, /banger daemon stopped \(pid \d+\)/);
  assertEquals(daemonPids(h.home).length, 0);
  await Deno.lstat(`${h.home}/run/daemon.sock`).then(
    () => assert(false, "socket still present"),
    (e) => assert(e instanceof Deno.errors.NotFound),
  );
});

Deno.test("a CLI whose version is a pre-release of the daemon's is older, and leaves the daemon alone", async () => {
  await using h = await tempBangerHome();
  assertEquals((await h.run(["daemon", "start"])).code, 0);
  const [pid] = daemonPids(h.home);
  const socket = `${h.home}/run/daemon.sock`;
  const never = () => Promise.reject(new Error("not used"));
  const env: CliEnv = {
    out: () => {},
    err: () => {},
    stdoutIsTty: false,
    stderrIsTty: false,
    stdinIsTty: false,
    style: {},
    readLine: () => Promise.resolve(null),
    // SemVer: 1.0.0-rc.1 < 1.0.0, so this CLI must not replace the daemon.
    client: new RpcClient(socket, `${BANGER_VERSION}-rc.1`),
    paths: { socket, startLock: "", startupLog: "", runtimeDir: "", pidLock: "" },
    daemonCommand: () => ({ program: "false", args: [] }),
    ensureRuntimeDir: never,
    local: { runDaemon: never, doctor: never, readConfig: never },
  };
  await assertRejects(
    // `vm.list`, not `daemon.status`: status answers CLIs of any version.
    () => callDaemon(env, vmList, {}),
    CliError,
    `This banger (${BANGER_VERSION}-rc.1) is older than the running daemon (${BANGER_VERSION})`,
  );
  assertEquals(daemonPids(h.home), [pid], "the daemon kept running");
});
