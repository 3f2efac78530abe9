/**
 * Docker credential helpers (`credHelpers`, `credsStore` in `config.json`): the
 * `docker-credential-<name> get` protocol of docker/docker-credential-helpers — the
 * server URL on stdin, `{"ServerURL","Username","Secret"}` on stdout, and a non-zero exit
 * with "credentials not found" when it has none.
 *
 * @module
 */

import { run } from "../../host/os/exec.ts";
import { ExecError } from "../../host/errors.ts";
import { OciError } from "../errors.ts";

/** What a helper answered: credentials, or none stored for that registry. */
export type HelperAnswer = { username: string; password: string } | undefined;

/** A helper's name as Docker allows it: the suffix of `docker-credential-<name>`. */
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const HELPER_TIMEOUT_MS = 15_000;

/**
 * Asks `docker-credential-<name>` for the credentials of `serverUrl`. Identity tokens
 * (`Username: "<token>"`, an OAuth refresh token) are not used: the pull goes anonymous.
 *
 * @throws {OciError} when the helper is missing, fails, or answers something else.
 */
export async function askCredentialHelper(
  name: string,
  serverUrl: string,
  options: { path?: string; signal?: AbortSignal } = {},
): Promise<HelperAnswer> {
  const program = `docker-credential-${name}`;
  if (!HELPER_NAME.test(name)) {
    throw new OciError(`Cannot use the Docker credential helper "${name}": not a helper name`, {
      code: "invalid_argument",
      hint: "credsStore and credHelpers name the part after docker-credential-",
    });
  }
  // Through sh, which is on the daemon's run list; the helper's name is one argument.
  // Helpers report failures on stdout and exit 1, so every exit code is read here.
  const out = await run("sh", ["-c", 'exec "docker-credential-$1" get', "sh", name], {
    stdin: serverUrl,
    timeoutMs: HELPER_TIMEOUT_MS,
    signal: options.signal,
    env: options.path === undefined ? undefined : { PATH: options.path },
    okCodes: Array.from({ length: 256 }, (_, code) => code),
  }).catch((err) => {
    throw new OciError(`Cannot get credentials for ${serverUrl} from ${program}: ${err.message}`, {
      code: err instanceof ExecError && err.failure.timedOut ? "timeout" : "unavailable",
      cause: err,
    });
  });
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (out.code === 127) {
    throw new OciError(`Cannot get credentials for ${serverUrl}: ${program} is not on PATH`, {
      code: "failed_precondition",
      hint: `install ${program}, or remove it from credsStore/credHelpers in Docker's config.json`,
    });
  }
  if (out.code !== 0) {
    if (/credentials not found/i.test(stdout)) return undefined;
    const why = (stdout || out.stderr.trim() || `exit code ${out.code}`).split("\n").slice(-3);
    throw new OciError(
      `Cannot get credentials for ${serverUrl} from ${program}: ${why.join(" ")}`,
      { code: "unavailable" },
    );
  }
  let answer: unknown;
  try {
    answer = JSON.parse(stdout);
  } catch {
    throw new OciError(`Cannot use what ${program} answered for ${serverUrl}: it is not JSON`, {
      code: "invalid_argument",
    });
  }
  const { Username: username, Secret: password } = (answer ?? {}) as Record<string, unknown>;
  if (typeof username !== "string" || typeof password !== "string") {
    throw new OciError(
      `Cannot use what ${program} answered for ${serverUrl}: no "Username" and "Secret"`,
      { code: "invalid_argument" },
    );
  }
  if (username === "<token>" || password === "") return undefined;
  return { username, password };
}
