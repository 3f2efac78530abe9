/**
 * `config.toml`: every key, its default, and the parser that turns the file into a typed
 * {@linkcode Config} or an error naming the file, the key and what is allowed.
 *
 * @module
 */

import { parse as parseToml } from "smol-toml";
import { BangerError } from "../host/errors.ts";
import { cidrContains, parseCidr, parseIpv4 } from "../host/net/ipv4.ts";
import { DEFAULT_GUEST_NETWORK } from "../host/net/defaults.ts";
import { IMAGE_LIMITS } from "../catalog/oci/limits.ts";
import * as s from "../host/schema.ts";
import { parseSize, SIZE_EXPECTED } from "./api/size.ts";

/** A config file that cannot be used as written. */
export class ConfigError extends BangerError {}

/** Which VMM boots guests. `auto` picks Firecracker when it and a usable KVM exist. */
export type VmmChoice = "auto" | "firecracker" | "qemu";

/** A `[[file_sync]]` entry: a host file or directory copied onto the work disk at start. */
export interface FileSync {
  /** Absolute host path (a leading `~/` is expanded). */
  host: string;
  /** Guest path under `/root` (a leading `~/` means `/root/`). */
  guest: string;
  /** Mode of copied files; directories keep their source modes. */
  mode: number;
}

/** Sizes of a VM when the command line does not say. */
export interface VmDefaults {
  vcpu: number;
  memoryMib: number;
  diskBytes: number;
  overlayBytes: number;
}

/** banger's configuration, with every default filled in. */
export interface Config {
  logLevel: "debug" | "info" | "warn" | "error";
  firecrackerBin: string;
  jailerBin: string;
  qemuBin: string;
  vmm: VmmChoice;
  defaultImageName: string;
  /** Empty means the managed key under the state dir. */
  sshKeyPath: string;
  bridgeName: string;
  bridgeIp: string;
  cidr: string;
  tapPoolSize: number;
  /** How far one pulled image may expand (file bytes, entries). */
  imageLimits: { maxBytes: number; maxEntries: number };
  dnsListen: { host: string; port: number };
  defaultDns: string;
  catalogUrl: string;
  vmDefaults: VmDefaults;
  fileSync: FileSync[];
}

/** The defaults, exactly as documented in the README's configuration reference. */
export const DEFAULT_CONFIG: Config = {
  logLevel: "info",
  firecrackerBin: "firecracker",
  jailerBin: "",
  qemuBin: "qemu-system-x86_64",
  vmm: "auto",
  defaultImageName: "debian-bookworm",
  sshKeyPath: "",
  ...DEFAULT_GUEST_NETWORK,
  tapPoolSize: 4,
  imageLimits: { ...IMAGE_LIMITS },
  dnsListen: { host: "127.0.0.1", port: 42069 },
  defaultDns: "1.1.1.1",
  catalogUrl: "",
  vmDefaults: {
    vcpu: 2,
    memoryMib: 1024,
    diskBytes: 8 * 1024 ** 3,
    overlayBytes: 8 * 1024 ** 3,
  },
  fileSync: [],
};

/** Interface names banger creates start with this; the helper refuses any other. */
export const IFACE_PREFIX = "bg-";
const IFACE_NAME = /^bg-[a-z0-9-]{1,12}$/;
const MIN_DISK = 64 * 1024 ** 2;

const size = (min: number) =>
  s.refine(s.string(), SIZE_EXPECTED + (min > 1 ? ` of at least ${min / 1024 ** 2}M` : ""), (t) => {
    const v = parseSize(t);
    return v !== undefined && v >= min ? v : undefined;
  });

const fileSyncSchema = s.object({
  host: s.string({ min: 1 }),
  guest: s.string({ min: 1 }),
  mode: s.optional(s.string({ pattern: /^0?[0-7]{3,4}$/, expected: 'an octal mode like "0600"' })),
});

const fileSchema = s.object({
  log_level: s.optional(s.literal("debug", "info", "warn", "error")),
  firecracker_bin: s.optional(s.string({ min: 1 })),
  jailer_bin: s.optional(s.string()),
  qemu_bin: s.optional(s.string({ min: 1 })),
  vmm: s.optional(s.literal("auto", "firecracker", "qemu")),
  default_image_name: s.optional(
    s.string({ pattern: /^[a-z0-9][a-z0-9._-]{0,62}$/, expected: "an image name" }),
  ),
  ssh_key_path: s.optional(s.string()),
  bridge_name: s.optional(
    s.string({ pattern: IFACE_NAME, expected: 'an interface name "bg-…" of at most 15 bytes' }),
  ),
  bridge_ip: s.optional(
    s.refine(s.string(), "an IPv4 address", (t) => parseIpv4(t) !== undefined ? t : undefined),
  ),
  cidr: s.optional(
    s.refine(
      s.string(),
      'an IPv4 network like "172.16.0.0/24" (prefix 16–29)',
      (t) => {
        const c = parseCidr(t);
        return c && c.prefixLength >= 16 && c.prefixLength <= 29 ? t : undefined;
      },
    ),
  ),
  tap_pool_size: s.optional(s.number({ int: true, min: 0, max: 64 })),
  max_image_bytes: s.optional(size(MIN_DISK)),
  max_image_entries: s.optional(s.number({ int: true, min: 1, max: 1e9 })),
  dns_listen: s.optional(
    s.refine(s.string(), 'an address like "127.0.0.1:42069"', parseListen),
  ),
  default_dns: s.optional(
    s.refine(s.string(), "an IPv4 address", (t) => parseIpv4(t) !== undefined ? t : undefined),
  ),
  catalog_url: s.optional(
    s.string({ pattern: /^(https?:\/\/\S+)?$/, expected: "an http(s) URL" }),
  ),
  vm_defaults: s.optional(s.object({
    vcpu: s.optional(s.number({ int: true, min: 1, max: 32 })),
    memory_mib: s.optional(s.number({ int: true, min: 128, max: 1024 * 1024 })),
    disk_size: s.optional(size(MIN_DISK)),
    system_overlay_size: s.optional(size(MIN_DISK)),
  })),
  file_sync: s.optional(s.array(fileSyncSchema, { max: 256 })),
});

function parseListen(text: string): { host: string; port: number } | undefined {
  const m = /^([\d.]+):(\d{1,5})$/.exec(text);
  if (!m || parseIpv4(m[1]) === undefined) return undefined;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { host: m[1], port } : undefined;
}

/**
 * Reads and validates the config file. A missing file means all defaults.
 *
 * @param home the user's home, for `~/` in `[[file_sync]]`.
 * @throws {ConfigError} naming the file, the key and what is allowed.
 */
export async function loadConfig(path: string, home: string): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return structuredClone(DEFAULT_CONFIG);
    throw new ConfigError(`Cannot read config file "${path}": ${(err as Error).message}`, {
      code: "failed_precondition",
      cause: err,
    });
  }
  return parseConfig(text, path, home);
}

/**
 * Parses config text. Pure apart from nothing: used by {@linkcode loadConfig} and tests.
 *
 * @throws {ConfigError} naming `path`, the key and what is allowed.
 */
export function parseConfig(text: string, path: string, home: string): Config {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    throw new ConfigError(
      `Cannot parse config file "${path}": ${(err as Error).message.split("\n")[0]}`,
      { code: "invalid_argument", cause: err },
    );
  }
  let f: s.Infer<typeof fileSchema>;
  try {
    f = fileSchema.parse(raw);
  } catch (err) {
    if (err instanceof s.SchemaError) {
      throw new ConfigError(`Invalid config file "${path}": key ${err.message}`, {
        code: "invalid_argument",
        hint: "see the configuration reference in the README",
      });
    }
    throw err;
  }
  const d = DEFAULT_CONFIG;
  const config: Config = {
    logLevel: f.log_level ?? d.logLevel,
    firecrackerBin: f.firecracker_bin ?? d.firecrackerBin,
    jailerBin: f.jailer_bin ?? d.jailerBin,
    qemuBin: f.qemu_bin ?? d.qemuBin,
    vmm: f.vmm ?? d.vmm,
    defaultImageName: f.default_image_name ?? d.defaultImageName,
    sshKeyPath: expandHome(f.ssh_key_path ?? d.sshKeyPath, home),
    bridgeName: f.bridge_name ?? d.bridgeName,
    bridgeIp: f.bridge_ip ?? d.bridgeIp,
    cidr: f.cidr ?? d.cidr,
    tapPoolSize: f.tap_pool_size ?? d.tapPoolSize,
    imageLimits: {
      maxBytes: f.max_image_bytes ?? d.imageLimits.maxBytes,
      maxEntries: f.max_image_entries ?? d.imageLimits.maxEntries,
    },
    dnsListen: f.dns_listen ?? d.dnsListen,
    defaultDns: f.default_dns ?? d.defaultDns,
    catalogUrl: f.catalog_url ?? d.catalogUrl,
    vmDefaults: {
      vcpu: f.vm_defaults?.vcpu ?? d.vmDefaults.vcpu,
      memoryMib: f.vm_defaults?.memory_mib ?? d.vmDefaults.memoryMib,
      diskBytes: f.vm_defaults?.disk_size ?? d.vmDefaults.diskBytes,
      overlayBytes: f.vm_defaults?.system_overlay_size ?? d.vmDefaults.overlayBytes,
    },
    fileSync: (f.file_sync ?? []).map((e, i) => fileSyncEntry(e, i, path, home)),
  };
  const cidr = parseCidr(config.cidr);
  const bridge = parseIpv4(config.bridgeIp);
  if (!cidr || bridge === undefined || !cidrContains(cidr, bridge)) {
    throw new ConfigError(
      `Invalid config file "${path}": key "bridge_ip" (${config.bridgeIp}) must lie inside "cidr" (${config.cidr})`,
      { code: "invalid_argument" },
    );
  }
  return config;
}

/**
 * `config` as the file spells it: snake_case keys, every default filled in, sizes as byte
 * counts, modes in octal — what `banger config show` prints. Parsing it gives `config`
 * back. Pure.
 */
export function configFileForm(config: Config): Record<string, unknown> {
  return {
    log_level: config.logLevel,
    vmm: config.vmm,
    firecracker_bin: config.firecrackerBin,
    jailer_bin: config.jailerBin,
    qemu_bin: config.qemuBin,
    default_image_name: config.defaultImageName,
    ssh_key_path: config.sshKeyPath,
    bridge_name: config.bridgeName,
    bridge_ip: config.bridgeIp,
    cidr: config.cidr,
    tap_pool_size: config.tapPoolSize,
    max_image_bytes: String(config.imageLimits.maxBytes),
    max_image_entries: config.imageLimits.maxEntries,
    dns_listen: `${config.dnsListen.host}:${config.dnsListen.port}`,
    default_dns: config.defaultDns,
    catalog_url: config.catalogUrl,
    vm_defaults: {
      vcpu: config.vmDefaults.vcpu,
      memory_mib: config.vmDefaults.memoryMib,
      disk_size: String(config.vmDefaults.diskBytes),
      system_overlay_size: String(config.vmDefaults.overlayBytes),
    },
    file_sync: config.fileSync.map((f) => ({
      host: f.host,
      guest: f.guest,
      mode: `0${f.mode.toString(8)}`,
    })),
  };
}

function fileSyncEntry(
  e: { host: string; guest: string; mode?: string },
  index: number,
  path: string,
  home: string,
): FileSync {
  const bad = (key: string, what: string) =>
    new ConfigError(
      `Invalid config file "${path}": key "file_sync[${index}].${key}" ${what}`,
      { code: "invalid_argument" },
    );
  const checkPath = (key: string, p: string) => {
    if (/^~[^/]/.test(p)) throw bad(key, `cannot use "~user" paths, got "${p}"`);
    if (p.split("/").includes("..")) throw bad(key, `cannot contain "..", got "${p}"`);
  };
  checkPath("host", e.host);
  checkPath("guest", e.guest);
  const host = expandHome(e.host, home);
  if (!host.startsWith("/")) {
    throw bad("host", `must be absolute or start with "~/", got "${e.host}"`);
  }
  const guest = e.guest.startsWith("~/") ? `/root/${e.guest.slice(2)}` : e.guest;
  if (!guest.startsWith("/root/") || guest === "/root/") {
    throw bad("guest", `must be a path under "/root/" or "~/", got "${e.guest}"`);
  }
  return { host, guest: guest.replace(/\/+$/, ""), mode: e.mode ? parseInt(e.mode, 8) : 0o600 };
}

function expandHome(p: string, home: string): string {
  return p.startsWith("~/") ? `${home}/${p.slice(2)}` : p;
}
