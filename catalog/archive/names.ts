/**
 * Folder-private checks on names coming from archives: path cleaning (no absolute
 * paths, no `..`), and names the ext4 tools cannot carry safely.
 *
 * @module
 */

/** Longest file name component ext4 stores, in bytes. */
export const MAX_NAME_BYTES = 255;
/** Longest path accepted (PATH_MAX less the terminating NUL). */
export const MAX_PATH_BYTES = 4095;

const encoder = new TextEncoder();

/** Makes control characters visible in messages. */
export function printable(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\x00-\x1f\x7f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/**
 * Why `name` (one path component) cannot be written into an ext4 image by
 * `mkfs.ext4 -d` plus a `debugfs` script, or `undefined` when it can. Control
 * characters (newline above all) would split a debugfs command.
 */
export function unsafeNameReason(name: string): string | undefined {
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return "it contains a control character";
  if (encoder.encode(name).length > MAX_NAME_BYTES) {
    return `a component is longer than ${MAX_NAME_BYTES} bytes`;
  }
  return undefined;
}

/**
 * Splits an archive path into its components: a leading `./` and empty or `.`
 * components are dropped; `[]` is the root (`.`, `./` or `/`).
 *
 * @returns the components, or a reason the path is refused (absolute, `..`, unsafe).
 */
export function splitArchivePath(path: string): string[] | string {
  // umoci writes the root directory as "/"; every other absolute path is refused
  if (/^[/.]+$/.test(path) && !path.includes("..")) return [];
  if (path.startsWith("/")) return "it is absolute";
  if (encoder.encode(path).length > MAX_PATH_BYTES) {
    return `it is longer than ${MAX_PATH_BYTES} bytes`;
  }
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  for (const part of parts) {
    if (part === "..") return 'it contains ".."';
    const why = unsafeNameReason(part);
    if (why) return why;
  }
  return parts;
}
