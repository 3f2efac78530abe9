/**
 * The guest kernel command line, for either VMM. Pure.
 *
 * Always: `console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd` — the
 * serial console banger logs, a reboot that ends the VMM process (Firecracker exits on the
 * triple-fault style `reboot=k`; QEMU exits because banger runs it with `-no-reboot`), a
 * panic that stops the VM after 1 s instead of hanging, and no probing for PS/2 mice and
 * multiplexers a microVM does not have.
 *
 * Firecracker keeps ACPI PnP probing of the keyboard: its guests (≥ v1.8, ACPI) find the
 * i8042 only as the DSDT's PNP0303 device, and without it `SendCtrlAltDel` — banger's
 * stop for a guest SSH cannot reach — does nothing. It never gets `root=` (Firecracker
 * adds it from the drive marked as root); before v1.13 it gets `pci=off`, which later
 * releases add themselves, so the guest does not spend its boot probing PCI.
 *
 * QEMU `microvm` is stopped through its monitor, never the keyboard, so it skips PnP
 * (`i8042.nopnp`); it adds `root=/dev/vda rw` and `tsc_early_khz=<host kHz>`: under
 * software emulation microvm has no HPET or PM timer, and without a given TSC frequency
 * about 1 boot in 10 hangs while calibrating (reference/guest-boot-lab.md).
 *
 * @module
 */

import { BangerError } from "../errors.ts";
import { firecrackerAddsPciOff } from "./firecracker/version.ts";

/** A command line that cannot be built from the given values. */
export class KernelCmdlineError extends BangerError {}

/** Which VMM the guest boots under. */
export type Vmm = "firecracker" | "qemu-microvm";

/** Options for {@linkcode renderKernelCmdline}. */
export interface KernelCmdlineOptions {
  /** The VMM; decides `root=`, `i8042.nopnp`, `pci=off` and `tsc_early_khz=`. */
  vmm: Vmm;
  /** Firecracker's version (`1.16.1`); required for Firecracker (it decides `pci=off`). */
  firecrackerVersion?: string;
  /** Host TSC frequency in kHz (MHz × 1000 from /proc/cpuinfo); required for QEMU microvm. */
  tscKhz?: number;
  /** `init=` for the guest (e.g. `/usr/local/libexec/banger-first-boot`). */
  init?: string;
  /** More arguments, each one token (`quiet`, `systemd.unit=rescue.target`). */
  extra?: readonly string[];
}

/** x86 `COMMAND_LINE_SIZE`, including the terminating NUL. */
const COMMAND_LINE_SIZE = 2048;
/** Arguments every banger guest boots with, for either VMM. */
export const BASE_BOOT_ARGS: readonly string[] = [
  "console=ttyS0",
  "reboot=k",
  "panic=1",
  "i8042.noaux",
  "i8042.nomux",
  "i8042.dumbkbd",
];
/** Printable ASCII without space and quotes: one kernel argument, no injection. */
const TOKEN = /^[\x21\x23-\x26\x28-\x7e]+$/;

/**
 * Renders the kernel command line.
 *
 * @throws {KernelCmdlineError} when `tscKhz` is missing or not a positive integer for
 *   QEMU microvm, `firecrackerVersion` is missing for Firecracker, `init` is not an absolute path, an extra argument contains whitespace,
 *   a quote or a control character, or the result exceeds 2047 bytes.
 * @example
 * ```ts
 * renderKernelCmdline({ vmm: "qemu-microvm", tscKhz: 2596094 });
 * // "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd i8042.nopnp
 * //  root=/dev/vda rw tsc_early_khz=2596094" (one line)
 * renderKernelCmdline({ vmm: "firecracker", firecrackerVersion: "1.12.0" });
 * // "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd pci=off"
 * ```
 */
export function renderKernelCmdline(options: KernelCmdlineOptions): string {
  const bad = (why: string) =>
    new KernelCmdlineError(`Cannot build the kernel command line: ${why}`, {
      code: "invalid_argument",
    });
  const args = [...BASE_BOOT_ARGS];
  if (options.vmm === "qemu-microvm") {
    const khz = options.tscKhz;
    if (khz === undefined || !Number.isInteger(khz) || khz <= 0 || khz > 100_000_000) {
      throw bad(`tsc_early_khz must be the host's TSC frequency in kHz, got "${khz}"`);
    }
    args.push("i8042.nopnp", "root=/dev/vda", "rw", `tsc_early_khz=${khz}`);
  } else {
    const version = options.firecrackerVersion;
    if (version === undefined || !/^\d+\.\d+\.\d+$/.test(version)) {
      throw bad(`the Firecracker version must be known (x.y.z), got "${version}"`);
    }
    if (!firecrackerAddsPciOff(version)) args.push("pci=off");
  }
  if (options.init !== undefined) {
    if (!/^\/[A-Za-z0-9._/+-]*$/.test(options.init)) {
      throw bad(`init "${printable(options.init)}" must be an absolute path without spaces`);
    }
    args.push(`init=${options.init}`);
  }
  for (const arg of options.extra ?? []) {
    if (!TOKEN.test(arg)) {
      throw bad(`argument "${printable(arg)}" must be one token of printable ASCII, no quotes`);
    }
    args.push(arg);
  }
  const line = args.join(" ");
  if (line.length >= COMMAND_LINE_SIZE) {
    throw bad(`it is ${line.length} bytes; the limit is ${COMMAND_LINE_SIZE - 1}`);
  }
  return line;
}

function printable(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}
