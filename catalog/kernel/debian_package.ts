/**
 * Fetches Debian packages into banger's cache with the host's own apt configuration
 * (`apt-get download`, which verifies the archive signature and the package hash) and
 * unpacks them with `dpkg-deb -x`. Nothing is ever installed on the host.
 *
 * `apt-get download --print-uris` first names the file and its SHA256; a cached `.deb`
 * with that name and hash is reused without contacting the mirror. Downloads land in a
 * private temporary directory (apt writes into its working directory) and are renamed
 * into `<cacheDir>/debs/`, so concurrent fetches never see a partial file.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { BangerError, ExecError } from "../../host/errors.ts";
import { run, runText } from "../../host/os/exec.ts";

/** A Debian package that cannot be fetched or unpacked. */
export class DebianPackageError extends BangerError {}

/** A downloaded package. */
export interface DebianPackage {
  /** Package name, e.g. `busybox-static`. */
  name: string;
  /** Its version, e.g. `1:1.35.0-4+deb12u1+b1`. */
  version: string;
  /** Absolute path of the cached `.deb`. */
  debPath: string;
  /** SHA256 of the `.deb`, hex. */
  sha256: string;
  /** The `Depends:` field, verbatim ("" when none). */
  depends: string;
}

/** Options for {@linkcode fetchDebianPackage}. */
export interface FetchDebianPackageOptions {
  /** Cache root; `.deb` files go in `<cacheDir>/debs/`. */
  cacheDir: string;
  /** Stops apt-get when aborted. */
  signal?: AbortSignal;
}

const APT_TIMEOUT_MS = 10 * 60_000;

/**
 * Downloads `spec` (`name` or `name=version`) into the cache, or reuses the cached copy.
 *
 * @throws {DebianPackageError} when apt cannot locate or download the package
 *   (`not_found` / `unavailable`, with a hint to run `apt-get update`).
 * @example
 * ```ts
 * const pkg = await fetchDebianPackage("busybox-static", { cacheDir: "/var/cache/x" });
 * pkg.debPath; // "/var/cache/x/debs/busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
 * ```
 */
export async function fetchDebianPackage(
  spec: string,
  options: FetchDebianPackageOptions,
): Promise<DebianPackage> {
  if (!/^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$/.test(spec)) {
    throw new DebianPackageError(`Cannot fetch package "${spec}": not a package name`, {
      code: "invalid_argument",
    });
  }
  const debs = `${options.cacheDir}/debs`;
  await Deno.mkdir(debs, { recursive: true });
  const scratch = await Deno.makeTempDir({ dir: debs, prefix: ".download-" });
  try {
    const uri = await printUri(spec, scratch, options.signal);
    const cached = `${debs}/${uri.file}`;
    if (await sha256File(cached).catch(() => undefined) !== uri.sha256) {
      await apt(["download", spec], scratch, options.signal);
      const got = await sha256File(`${scratch}/${uri.file}`).catch(() => undefined);
      if (got !== uri.sha256) {
        throw new DebianPackageError(
          `Cannot fetch package "${spec}": the downloaded "${uri.file}" does not match its SHA256`,
          { code: "unavailable" },
        );
      }
      await Deno.rename(`${scratch}/${uri.file}`, cached);
    }
    const fields = await runText("dpkg-deb", ["-f", cached, "Package", "Version", "Depends"], {
      signal: options.signal,
    });
    const field = (name: string) =>
      new RegExp(`^${name}: (.*)$`, "m").exec(fields)?.[1]?.trim() ?? "";
    return {
      name: field("Package"),
      version: field("Version"),
      debPath: cached,
      sha256: uri.sha256,
      depends: field("Depends"),
    };
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/**
 * Unpacks a `.deb`'s files into `destDir` (created) with `dpkg-deb -x`.
 *
 * @throws {DebianPackageError} when dpkg-deb fails.
 */
export async function unpackDebianPackage(
  debPath: string,
  destDir: string,
  signal?: AbortSignal,
): Promise<void> {
  await Deno.mkdir(destDir, { recursive: true });
  try {
    await run("dpkg-deb", ["-x", debPath, destDir], { signal, timeoutMs: APT_TIMEOUT_MS });
  } catch (err) {
    throw new DebianPackageError(`Cannot unpack "${debPath}": ${errorText(err)}`, {
      code: "internal",
      cause: err,
    });
  }
}

async function printUri(
  spec: string,
  cwd: string,
  signal?: AbortSignal,
): Promise<{ file: string; sha256: string }> {
  const out = await apt(["download", "--print-uris", spec], cwd, signal);
  // 'http://deb.debian.org/…/x.deb' x_1.0_amd64.deb 928188 SHA256:3d3f…
  const m = /^'[^']+' (\S+\.deb) \d+ SHA256:([0-9a-f]{64})$/m.exec(out);
  if (!m || m[1].includes("/")) {
    throw new DebianPackageError(`Cannot fetch package "${spec}": apt printed no download URI`, {
      code: "unavailable",
      hint: "run apt-get update",
    });
  }
  return { file: m[1], sha256: m[2] };
}

async function apt(args: string[], cwd: string, signal?: AbortSignal): Promise<string> {
  // As root, apt drops to the _apt user for downloads, which cannot write our cache dir.
  const sandbox = Deno.uid() === 0 ? ["-o", "APT::Sandbox::User=root"] : [];
  try {
    return await runText("apt-get", [...sandbox, "-q", ...args], {
      cwd,
      signal,
      timeoutMs: APT_TIMEOUT_MS,
      env: { LC_ALL: "C" },
    });
  } catch (err) {
    const text = errorText(err);
    const missing = /Unable to locate package|has no installation candidate/.test(text);
    throw new DebianPackageError(`Cannot fetch package "${args[args.length - 1]}": ${text}`, {
      code: missing ? "not_found" : "unavailable",
      hint: missing ? "run apt-get update, or check the package name" : undefined,
      cause: err,
    });
  }
}

function errorText(err: unknown): string {
  if (err instanceof ExecError) return err.failure.stderrTail.trim() || err.message;
  return err instanceof Error ? err.message : String(err);
}

async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}
