/**
 * Kernel module dependencies and the order to load them in. The data comes from the
 * kernel package itself: `modules.dep` when present (depmod's output), otherwise each
 * module's own `.modinfo` `depends=` field (what modpost records at build time, and what
 * Debian's packages carry, since they ship no `modules.dep`). Pure: no `Deno.*` calls.
 *
 * @module
 */

import { BangerError } from "../../host/errors.ts";
import { elfSectionBytes, parseElf64 } from "./_elf.ts";

/** A module graph that cannot be ordered. */
export class ModuleOrderError extends BangerError {}

/** Normalises a module name or path: `kernel/x/virtio-pci.ko.xz` → `virtio_pci`. */
export function moduleName(pathOrName: string): string {
  const base = pathOrName.slice(pathOrName.lastIndexOf("/") + 1);
  return base.replace(/\.ko(\.(xz|gz|zst))?$/, "").replaceAll("-", "_");
}

/**
 * Parses depmod's `modules.dep` (`path.ko: dep.ko dep2.ko`) into name → direct and
 * indirect dependencies (depmod lists the whole closure; ordering handles that).
 */
export function parseModulesDep(text: string): Map<string, string[]> {
  const deps = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = moduleName(line.slice(0, colon).trim());
    deps.set(name, line.slice(colon + 1).trim().split(/\s+/).filter(Boolean).map(moduleName));
  }
  return deps;
}

/**
 * Reads `depends=` from a module file's `.modinfo` section (NUL-separated `key=value`).
 *
 * @throws {ModuleOrderError} when `ko` is not an ELF object with a `.modinfo` section.
 */
export function modinfoDepends(ko: Uint8Array, what = "module"): string[] {
  const elf = parseElf64(ko);
  const modinfo = elf ? elfSectionBytes(ko, elf, ".modinfo") : undefined;
  if (!modinfo) {
    throw new ModuleOrderError(`Cannot read "${what}": it is not a kernel module with .modinfo`, {
      code: "invalid_argument",
      hint: "compressed modules (.ko.xz, .ko.zst) must be decompressed first",
    });
  }
  const fields = new TextDecoder().decode(modinfo).split("\0");
  const depends = fields.find((f) => f.startsWith("depends="))?.slice("depends=".length) ?? "";
  return depends.split(",").filter(Boolean).map(moduleName);
}

/**
 * The load order for `wanted` and everything they depend on: each module after all of
 * its dependencies, otherwise in the order asked for (a depth-first walk), so the result
 * is deterministic.
 *
 * @param depsOf a module's dependencies; `undefined` when the module does not exist.
 * @throws {ModuleOrderError} for an unknown module or a dependency cycle.
 * @example
 * ```ts
 * const deps = new Map([["virtio", ["virtio_ring"]], ["virtio_ring", []]]);
 * moduleLoadOrder(["virtio"], (m) => deps.get(m)); // ["virtio_ring", "virtio"]
 * ```
 */
export function moduleLoadOrder(
  wanted: readonly string[],
  depsOf: (name: string) => readonly string[] | undefined,
): string[] {
  const order: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, path: string[]): void => {
    const seen = state.get(name);
    if (seen === "done") return;
    if (seen === "visiting") {
      throw new ModuleOrderError(
        `Cannot order kernel modules: dependency cycle ${[...path, name].join(" -> ")}`,
      );
    }
    const deps = depsOf(name);
    if (deps === undefined) {
      throw new ModuleOrderError(
        `Cannot find kernel module "${name}"${
          path.length ? ` (needed by "${path[path.length - 1]}")` : ""
        }: it is not in the kernel package`,
        { code: "not_found", hint: "it may be built into this kernel, or named differently" },
      );
    }
    state.set(name, "visiting");
    for (const dep of deps) visit(dep, [...path, name]);
    state.set(name, "done");
    order.push(name);
  };
  for (const name of wanted) visit(moduleName(name), []);
  return order;
}
