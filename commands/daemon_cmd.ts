/**
 * `banger daemon [start|stop|status]`.
 *
 * @module
 */

import { daemonStatus } from "../daemon/api/daemon.ts";
import type { CommandDef } from "./command_line.ts";
import { Flags } from "./command_line.ts";
import { callDaemon, daemonAnswers, startDaemon, stopDaemon } from "./client/daemon_control.ts";
import type { CliEnv } from "./env.ts";
import { formatDuration, renderFields } from "./output.ts";
import { SocketUnavailableError } from "./client/rpc_client.ts";

/** The `daemon` command group. */
export const daemonCommand: CommandDef<CliEnv> = {
  name: "daemon",
  summary: "Run or control the banger daemon",
  description: "Without a subcommand, runs the daemon in the foreground (logs go to " +
    "the state dir). Every other banger command starts it in the background when needed.",
  examples: ["banger daemon status", "banger daemon stop", "banger daemon"],
  run: async (_inv, env) => await env.local.runDaemon(),
  subcommands: [
    {
      name: "start",
      summary: "Start the daemon in the background if it is not running",
      run: async (_inv, env) => {
        if (await daemonAnswers(env.paths.socket)) {
          env.out("banger daemon is already running\n");
          return 0;
        }
        await startDaemon(env);
        const status = await callDaemon(env, daemonStatus, {});
        env.out(`banger daemon started (pid ${status.pid})\n`);
        return 0;
      },
    },
    {
      name: "stop",
      summary: "Stop the daemon; running VMs keep running",
      flags: [{
        name: "force",
        short: "f",
        kind: "bool",
        help: "Stop even while operations are in flight (they are cancelled)",
      }],
      run: async (inv, env) => {
        const pid = await stopDaemon(env, new Flags(inv).bool("force"));
        env.out(
          pid === undefined
            ? "banger daemon is not running\n"
            : `banger daemon stopped (pid ${pid})\n`,
        );
        return 0;
      },
    },
    {
      name: "status",
      summary: "Show the daemon's pid, version, uptime, socket, DNS listener and counts",
      flags: [{ name: "json", kind: "bool", help: "Print JSON" }],
      run: async (inv, env) => {
        let s;
        try {
          s = await env.client.call(daemonStatus, {});
        } catch (err) {
          if (!(err instanceof SocketUnavailableError)) throw err;
          if (new Flags(inv).bool("json")) env.out(JSON.stringify({ running: false }) + "\n");
          else env.out("banger daemon is not running\n");
          return 3;
        }
        if (new Flags(inv).bool("json")) {
          env.out(JSON.stringify({ running: true, ...s }, null, 2) + "\n");
          return 0;
        }
        env.out(renderFields([
          ["pid", String(s.pid)],
          ["version", s.version],
          ["uptime", formatDuration(s.uptime_ms)],
          ["socket", s.socket],
          ["dns", `${s.dns_listen} (${s.dns_listening ? "listening" : "not listening"})`],
          ["state", s.state_dir],
          ["operations", `${s.operations_in_flight} in flight`],
          ["vms", `${s.counts.vms} (${s.counts.vms_running} running)`],
          ["images", String(s.counts.images)],
          ["kernels", String(s.counts.kernels)],
        ]));
        return 0;
      },
    },
  ],
};
