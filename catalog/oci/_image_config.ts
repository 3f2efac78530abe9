/**
 * Folder-private parsing of the OCI/Docker image config blob: what to run
 * (`Env`, `Entrypoint`, `Cmd`, `WorkingDir`, `User`), the platform, and the layer
 * DiffIDs used to verify uncompressed layers.
 *
 * @module
 */

import { OciError } from "../errors.ts";

/** What an image says to run, from its config. Missing lists are empty, strings "". */
export interface ImageConfig {
  /** `KEY=value` entries. */
  env: string[];
  /** The entrypoint argv. */
  entrypoint: string[];
  /** The default command argv. */
  cmd: string[];
  /** The working directory. */
  workingDir: string;
  /** `user`, `uid`, `user:group` or `uid:gid`. */
  user: string;
  /** Platform the config declares (`amd64`). */
  architecture: string;
  /** Operating system the config declares (`linux`). */
  os: string;
}

/** A parsed config blob. */
export interface ParsedImageConfig {
  /** The run configuration. */
  image: ImageConfig;
  /** `rootfs.diff_ids`, base first (empty when absent). */
  diffIds: string[];
}

const SHA256_RE = /^sha256:[a-f0-9]{64}$/;

/**
 * Parses a config blob for image `name`.
 *
 * @throws {OciError} when it is not JSON, declares another platform than linux/amd64, or
 *   has malformed fields.
 */
export function parseImageConfig(bytes: Uint8Array, name: string): ParsedImageConfig {
  const bad = (why: string, code: "unavailable" | "failed_precondition" = "unavailable") =>
    new OciError(`Cannot use the config of "${name}": ${why}`, { code });
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw bad("it is not valid JSON");
  }
  if (!isRecord(body)) throw bad("it is not a JSON object");
  const architecture = typeof body.architecture === "string" ? body.architecture : "";
  const os = typeof body.os === "string" ? body.os : "";
  if ((os !== "" && os !== "linux") || (architecture !== "" && architecture !== "amd64")) {
    throw bad(`it is built for ${os}/${architecture}, not linux/amd64`, "failed_precondition");
  }
  const c = isRecord(body.config) ? body.config : {};
  const rootfs = isRecord(body.rootfs) ? body.rootfs : {};
  const diffIds = strings(rootfs.diff_ids, "rootfs.diff_ids", bad);
  if (diffIds.some((d) => !SHA256_RE.test(d))) throw bad("a diff_id is not a sha256 digest");
  return {
    image: {
      env: strings(c.Env, "Env", bad),
      entrypoint: strings(c.Entrypoint, "Entrypoint", bad),
      cmd: strings(c.Cmd, "Cmd", bad),
      workingDir: typeof c.WorkingDir === "string" ? c.WorkingDir : "",
      user: typeof c.User === "string" ? c.User : "",
      architecture,
      os,
    },
    diffIds,
  };
}

function strings(value: unknown, field: string, bad: (why: string) => OciError): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    throw bad(`"${field}" must be a list of strings`);
  }
  return value as string[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
