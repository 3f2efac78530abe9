/**
 * The paths privileged operations may touch: inside banger's state, cache and runtime
 * directories, spelled canonically, with no symlink on any component. A compromised or
 * confused caller cannot redirect a root-run `losetup`/`debugfs`/`mkfs` through a
 * symlink into `/etc` (reference-tool-inventory.md §3.1, lesson 10).
 *
 * @module
 */

import { BangerError } from "../errors.ts";
import type { Layout } from "../layout.ts";

/** A path was refused: malformed (`invalid_argument`) or not banger's (`permission_denied`). */
export class ManagedPathError extends BangerError {}

/** What {@linkcode ManagedPaths.check} requires of the path. */
export interface PathRequirement {
  /** Must exist. @default {false} (its parent must exist then) */
  mustExist?: boolean;
  /** When it exists, it must be this kind. */
  kind?: "file" | "dir";
}

/**
 * Validates paths against banger's managed directories.
 *
 * @example
 * ```ts
 * const paths = new ManagedPaths(layout);
 * const image = await paths.check(`${layout.stateDir}/images/debian/rootfs.ext4`, {
 *   mustExist: true,
 *   kind: "file",
 * });
 * ```
 */
export class ManagedPaths {
  /** The managed roots: stateDir, cacheDir and runtimeDir. */
  readonly roots: readonly string[];

  /**
   * Takes the roots from `layout`.
   *
   * @throws {ManagedPathError} when a root is not a canonical absolute path.
   */
  constructor(layout: Pick<Layout, "stateDir" | "cacheDir" | "runtimeDir">) {
    this.roots = [layout.stateDir, layout.cacheDir, layout.runtimeDir].map((r) => {
      const canonical = canonicalPath(r);
      if (canonical !== r) {
        throw new ManagedPathError(`Cannot manage "${r}": it is not a canonical absolute path`, {
          code: "invalid_argument",
        });
      }
      return r;
    });
  }

  /**
   * Checks the spelling only: absolute, canonical (no `.`, `..`, `//`, trailing `/`) and
   * strictly inside a managed root. Pure.
   *
   * @throws {ManagedPathError} `invalid_argument` or `permission_denied`.
   */
  checkLexical(path: string, what = "path"): string {
    if (typeof path !== "string" || canonicalPath(path) !== path) {
      throw new ManagedPathError(
        `Cannot use ${what} "${path}": it must be an absolute path without ".", ".." or "//"`,
        { code: "invalid_argument" },
      );
    }
    if (!this.inside(path)) {
      throw new ManagedPathError(
        `Cannot use ${what} "${path}": it is outside banger's directories (${
          this.roots.join(", ")
        })`,
        { code: "permission_denied" },
      );
    }
    return path;
  }

  /** Whether `path` (canonical) lies strictly inside a managed root. Pure. */
  inside(path: string): boolean {
    return this.roots.some((root) => path.startsWith(root === "/" ? "/" : `${root}/`));
  }

  /**
   * {@linkcode checkLexical}, then `lstat` every component from `/` down: none may be a
   * symlink, and the existing part must match `requirement`.
   *
   * @throws {ManagedPathError} `permission_denied` for a symlink or a path outside the
   *   managed roots, `invalid_argument` for a malformed, missing or wrong-kind path.
   */
  async check(path: string, requirement: PathRequirement = {}, what = "path"): Promise<string> {
    this.checkLexical(path, what);
    const parts = path.split("/").slice(1);
    let current = "";
    for (let i = 0; i < parts.length; i++) {
      current += `/${parts[i]}`;
      let info: Deno.FileInfo;
      try {
        info = await Deno.lstat(current);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
        const isLast = i === parts.length - 1;
        if (requirement.mustExist || !isLast) {
          throw new ManagedPathError(`Cannot use ${what} "${path}": "${current}" does not exist`, {
            code: "invalid_argument",
          });
        }
        return path;
      }
      if (info.isSymlink) {
        throw new ManagedPathError(`Cannot use ${what} "${path}": "${current}" is a symlink`, {
          code: "permission_denied",
          hint: "banger's directories must not contain symlinks",
        });
      }
      if (i < parts.length - 1 && !info.isDirectory) {
        throw new ManagedPathError(
          `Cannot use ${what} "${path}": "${current}" is not a directory`,
          {
            code: "invalid_argument",
          },
        );
      }
      if (i === parts.length - 1 && requirement.kind) {
        const ok = requirement.kind === "dir" ? info.isDirectory : info.isFile;
        if (!ok) {
          throw new ManagedPathError(
            `Cannot use ${what} "${path}": it is not a ${
              requirement.kind === "dir" ? "directory" : "regular file"
            }`,
            { code: "invalid_argument" },
          );
        }
      }
    }
    return path;
  }
}

/**
 * The canonical spelling of an absolute path (`.`, `..`, repeated and trailing `/`
 * resolved lexically), or `undefined` when `path` is not absolute or holds a NUL. Pure.
 */
export function canonicalPath(path: string): string | undefined {
  if (!path.startsWith("/") || path.includes("\0")) return undefined;
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return `/${out.join("/")}`;
}
