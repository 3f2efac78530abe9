/**
 * One isolated smoke environment: its own network namespace, `BANGER_HOME`, daemon,
 * bridge, DNS port and catalog mirror. Nothing of the host's own config or VMs is read or
 * touched; {@linkcode SmokeEnv.teardown} removes everything it made, also after failures.
 *
 * @module
 */

import { type Instance, instanceFor } from "../host/instance.ts";
import { taskFlags } from "../tests/fixtures/banger_cli.ts";
import { prepareMirror } from "./artifacts.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MIRROR_PORT = 18080;

/** The output of one CLI call. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@linkcode SmokeEnv.banger}. */
export interface BangerOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  stdin?: string;
  /** Working directory. */
  cwd?: string;
  /** Kills the CLI after this long. @default {600000} */
  timeoutMs?: number;
}

/** Which VMM an environment's daemon uses. */
export type SmokeVmm = "qemu" | "firecracker";

/** A smoke environment. */
export class SmokeEnv {
  readonly ns: string;
  readonly home: string;
  readonly dnsPort: number;
  readonly vmm: SmokeVmm;
  readonly bridge: string;
  readonly #log: (line: string) => void;
  #mirror?: Deno.ChildProcess;

  private constructor(
    vmm: SmokeVmm,
    ns: string,
    home: string,
    dnsPort: number,
    log: (line: string) => void,
  ) {
    this.vmm = vmm;
    this.ns = ns;
    this.home = home;
    this.dnsPort = dnsPort;
    this.bridge = `bg-s${ns.slice("bgs-".length)}`;
    this.#log = log;
  }

  /** Creates the namespace, home, config and mirror. */
  static async create(vmm: SmokeVmm, log: (line: string) => void): Promise<SmokeEnv> {
    const id = crypto.randomUUID().slice(0, 6);
    const ns = `bgs-${id}`;
    const home = await Deno.makeTempDir({ dir: "/tmp", prefix: `bgs-${vmm.slice(0, 2)}-` });
    await Deno.chmod(home, 0o700);
    const dnsPort = 42100 + Math.floor(Math.random() * 800);
    const env = new SmokeEnv(vmm, ns, home, dnsPort, log);
    await env.#sh("ip", ["netns", "add", ns]);
    await env.#sh("ip", ["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
    await Deno.mkdir(`${home}/config`, { mode: 0o700 });
    const fake = `${ROOT}tests/fixtures/fake_firecracker.ts`;
    await Deno.writeTextFile(
      `${home}/config/config.toml`,
      [
        `vmm = "${vmm}"`,
        vmm === "firecracker" ? `firecracker_bin = "${fake}"` : "",
        `bridge_name = "${env.bridge}"`,
        `dns_listen = "127.0.0.1:${dnsPort}"`,
        `catalog_url = "http://127.0.0.1:${MIRROR_PORT}/"`,
        "tap_pool_size = 2",
        "[vm_defaults]",
        "vcpu = 2",
        "memory_mib = 768",
        'disk_size = "1G"',
        'system_overlay_size = "1G"',
        "",
      ].join("\n"),
    );
    const mirrorDir = `${home}/mirror`;
    await prepareMirror(mirrorDir);
    env.#mirror = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        "deno",
        "run",
        "-A",
        "--quiet",
        `${ROOT}smoke/mirror.ts`,
        mirrorDir,
        String(MIRROR_PORT),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    return env;
  }

  /** The banger instance of this home (its tap prefix and nft table). */
  get instance(): Instance {
    return instanceFor(`${this.home}/state`);
  }

  /** The daemon's environment for this VMM (the fake firecracker boots real guests in QEMU). */
  get daemonEnv(): Record<string, string> {
    return this.vmm === "firecracker" ? { FAKE_FC_MODE: "qemu" } : {};
  }

  /** Runs `banger <args>` inside the namespace. */
  async banger(args: string[], o: BangerOptions = {}): Promise<RunResult> {
    this.#log(`$ banger ${args.join(" ")}`);
    const r = await this.exec(["deno", "run", ...taskFlags(), `${ROOT}main.ts`, ...args], o);
    if (r.stdout) this.#log(r.stdout.trimEnd());
    if (r.stderr) this.#log(`[stderr] ${r.stderr.trimEnd()}`);
    this.#log(`[exit ${r.code}]`);
    return r;
  }

  /** Runs any program inside the namespace. */
  async exec(argv: string[], o: BangerOptions = {}): Promise<RunResult> {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", this.ns, ...argv],
      env: { BANGER_HOME: this.home, ...this.daemonEnv, ...o.env },
      cwd: o.cwd,
      stdin: o.stdin !== undefined ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(o.timeoutMs ?? 600_000),
    }).spawn();
    if (o.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(o.stdin));
      await w.close();
    }
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }

  /** Requests counted by the mirror, by path. */
  async mirrorCounts(): Promise<Record<string, number>> {
    const r = await this.exec([
      "deno",
      "eval",
      `console.log(await (await fetch("http://127.0.0.1:${MIRROR_PORT}/_counts")).text())`,
    ]);
    return JSON.parse(r.stdout.trim() || "{}");
  }

  /** The daemon's log and every VM's serial log, for failure reports. */
  async diagnostics(): Promise<string> {
    const parts: string[] = [];
    const read = async (p: string) => await Deno.readTextFile(p).catch(() => "");
    parts.push("=== daemon.log ===", await read(`${this.home}/state/daemon.log`));
    try {
      for await (const vm of Deno.readDir(`${this.home}/state/vms`)) {
        parts.push(
          `=== vm ${vm.name} serial.log ===`,
          await read(`${this.home}/state/vms/${vm.name}/serial.log`),
        );
      }
    } catch {
      // no VMs
    }
    return parts.join("\n");
  }

  /**
   * Deletes every VM, stops the daemon and the mirror, removes the namespace and home.
   * Returns what banger itself left behind once its VMs were deleted and its daemon
   * stopped (see {@linkcode SmokeEnv.leftovers}); teardown removes those too.
   */
  async teardown(): Promise<string[]> {
    const list = await this.banger(["vm", "list", "--json"], { timeoutMs: 60_000 }).catch(() =>
      undefined
    );
    const names = list?.code === 0
      ? (JSON.parse(list.stdout) as { name: string }[]).map((v) => v.name)
      : [];
    if (names.length) {
      await this.banger(["vm", "delete", "-f", ...names], { timeoutMs: 180_000 }).catch(() => {});
    }
    await this.banger(["daemon", "stop", "--force"], { timeoutMs: 60_000 }).catch(() => {});
    const leftovers = await this.leftovers();
    // Anything still running from this home (a VMM a failed scenario stranded) goes too.
    await new Deno.Command("pkill", { args: ["-9", "-f", this.home] }).output().catch(() => {});
    try {
      this.#mirror?.kill("SIGKILL");
      await this.#mirror?.status;
    } catch {
      // already gone
    }
    await this.#sh("ip", ["netns", "del", this.ns]).catch(() => {});
    await Deno.remove(this.home, { recursive: true }).catch(() => {});
    return leftovers;
  }

  /**
   * Processes started from this home (other than the mirror), loop devices backed by its
   * files, and links in its namespace other than `lo` and the bridge: with every VM
   * deleted and the daemon stopped (which deletes idle taps) there must be none.
   */
  async leftovers(): Promise<string[]> {
    const found: string[] = [];
    const processes = await output("pgrep", ["-af", this.home]);
    for (const line of processes) {
      if (Number(line.split(" ")[0]) !== this.#mirror?.pid) found.push(`process ${line}`);
    }
    for (const line of await output("losetup", ["-a"])) {
      if (line.includes(this.home)) found.push(`loop device ${line}`);
    }
    for (const line of await output("ip", ["-n", this.ns, "-o", "link", "show"])) {
      const name = line.split(":")[1]?.trim().split("@")[0];
      if (name && name !== "lo" && name !== this.bridge) found.push(`link ${name}`);
    }
    return found;
  }

  async #sh(program: string, args: string[]): Promise<void> {
    const out = await new Deno.Command(program, { args, stdout: "null", stderr: "piped" }).output();
    if (!out.success) {
      throw new Error(`${program} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
    }
  }
}

/** The non-empty lines a program prints; none when it fails (pgrep exits 1 on no match). */
async function output(program: string, args: string[]): Promise<string[]> {
  const out = await new Deno.Command(program, { args, stdout: "piped", stderr: "null" }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim() !== "");
}
