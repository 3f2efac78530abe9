/**
 * Loading a module only when it is used. A dynamic `import("./x.ts")` with a literal is
 * resolved by Deno into the startup module graph (every CLI call would pay to read and
 * hash all of it); a computed URL is not. `deno task compile` lists these modules with
 * `--include`.
 *
 * @module
 */

/**
 * Imports `url` at run time. The caller states the module's shape; a test that runs each
 * command group pins that the shapes hold.
 */
export function importLazily<T>(url: URL): Promise<T> {
  return import(url.href) as Promise<T>;
}
