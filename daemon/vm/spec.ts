/**
 * VM names and specs: the DNS-label rule (DESIGN.md invariant 10), generated names, the
 * spec built from a request plus `[vm_defaults]`, and ref resolution (exact name, else a
 * unique prefix of a name or id). Pure.
 *
 * @module
 */

import {
  parsePublication,
  type PortPublication,
  PublishError,
  sameHostPort,
} from "../network/published_ports.ts";
import { BangerError } from "../../host/errors.ts";
import type { VmDefaults } from "../config.ts";
import { parseSize, SIZE_EXPECTED } from "../api/size.ts";
import type { VmRecord, VmSpec } from "../../store/vms.ts";

/** A VM request that cannot be honoured as written. */
export class VmSpecError extends BangerError {}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const MIN_DISK = 64 * 1024 ** 2;

/**
 * Checks a VM name: 1–63 of `a-z0-9-`, no leading or trailing `-`, no normalisation.
 *
 * @throws {VmSpecError} `invalid_argument` saying what is allowed.
 */
export function validateVmName(name: string): void {
  if (!LABEL.test(name)) {
    throw new VmSpecError(
      `Cannot use VM name "${name}": use 1–63 of a-z, 0-9 and "-", not starting or ending with "-"`,
      { code: "invalid_argument", hint: "names become <name>.vm DNS names and hostnames" },
    );
  }
}

const ADJECTIVES = [
  "amber",
  "brave",
  "calm",
  "dusty",
  "eager",
  "fuzzy",
  "gentle",
  "happy",
  "icy",
  "jolly",
  "keen",
  "lucky",
  "misty",
  "noble",
  "odd",
  "proud",
  "quick",
  "rusty",
  "shy",
  "tidy",
  "urban",
  "vivid",
  "witty",
  "young",
  "zesty",
];
const NOUNS = [
  "otter",
  "falcon",
  "badger",
  "heron",
  "lynx",
  "marten",
  "newt",
  "orca",
  "puffin",
  "quail",
  "raven",
  "stoat",
  "tapir",
  "urchin",
  "vole",
  "walrus",
  "yak",
  "zebra",
  "bison",
  "crane",
  "dingo",
  "egret",
  "ferret",
  "gecko",
  "hare",
];

/** A random readable name such as `brave-otter-3f`. */
export function generateVmName(random: () => number = Math.random): string {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)];
  const suffix = Math.floor(random() * 256).toString(16).padStart(2, "0");
  return `${pick(ADJECTIVES)}-${pick(NOUNS)}-${suffix}`;
}

/** Sizing fields of a create or set request. */
export interface SpecRequest {
  vcpu?: number;
  memory_mib?: number;
  disk_size?: string;
  system_overlay_size?: string;
  nat?: boolean;
  publish?: string[];
}

/**
 * Builds a VM spec from a request and the configured defaults.
 *
 * @throws {VmSpecError} `invalid_argument` naming the field and what is allowed.
 */
export function buildSpec(req: SpecRequest, defaults: VmDefaults, vmm: VmSpec["vmm"]): VmSpec {
  return {
    vcpu: checkVcpu(req.vcpu ?? defaults.vcpu),
    memoryMib: checkMemory(req.memory_mib ?? defaults.memoryMib),
    diskBytes: req.disk_size !== undefined
      ? checkSize("--disk-size", req.disk_size)
      : defaults.diskBytes,
    overlayBytes: req.system_overlay_size !== undefined
      ? checkSize("--system-overlay-size", req.system_overlay_size)
      : defaults.overlayBytes,
    nat: req.nat ?? false,
    vmm,
    ...(req.publish?.length ? { publish: checkPublications(req.publish) } : {}),
  };
}

/**
 * Parses `-p` values, refusing two that claim one host port.
 *
 * @throws {PublishError} `invalid_argument`.
 */
export function checkPublications(texts: readonly string[]): PortPublication[] {
  const out: PortPublication[] = [];
  for (const t of texts) {
    const p = parsePublication(t);
    if (out.some((q) => sameHostPort(p, q))) {
      throw new PublishError(
        `Cannot publish "${t}": host port ${p.hostPort}/${p.proto} is given twice`,
        {
          code: "invalid_argument",
        },
      );
    }
    out.push(p);
  }
  return out;
}

/** Checks a vCPU count (1–32, Firecracker's limit). */
export function checkVcpu(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 32) {
    throw new VmSpecError(`Cannot use --vcpu ${n}: it must be a whole number from 1 to 32`, {
      code: "invalid_argument",
    });
  }
  return n;
}

/** Checks a memory size in MiB (128 MiB – 1 TiB). */
export function checkMemory(n: number): number {
  if (!Number.isInteger(n) || n < 128 || n > 1024 * 1024) {
    throw new VmSpecError(
      `Cannot use --memory ${n}: it must be a whole number of MiB from 128 to 1048576`,
      {
        code: "invalid_argument",
      },
    );
  }
  return n;
}

/** Parses a disk size flag (at least 64 MiB). */
export function checkSize(flag: string, text: string): number {
  const bytes = parseSize(text);
  if (bytes === undefined || bytes < MIN_DISK) {
    throw new VmSpecError(
      `Cannot use ${flag} "${text}": it must be ${SIZE_EXPECTED} of at least 64M`,
      {
        code: "invalid_argument",
      },
    );
  }
  return bytes;
}

/**
 * Finds the VM `ref` names: an exact name, else an exact id, else a unique prefix of a
 * name or id.
 *
 * @throws {VmSpecError} `not_found`, or `invalid_argument` for an ambiguous prefix
 *   (listing the matches).
 */
export function resolveVmRef(vms: readonly VmRecord[], ref: string): VmRecord {
  const exact = vms.find((v) => v.name === ref) ?? vms.find((v) => v.id === ref);
  if (exact) return exact;
  const matches = vms.filter((v) => v.name.startsWith(ref) || v.id.startsWith(ref));
  if (matches.length === 1) return matches[0];
  if (matches.length > 1) {
    throw new VmSpecError(
      `VM ref "${ref}" is ambiguous: it matches ${
        matches.map((v) => `${v.name} (${v.id.slice(0, 8)})`).join(", ")
      }`,
      { code: "invalid_argument", hint: "give more of the name or id" },
    );
  }
  throw new VmSpecError(`Cannot find VM "${ref}"`, { code: "not_found", hint: "banger vm list" });
}
