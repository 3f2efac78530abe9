/**
 * `banger vm …`: create, run, lifecycle verbs (several refs each), list/show, logs,
 * stats, set, ssh; exec, ports and workspace come from `workspace_cmd.ts`.
 *
 * @module
 */

import {
  type BulkResult,
  type PublishedPortView,
  vmDelete,
  vmKill,
  vmList,
  vmLogs,
  vmPortList,
  vmPortPublish,
  vmPortUnpublish,
  vmPrune,
  vmRestart,
  vmSet,
  vmShow,
  vmStart,
  vmStats,
  vmStop,
  type VmView,
} from "../daemon/api/vm.ts";
import type { MethodDef } from "../daemon/api/protocol.ts";
import { formatSize, formatSizeShort } from "../daemon/api/size.ts";
import {
  type CommandDef,
  type FlagDef,
  Flags,
  type Invocation,
  UsageError,
} from "./command_line.ts";
import { callWithProgress, parseMemoryFlag, printBulk, printJson } from "./call.ts";
import { callDaemon } from "./client/daemon_control.ts";
import { type CliEnv, EXIT_BANGER_FAILED, ExitCode, FailedWith } from "./env.ts";
import { ask, confirm, formatAge, renderFields, renderTable } from "./output.ts";
import {
  createVm,
  envFlag,
  sshInto,
  stillRunningNote,
  vmRun,
  withGuestEnv,
} from "./guest/session.ts";
import {
  execCommand,
  portsCommand,
  prepareForRun,
  workspaceCommand,
  workspaceFlags,
} from "./workspace_cmd.ts";

const json: FlagDef = { name: "json", kind: "bool", help: "Print JSON" };
const force: FlagDef = { name: "force", short: "f", kind: "bool", help: "Do not ask" };
const sizing: FlagDef[] = [
  { name: "name", kind: "string", help: "VM name (a DNS label; default: generated)" },
  { name: "image", kind: "string", help: "Image (default: default_image_name)", complete: "image" },
  { name: "vcpu", kind: "number", help: "vCPUs (default: [vm_defaults] vcpu)" },
  { name: "memory", kind: "string", placeholder: "MIB", help: "Memory in MiB, or a size like 2G" },
  {
    name: "disk-size",
    kind: "string",
    placeholder: "SIZE",
    help: "Work disk (/root) size, e.g. 8G",
  },
  {
    name: "system-overlay-size",
    kind: "string",
    placeholder: "SIZE",
    help: "Root disk (/) size, grown from the image's at no cost (default 8G)",
  },
  { name: "nat", kind: "bool", help: "Give the guest outbound network access (NAT)" },
  {
    name: "publish",
    short: "p",
    kind: "list",
    placeholder: "[ADDR:]HOST:GUEST[/udp]",
    help: "Forward a host port to the guest (127.0.0.1 unless ADDR); repeatable",
  },
];
/** How much of a VM's id `vm list` shows: enough to be unique, and any prefix is a ref. */
const ID_WIDTH = 12;

const vmsArg = [{ name: "vm", variadic: true, complete: "vm" as const }];

function createFlags(inv: Invocation) {
  const f = new Flags(inv);
  return {
    name: f.string("name"),
    image: f.string("image"),
    vcpu: f.number("vcpu"),
    memory_mib: parseMemoryFlag(f.string("memory")),
    disk_size: f.string("disk-size"),
    system_overlay_size: f.string("system-overlay-size"),
    nat: f.bool("nat") || undefined,
    publish: f.list("publish").length ? f.list("publish") : undefined,
    no_start: f.bool("no-start") || undefined,
  };
}

function bulkVerb(
  name: string,
  summary: string,
  method: MethodDef<{ refs: string[] }, BulkResult>,
  done: string,
  progress = false,
): CommandDef<CliEnv> {
  return {
    name,
    summary,
    args: vmsArg,
    flags: [json],
    run: async (inv, env) => {
      const r = progress
        ? await callWithProgress(env, method, { refs: inv.args })
        : await callDaemon(env, method, { refs: inv.args });
      return printBulk(env, r, done, new Flags(inv).bool("json"));
    },
  };
}

function showVm(env: CliEnv, v: VmView): void {
  const rows: [string, string][] = [
    ["name", v.name],
    ["id", v.id],
    ["status", v.status],
    ["image", v.image],
    ["address", `${v.guest_ip} (${v.dns_name})`],
    [
      "spec",
      `${v.vcpu} vcpu · ${v.memory_mib} MiB · ${formatSize(v.disk_bytes)} disk · ${v.vmm}${
        v.nat ? " · nat" : ""
      }`,
    ],
    ["created", v.created_at],
  ];
  if (v.started_at) rows.push(["started", v.started_at]);
  if (v.pid !== undefined) rows.push(["pid", String(v.pid)]);
  if (v.tap) rows.push(["tap", v.tap]);
  if (v.workspace) {
    rows.push([
      "workspace",
      `${v.workspace.guest_path} (from ${v.workspace.host_path} @ ${
        v.workspace.base_commit.slice(0, 12)
      })`,
    ]);
  }
  if (v.last_error) rows.push(["last error", `${v.last_error.step}: ${v.last_error.message}`]);
  for (const e of v.errors) rows.push(["problem", e]);
  env.out(renderFields(rows));
}

/** The `vm` command group. */
function printPublished(env: CliEnv, r: { vm: string; ports: PublishedPortView[] }, json: boolean) {
  if (json) return printJson(env, r);
  if (r.ports.length === 0) return env.out(`${r.vm} publishes no ports\n`);
  env.out(renderTable(
    ["HOST", "GUEST", "PROTO", "STATE"],
    r.ports.map((p) => [
      `${p.address}:${p.host_port}`,
      `${r.vm}.vm:${p.guest_port}`,
      p.proto,
      p.active ? "open" : "when running",
    ]),
  ));
}

/** `vm port publish|unpublish|list`. */
const portCommand: CommandDef<CliEnv> = {
  name: "port",
  summary: "Publish guest ports on the host (like docker run -p)",
  subcommands: [
    {
      name: "publish",
      summary: "Forward a host port to the guest, now and at every start",
      args: [{ name: "vm", complete: "vm" }, { name: "spec", variadic: true }],
      flags: [json],
      examples: [
        "banger vm port publish dev 3000",
        "banger vm port publish dev 8080:80 5353:53/udp",
      ],
      run: async (inv, env) => {
        let r: { vm: string; ports: PublishedPortView[] } | undefined;
        for (const spec of inv.args.slice(1)) {
          r = await callDaemon(env, vmPortPublish, { ref: inv.args[0], publish: spec });
        }
        if (r) printPublished(env, r, new Flags(inv).bool("json"));
      },
    },
    {
      name: "unpublish",
      summary: "Stop forwarding a host port",
      args: [{ name: "vm", complete: "vm" }, { name: "port" }],
      flags: [json],
      examples: ["banger vm port unpublish dev 3000", "banger vm port unpublish dev 5353/udp"],
      run: async (inv, env) => {
        const m = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(inv.args[1]);
        if (!m) throw new UsageError(`"${inv.args[1]}" is not PORT or PORT/udp`, inv.path);
        const r = await callDaemon(env, vmPortUnpublish, {
          ref: inv.args[0],
          host_port: Number(m[1]),
          proto: m[2] === "tcp" || m[2] === "udp" ? m[2] : undefined,
        });
        printPublished(env, r, new Flags(inv).bool("json"));
      },
    },
    {
      name: "list",
      aliases: ["ls"],
      summary: "A VM's published ports, host side and guest side",
      args: [{ name: "vm", complete: "vm" }],
      flags: [json],
      run: async (inv, env) => {
        const r = await callDaemon(env, vmPortList, { ref: inv.args[0] });
        printPublished(env, r, new Flags(inv).bool("json"));
      },
    },
  ],
};

export const vmCommand: CommandDef<CliEnv> = {
  name: "vm",
  summary: "Create, run and manage sandbox VMs",
  subcommands: [
    {
      name: "run",
      summary: "Create a VM and open a shell in it (or run a command)",
      description: "Creates a VM (pulling the image and kernel if missing), then opens SSH. " +
        "With PATH, the git repo there is copied to /root/repo first (tracked files only unless " +
        "--include-untracked) and the shell or command runs there. With `-- cmd`, runs the " +
        "command and exits with its exit code.",
      args: [{ name: "path", optional: true, complete: "dir" }],
      rest: "cmd...",
      flags: [
        ...sizing,
        { name: "rm", kind: "bool", help: "Delete the VM when the shell or command ends" },
        { name: "detach", short: "d", kind: "bool", help: "Create and prepare, then exit" },
        envFlag,
        ...workspaceFlags,
      ],
      examples: [
        "banger vm run",
        "banger vm run ./repo",
        "banger vm run --rm ./repo -- make test",
        "banger vm run ./repo --dry-run            # list what would be copied",
        "banger vm run --rm -- sh -c 'exit 42'   # exits 42",
      ],
      run: async (inv, env) => {
        const f = new Flags(inv);
        if (f.bool("detach") && f.bool("rm")) {
          throw new UsageError("--detach and --rm cannot be combined", inv.path);
        }
        if (f.bool("detach") && inv.rest !== undefined) {
          throw new UsageError("--detach cannot be combined with a command after --", inv.path);
        }
        if (inv.args[0] === undefined) {
          const stray = workspaceFlags.map((w) => w.name).filter((n) => inv.flags.has(n));
          if (stray.length) {
            throw new UsageError(`--${stray[0]} needs a repository PATH`, inv.path);
          }
        }
        const create = createFlags(inv);
        const command = withGuestEnv(inv.rest, f.list("env"), inv.path);
        try {
          // The repository is checked before anything is created; a dry run stops there.
          const afterCreate = inv.args[0] === undefined
            ? undefined
            : await prepareForRun(env, inv, inv.args[0]);
          if (inv.args[0] !== undefined && afterCreate === undefined) return 0;
          return await vmRun(env, {
            create,
            command,
            rm: f.bool("rm"),
            detach: f.bool("detach"),
            afterCreate,
            inWorkspace: afterCreate !== undefined,
          });
        } catch (err) {
          // The command's own exit code passes through; banger's failures are 125.
          if (err instanceof ExitCode || err instanceof UsageError) throw err;
          throw new FailedWith(EXIT_BANGER_FAILED, err);
        }
      },
    },
    {
      name: "create",
      summary: "Create a VM (and boot it unless --no-start)",
      flags: [
        ...sizing,
        { name: "no-start", kind: "bool", help: "Only create it" },
        json,
      ],
      examples: ["banger vm create --name dev --vcpu 4 --memory 4G"],
      run: async (inv, env) => {
        const vm = await createVm(env, createFlags(inv));
        if (new Flags(inv).bool("json")) printJson(env, vm);
        else env.out(`${vm.name} ${vm.status} (${vm.guest_ip})\n`);
        return 0;
      },
    },
    bulkVerb("start", "Boot stopped VMs", vmStart, "started", true),
    bulkVerb("stop", "Stop VMs gracefully (guest syncs first; disks are kept)", vmStop, "stopped"),
    bulkVerb("restart", "Stop then start VMs (a fresh boot)", vmRestart, "restarted", true),
    {
      name: "kill",
      summary: "Signal the VMM now (when stop hangs); the VM ends stopped",
      args: vmsArg,
      flags: [{
        name: "signal",
        kind: "string",
        placeholder: "SIG",
        help: "Signal to send (default KILL)",
      }, json],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const r = await callDaemon(env, vmKill, { refs: inv.args, signal: f.string("signal") });
        return printBulk(env, r, "killed", f.bool("json"));
      },
    },
    {
      name: "delete",
      aliases: ["rm"],
      summary: "Delete VMs and their disks (irreversible); a running one after asking, or with -f",
      args: vmsArg,
      flags: [{ ...force, help: "Also delete running VMs, without asking" }, json],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const r = await callDaemon(env, vmDelete, { refs: inv.args, force: f.bool("force") });
        // The daemon refuses running VMs without force (`conflict`): ask about just those.
        const running = r.results.filter((x) => !x.ok && x.error?.code === "conflict");
        const names = running.map((x) => x.ref).join(", ");
        if (
          running.length && env.stdinIsTty &&
          await ask(
            env,
            `Deleting ${names} stops ${running.length > 1 ? "them" : "it"} first (running).`,
          )
        ) {
          const again = await callDaemon(env, vmDelete, {
            refs: running.map((x) => x.ref),
            force: true,
          });
          r.results = r.results.map((x) => again.results.find((y) => y.ref === x.ref) ?? x);
        }
        return printBulk(env, r, "deleted", f.bool("json"));
      },
    },
    {
      name: "prune",
      summary: "Delete every VM that is not running",
      flags: [force],
      run: async (inv, env) => {
        if (!new Flags(inv).bool("force")) {
          const { vms } = await callDaemon(env, vmList, {});
          const victims = vms.filter((v) => v.status !== "running" && v.status !== "starting");
          if (!victims.length) return void env.out("nothing to prune\n");
          await confirm(env, `This deletes ${victims.map((v) => v.name).join(", ")}.`, false);
        }
        const r = await callDaemon(env, vmPrune, {});
        env.out(
          r.deleted.length ? r.deleted.map((n) => `deleted ${n}\n`).join("") : "nothing to prune\n",
        );
        return 0;
      },
    },
    {
      name: "list",
      aliases: ["ls"],
      summary: "List VMs",
      flags: [
        { name: "quiet", short: "q", kind: "bool", help: "Print names only, one per line" },
        json,
      ],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const { vms } = await callDaemon(env, vmList, {});
        if (f.bool("json")) return void printJson(env, vms);
        if (f.bool("quiet")) return void env.out(vms.map((v) => `${v.name}\n`).join(""));
        const now = Date.now();
        env.out(renderTable(
          [
            "ID",
            "NAME",
            "STATUS",
            "IMAGE",
            "IP",
            "VCPU",
            "MEM",
            "DISK",
            "VMM",
            "WORKSPACE",
            "CREATED",
          ],
          vms.map((v) => [
            v.id.slice(0, ID_WIDTH),
            v.name,
            v.status,
            v.image,
            v.guest_ip,
            String(v.vcpu),
            `${v.memory_mib}M`,
            formatSizeShort(v.disk_bytes),
            v.vmm,
            v.workspace?.guest_path ?? "-",
            formatAge(v.created_at, now),
          ]),
        ));
        return 0;
      },
    },
    {
      name: "show",
      summary: "Show one VM",
      args: [{ name: "vm", complete: "vm" }],
      flags: [json],
      run: async (inv, env) => {
        const v = await callDaemon(env, vmShow, { ref: inv.args[0] });
        if (new Flags(inv).bool("json")) printJson(env, v);
        else showVm(env, v);
        return 0;
      },
    },
    {
      name: "logs",
      summary: "Show the serial console (-f to follow)",
      args: [{ name: "vm", complete: "vm" }],
      flags: [
        { name: "follow", short: "f", kind: "bool", help: "Keep printing new output" },
        { name: "lines", short: "n", kind: "number", help: "Lines to show (default 200)" },
      ],
      run: async (inv, env) => {
        const f = new Flags(inv);
        let r = await callDaemon(env, vmLogs, { ref: inv.args[0], lines: f.number("lines") });
        env.out(r.text);
        while (f.bool("follow") && r.running) {
          await new Promise((res) => setTimeout(res, 500));
          r = await callDaemon(env, vmLogs, { ref: inv.args[0], offset: r.offset });
          env.out(r.text);
        }
        return 0;
      },
    },
    {
      name: "stats",
      summary: "Show VMM metrics and process figures (JSON)",
      args: [{ name: "vm", complete: "vm" }],
      run: async (inv, env) => {
        printJson(env, await callDaemon(env, vmStats, { ref: inv.args[0] }));
        return 0;
      },
    },
    {
      name: "set",
      summary: "Change vCPUs, memory or NAT, or grow the disk, of stopped VMs",
      args: vmsArg,
      flags: [
        { name: "vcpu", kind: "number", help: "vCPUs" },
        {
          name: "memory",
          kind: "string",
          placeholder: "MIB",
          help: "Memory in MiB, or a size like 2G",
        },
        {
          name: "disk-size",
          kind: "string",
          placeholder: "SIZE",
          help: "Grow the work disk to this size",
        },
        {
          name: "system-overlay-size",
          kind: "string",
          placeholder: "SIZE",
          help: "Grow the root disk (/) to this size; the guest grows / at its next boot",
        },
        { name: "nat", kind: "bool", help: "Enable NAT" },
        { name: "no-nat", kind: "bool", help: "Disable NAT" },
        json,
      ],
      examples: ["banger vm set dev --vcpu 4 --memory 4G"],
      run: async (inv, env) => {
        const f = new Flags(inv);
        const r = await callDaemon(env, vmSet, {
          refs: inv.args,
          vcpu: f.number("vcpu"),
          memory_mib: parseMemoryFlag(f.string("memory")),
          disk_size: f.string("disk-size"),
          system_overlay_size: f.string("system-overlay-size"),
          nat: f.bool("nat") ? true : f.bool("no-nat") ? false : undefined,
        });
        return printBulk(env, r, "updated", f.bool("json"));
      },
    },
    {
      name: "ssh",
      summary: "Open a shell in a running VM (or run a command)",
      args: [{ name: "vm", complete: "vm" }],
      rest: "cmd...",
      examples: ["banger vm ssh dev", "banger vm ssh dev -- uname -a"],
      run: async (inv, env) => {
        const code = await sshInto(env, inv.args[0], inv.rest);
        if (inv.rest === undefined) env.err(await stillRunningNote(env, inv.args[0]));
        return code;
      },
    },
    {
      name: "cp",
      summary: "Copy files or directories between the host and a VM",
      description: "Like docker cp: one side is VM:PATH. Directories copy recursively; modes " +
        "and mtimes are kept (what lands in the guest is root's, what comes out is yours). A " +
        "directory DEST receives the sources; otherwise the one source is named DEST. `-` is a " +
        "tar stream on stdin (into the VM) or stdout (out of it). A failed copy leaves nothing " +
        "at DEST.",
      args: [{ name: "paths", variadic: true, complete: "vm" }],
      examples: [
        "banger vm cp ./data dev:/root/",
        "banger vm cp dev:/root/repo/build ./build",
        "tar -c src | banger vm cp - dev:/root/",
        "banger vm cp dev:/var/log - | tar -t",
      ],
      run: async (inv, env) => {
        const { planCopy, runCopy } = await import("./guest/cp.ts");
        return await runCopy(env, planCopy(inv.args));
      },
    },
    portCommand,
    execCommand,
    portsCommand,
    workspaceCommand,
  ],
};
