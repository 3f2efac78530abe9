/**
 * The host side of guest networking: banger's bridge, the warm tap pool, opt-in NAT and
 * the `.vm` DNS zone. Guest addresses are allocated deterministically from `cidr` (the
 * lowest free one), inside the create reservation.
 *
 * @module
 */

import { errorMessage } from "../../host/errors.ts";
import { cidrContains, cidrSize, formatIpv4, parseCidr, parseIpv4 } from "../../host/net/ipv4.ts";
import type { PrivilegedOps } from "../../host/privileged/privileged_ops.ts";
import type { Config } from "../config.ts";
import { DnsServer } from "../dns/server.ts";
import type { Logger } from "../logger.ts";
import { TapPool } from "./tap_pool.ts";
import { PortForwarder } from "./published_ports.ts";
import { BangerError } from "../../host/errors.ts";
import type { Instance } from "../../host/instance.ts";

/** A network resource that cannot be had. */
export class NetworkError extends BangerError {}

/** Owns the bridge, taps, NAT rules and DNS records. */
export class HostNetwork {
  readonly taps: TapPool;
  readonly dns: DnsServer;
  /** Host ports forwarded to running guests. */
  readonly ports: PortForwarder;
  readonly #ops: PrivilegedOps;
  readonly #config: Config;
  readonly #log: Logger;
  #ready?: Promise<void>;

  readonly #instance: Instance;
  readonly #configFile: string;

  constructor(
    ops: PrivilegedOps,
    config: Config,
    log: Logger,
    where: { instance: Instance; configFile: string },
  ) {
    this.#ops = ops;
    this.#config = config;
    this.#log = log;
    this.#instance = where.instance;
    this.#configFile = where.configFile;
    this.taps = new TapPool(ops, where.instance, config.bridgeName, config.tapPoolSize, log);
    this.dns = new DnsServer({ logger: log });
    this.ports = new PortForwarder(log);
  }

  /** The guests' prefix length, e.g. 24. */
  get prefixLength(): number {
    return parseCidr(this.#config.cidr)?.prefixLength ?? 24;
  }

  /** The bridge address, the guests' gateway. */
  get gateway(): string {
    return this.#config.bridgeIp;
  }

  /**
   * Refuses to start when another banger instance (or any other interface) holds this
   * instance's bridge, CIDR or DNS port, naming the holder and the setting to change;
   * then serves DNS. Nothing on the host is changed before these checks pass, and the
   * bridge is not touched here at all: a daemon that never starts a VM changes nothing
   * on the host's network.
   *
   * @throws {NetworkError} `conflict`.
   */
  async start(): Promise<void> {
    const c = this.#config;
    const check = await this.#ops.checkGuestNetwork({ bridgeName: c.bridgeName, cidr: c.cidr });
    if (check.conflict) {
      const free = check.freeCidr ?? "172.16.1.0/24";
      const gateway = free.replace(/\.0\/24$/, ".1");
      throw new NetworkError(
        `Cannot start banger instance ${check.instanceId} (state dir ${this.#instance.stateDir}): ${check.conflict}`,
        {
          code: "conflict",
          hint: `give this instance a network of its own in ${this.#configFile}, e.g. ` +
            `bridge_name = "bg-br${check.instanceId}", cidr = "${free}", bridge_ip = "${gateway}"`,
        },
      );
    }
    try {
      await this.dns.start(c.dnsListen);
    } catch (err) {
      const at = `${c.dnsListen.host}:${c.dnsListen.port}`;
      throw new NetworkError(`Cannot serve the .vm zone on ${at}: ${errorMessage(err)}`, {
        code: "conflict",
        hint: `another banger instance (or another program) holds that port: set dns_listen ` +
          `in ${this.#configFile} to a free port`,
        cause: err,
      });
    }
  }

  /**
   * Creates the bridge (idempotent) and fills the tap pool, once per daemon; every VM
   * start awaits it before taking a tap.
   */
  ready(): Promise<void> {
    this.#ready ??= this.#ops.ensureBridge({
      name: this.#config.bridgeName,
      address: `${this.#config.bridgeIp}/${this.prefixLength}`,
    }).then(() => void this.taps.warm()).catch((err) => {
      this.#ready = undefined;
      throw err;
    });
    return this.#ready;
  }

  /** Stops DNS and deletes idle taps; taps of running VMs stay. */
  async stop(): Promise<void> {
    this.ports.closeAll();
    await this.dns.stop();
    await this.taps.drain();
  }

  /**
   * The lowest free guest address in `cidr`, skipping the network, broadcast and bridge
   * addresses. Pure given `used`.
   *
   * @throws {NetworkError} `conflict` when the network is full.
   */
  allocateIp(used: ReadonlySet<string>): string {
    const cidr = parseCidr(this.#config.cidr);
    const bridge = parseIpv4(this.#config.bridgeIp);
    if (!cidr || bridge === undefined) {
      throw new NetworkError(`Invalid cidr "${this.#config.cidr}"`);
    }
    const last = cidr.network + cidrSize(cidr) - 1;
    for (let a = cidr.network + 1; a < last; a++) {
      if (a === bridge || !cidrContains(cidr, a)) continue;
      const ip = formatIpv4(a);
      if (!used.has(ip)) return ip;
    }
    throw new NetworkError(
      `Cannot allocate a guest address: every address in ${this.#config.cidr} is taken`,
      {
        code: "conflict",
        hint:
          "delete VMs you no longer need (banger vm prune), or use a larger cidr in config.toml",
      },
    );
  }

  /** Installs NAT for a VM. */
  addNat(vmId: string, guestIp: string): Promise<void> {
    return this.#ops.addNat({ vmId, guestIp, bridge: this.#config.bridgeName });
  }

  /** Removes a VM's NAT rules (idempotent). */
  async removeNat(vmId: string): Promise<void> {
    await this.#ops.removeNat({ vmId });
  }

  /** VM ids that have NAT rules installed. */
  async natVmIds(): Promise<string[]> {
    return (await this.#ops.listNat()).map((e) => e.vmId);
  }

  /** Lets `tap` carry only the VM's own MAC and address (idempotent). */
  guard(vm: { id: string; guestIp: string; runtime: { mac: string } }, tap: string): Promise<void> {
    return this.#ops.guardTap({ vmId: vm.id, tap, guestIp: vm.guestIp, mac: vm.runtime.mac });
  }

  /** Removes a VM's tap guard (idempotent). */
  async unguard(vmId: string): Promise<void> {
    await this.#ops.unguardTap({ vmId });
  }

  /** VM ids that have a tap guard. */
  guardedVmIds(): Promise<string[]> {
    return this.#ops.listGuards({});
  }
}
