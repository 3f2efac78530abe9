/**
 * Which Firecracker releases banger runs on, and reading the version of a binary.
 *
 * The floor is v1.8.0: the default (Debian cloud) kernel finds its virtio-mmio disks only
 * through the ACPI DSDT (`LNRO0005`), which Firecracker builds from v1.8.0; before that
 * the guest never sees `/dev/vda`. What differs inside the supported range is handled
 * where it matters: before v1.13.0 Firecracker does not add `pci=off` itself (the kernel
 * command line adds it), before v1.14.0 it opens the log and metrics files without
 * `O_CREAT` (the launcher creates them first).
 *
 * @module
 */

import { compareVersions } from "../../version.ts";
import { BangerError, errorMessage } from "../../errors.ts";
import { runText, whichProgram } from "../../os/exec.ts";

/** Oldest Firecracker banger boots guests with. */
export const FIRECRACKER_MIN = "1.8.0";
/** Newest Firecracker banger was checked against. */
export const FIRECRACKER_TESTED = "1.16.1";
/** First release that adds `pci=off` to the guest command line itself. */
export const FIRECRACKER_ADDS_PCI_OFF = "1.13.0";

/** How to get a supported Firecracker. */
export const FIRECRACKER_UPGRADE_HINT = `install Firecracker v${FIRECRACKER_MIN} or newer ` +
  "(and its jailer) from https://github.com/firecracker-microvm/firecracker/releases";

/** A Firecracker binary that cannot be used. */
export class FirecrackerVersionError extends BangerError {}

/** What {@linkcode probeFirecracker} found: a binary and its version, or why there is none. */
export type FirecrackerProbe =
  | { found: true; path: string; version: string }
  | { found: false; path?: string; problem: string };

/**
 * The version in `firecracker --version` output (`Firecracker v1.16.1`), or `undefined`.
 * Pure.
 */
export function parseFirecrackerVersion(text: string): string | undefined {
  return /^Firecracker v(\d+\.\d+\.\d+)/m.exec(text)?.[1];
}

/**
 * Why `version` cannot boot banger's guests, or `undefined` when it can. Pure.
 *
 * @example
 * ```ts
 * unsupportedFirecracker("1.7.0"); // "older than v1.8.0, the first release whose guests …"
 * ```
 */
export function unsupportedFirecracker(version: string): string | undefined {
  if (compareVersions(version, FIRECRACKER_MIN) >= 0) return undefined;
  return `older than v${FIRECRACKER_MIN}, the first release whose guests find their disks ` +
    "through ACPI (the default kernel has no other way)";
}

/** Whether Firecracker `version` adds `pci=off` to the guest command line itself. Pure. */
export function firecrackerAddsPciOff(version: string): boolean {
  return compareVersions(version, FIRECRACKER_ADDS_PCI_OFF) >= 0;
}

/**
 * Runs `<path> --version` and returns the version it reports.
 *
 * @throws {FirecrackerVersionError} `failed_precondition` when it does not run or prints
 *   no version.
 */
export async function readFirecrackerVersion(path: string): Promise<string> {
  let out: string;
  try {
    // Through `sh`, as the launch runs it: the daemon may run `sh`, not any path.
    out = await runText("sh", ["-c", 'exec "$0" --version', path], { timeoutMs: 5000 });
  } catch (err) {
    throw new FirecrackerVersionError(
      `Cannot read the version of Firecracker at ${path}: ${errorMessage(err)}`,
      { code: "failed_precondition", hint: FIRECRACKER_UPGRADE_HINT, cause: err },
    );
  }
  const version = parseFirecrackerVersion(out);
  if (!version) {
    throw new FirecrackerVersionError(
      `Cannot read the version of Firecracker at ${path}: "--version" printed ${
        JSON.stringify(out.slice(0, 80))
      }`,
      { code: "failed_precondition", hint: FIRECRACKER_UPGRADE_HINT },
    );
  }
  return version;
}

/**
 * Looks `binary` up (a name on PATH or a path) and reads its version, once: the daemon
 * does this at start, `doctor` on each run. Never throws.
 */
export async function probeFirecracker(binary: string): Promise<FirecrackerProbe> {
  const path = await whichProgram(binary);
  if (!path) return { found: false, problem: `"${binary}" not found` };
  try {
    return { found: true, path, version: await readFirecrackerVersion(path) };
  } catch (err) {
    return { found: false, path, problem: errorMessage(err) };
  }
}

/** Why `probe` cannot boot banger's guests, or `undefined` when it can. Pure. */
export function firecrackerProblem(probe: FirecrackerProbe): string | undefined {
  if (!probe.found) return probe.problem;
  const why = unsupportedFirecracker(probe.version);
  return why && `Firecracker at ${probe.path} is v${probe.version}, ${why}`;
}

/**
 * Refuses a Firecracker that cannot boot banger's guests.
 *
 * @returns the version.
 * @throws {FirecrackerVersionError} `failed_precondition` naming the found version, the
 *   minimum and how to upgrade (or that there is no usable binary).
 */
export function requireSupportedFirecracker(probe: FirecrackerProbe): string {
  const why = firecrackerProblem(probe);
  if (why || !probe.found) {
    throw new FirecrackerVersionError(`Cannot boot with Firecracker: ${why}`, {
      code: "failed_precondition",
      hint: FIRECRACKER_UPGRADE_HINT,
    });
  }
  return probe.version;
}
