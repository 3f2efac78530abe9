/**
 * banger's single executable. `banger daemon` runs the daemon; every other command is a
 * thin client of it. This file is the composition root: it resolves the directories,
 * builds the CLI's environment and injects the in-process operations, loading heavy
 * modules only for the commands that need them (a client call must start fast).
 *
 * @module
 */

import { runCli } from "./commands/cli.ts";
import { importLazily } from "./commands/_lazy.ts";
import type { CliEnv, TerminalStyle } from "./commands/env.ts";
import type { DoctorReport } from "./daemon/api/daemon.ts";
import type * as ConfigModule from "./daemon/config.ts";
import { RpcClient } from "./commands/client/rpc_client.ts";
import type { SystemLocalOps } from "./commands/system_cmd.ts";
import { BANGER_VERSION } from "./daemon/api/protocol.ts";
import {
  daemonPidLock,
  daemonSocket,
  daemonStartLock,
  daemonStartupLog,
  ensurePrivateDir,
  installRecordPath,
  type Layout,
  layoutEnvFromProcess,
  resolveLayout,
} from "./host/layout.ts";

const enc = new TextEncoder();

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = enc.encode(text);
  let at = 0;
  while (at < bytes.length) at += file.writeSync(bytes.subarray(at));
}

/**
 * Width and colour of stderr's terminal: colour only on a TTY, and never with `NO_COLOR`
 * set to anything (no-color.org) or `TERM=dumb`.
 */
function terminalStyle(): TerminalStyle {
  if (!Deno.stderr.isTerminal()) return {};
  const columns = Number(Deno.env.get("COLUMNS")) || consoleColumns();
  const color = !Deno.env.get("NO_COLOR") && Deno.env.get("TERM") !== "dumb";
  return { columns, color };
}

function consoleColumns(): number | undefined {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return undefined; // stderr is a terminal but stdout is not: no size to ask for
  }
}

/** One line of stdin, read a byte at a time so nothing past the newline is consumed. */
async function readStdinLine(): Promise<string | null> {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  for (;;) {
    const n = await Deno.stdin.read(one);
    if (n === null) return bytes.length ? new TextDecoder().decode(new Uint8Array(bytes)) : null;
    if (one[0] === 10) return new TextDecoder().decode(new Uint8Array(bytes));
    bytes.push(one[0]);
  }
}

/**
 * `deno run` arguments for `main.ts ROLE` under one of deno.json's permission sets. The
 * config is named, so a deno.json in the caller's working directory is never picked up.
 */
function denoRunArgs(permissionSet: "banger" | "owner" | "helper", role: string): string[] {
  const root = new URL("./", import.meta.url).pathname;
  return ["run", "-q", `--config=${root}deno.json`, `-P=${permissionSet}`, `${root}main.ts`, role];
}

/** How to start `banger daemon` in the background: the compiled binary, or deno + flags. */
function daemonCommand(): { program: string; args: string[] } {
  const exec = Deno.execPath();
  if (!/\/deno$/.test(exec)) return { program: exec, args: ["daemon"] };
  // Running from source: the permissions of the `banger` task. By name, not `exec`:
  // `deno` in the `run` list is resolved through PATH, which may be a symlink.
  return { program: "deno", args: denoRunArgs("banger", "daemon") };
}

/**
 * The command line a system unit runs for `role`: the compiled binary (the helper's sits
 * next to it as `banger-helper`), or deno with the `owner`/`helper` permission set.
 */
function unitExec(role: "daemon" | "helper", bin?: string): string[] {
  if (bin) return [bin, role];
  const exec = Deno.execPath();
  if (!/\/deno$/.test(exec)) {
    return role === "daemon"
      ? [exec, role]
      : [`${exec.replace(/\/[^/]*$/, "")}/banger-helper`, role];
  }
  return [exec, ...denoRunArgs(role === "daemon" ? "owner" : "helper", role)];
}

/** `banger system …` and `banger helper`, loaded only when used. */
function systemLocal(): { system: SystemLocalOps } {
  const load = () =>
    importLazily<{
      systemLocalOps(o: {
        defaultRoot: string;
        version: string;
        daemonExec(bin?: string): string[];
        helperExec(bin?: string): string[];
      }): SystemLocalOps;
    }>(new URL("./host/system/local_ops.ts", import.meta.url)).then((m) =>
      m.systemLocalOps({
        defaultRoot: Deno.env.get("BANGER_ROOT") || "/",
        version: BANGER_VERSION,
        daemonExec: (bin) => unitExec("daemon", bin),
        helperExec: (bin) => unitExec("helper", bin),
      })
    );
  return {
    system: {
      runHelper: async (root) => await (await load()).runHelper(root),
      install: async (o) => await (await load()).install(o),
      status: async (root) => await (await load()).status(root),
      restart: async (root) => await (await load()).restart(root),
      uninstall: async (root, purge) => await (await load()).uninstall(root, purge),
    },
  };
}

function buildEnv(layout: Layout, home: string): CliEnv {
  const uid = Deno.uid() ?? 0;
  return {
    out: (t) => writeAll(Deno.stdout, t),
    err: (t) => writeAll(Deno.stderr, t),
    stdoutIsTty: Deno.stdout.isTerminal(),
    stderrIsTty: Deno.stderr.isTerminal(),
    stdinIsTty: Deno.stdin.isTerminal(),
    style: terminalStyle(),
    readLine: () => readStdinLine(),
    client: new RpcClient(daemonSocket(layout)),
    paths: {
      socket: daemonSocket(layout),
      startLock: daemonStartLock(layout),
      startupLog: daemonStartupLog(layout),
      pidLock: daemonPidLock(layout),
      runtimeDir: layout.runtimeDir,
    },
    daemonCommand,
    ensureRuntimeDir: () => ensurePrivateDir(layout.runtimeDir, uid),
    local: {
      ...systemLocal(),
      runDaemon: async () => {
        const { runDaemon } = await importLazily<
          { runDaemon(l: Layout, o: { home: string }): Promise<number> }
        >(
          new URL("./daemon/daemon.ts", import.meta.url),
        );
        return await runDaemon(layout, { home });
      },
      doctor: async () => {
        const { runDoctor } = await importLazily<
          { runDoctor(l: Layout, o: { home: string }): Promise<DoctorReport> }
        >(
          new URL("./daemon/doctor.ts", import.meta.url),
        );
        return await runDoctor(layout, { home });
      },
      readConfig: async (file) => {
        const config = await importLazily<typeof ConfigModule>(
          new URL("./daemon/config.ts", import.meta.url),
        );
        const path = file ?? layout.configFile;
        const exists = await Deno.stat(path).then(() => true, () => false);
        return {
          path,
          exists,
          settings: config.configFileForm(await config.loadConfig(path, home)),
        };
      },
    },
  };
}

if (import.meta.main) {
  const processEnv = layoutEnvFromProcess();
  // A system install (its record exists) switches CLI and daemon to the system layout.
  if (!processEnv.BANGER_HOME && !processEnv.BANGER_MODE) {
    try {
      if (Deno.statSync(installRecordPath(processEnv.BANGER_ROOT ?? "/")).isFile) {
        processEnv.BANGER_MODE = "system";
      }
    } catch {
      // not installed (or an unusable BANGER_ROOT, which resolveLayout reports)
    }
  }
  let layout: Layout;
  try {
    layout = resolveLayout(processEnv, Deno.uid() ?? 0, Deno.uid() === 0);
  } catch (err) {
    writeAll(Deno.stderr, `error: ${err instanceof Error ? err.message : err}\n`);
    Deno.exit(1);
  }
  const env = buildEnv(layout, processEnv.HOME ?? "/root");
  Deno.exit(await runCli(Deno.args, env));
}
