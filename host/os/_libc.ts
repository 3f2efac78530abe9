/**
 * The one `Deno.dlopen` table of the C library, opened on first use so importing
 * `host/` never needs `--allow-ffi` until a privileged primitive actually runs.
 *
 * Folder-private: use the checked wrappers in `host/os/libc.ts`.
 *
 * ioctl(2) is variadic; declaring it with fixed arguments is sound on x86_64 SysV
 * because variadic and fixed integer/pointer arguments travel in the same registers
 * (reference/host-primitives-lab.md §1).
 *
 * @module
 */

/** Where Debian keeps libc; the bare soname is the fallback for other layouts. */
const LIBC_PATHS = ["/lib/x86_64-linux-gnu/libc.so.6", "libc.so.6"] as const;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  fsync: { parameters: ["i32"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  copy_file_range: {
    parameters: ["i32", "buffer", "i32", "buffer", "usize", "u32"],
    result: "isize",
  },
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  access: { parameters: ["buffer", "i32"], result: "i32" },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  fchown: { parameters: ["i32", "u32", "u32"], result: "i32" },
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  renameat: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  symlinkat: { parameters: ["buffer", "i32", "buffer"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  mknod: { parameters: ["buffer", "u32", "u64"], result: "i32" },
  // syscall(2) is variadic; fixed integer/pointer arguments use the same registers.
  syscall_openat2: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "buffer", "usize"],
    result: "i64",
  },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  // Calls that can block run on a worker thread (`nonblocking`) so the event loop never
  // waits on a peer. errno of a worker-thread call cannot be read from this thread.
  accept4_nb: {
    name: "accept4",
    parameters: ["i32", "pointer", "pointer", "i32"],
    result: "i32",
    nonblocking: true,
  },
  read_nb: {
    name: "read",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  write_nb: {
    name: "write",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound libc functions. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/**
 * Opens libc (once) and returns its symbols.
 *
 * @throws {Error} the last `Deno.dlopen` failure when no candidate path loads (for
 *   example without `--allow-ffi`); `host/os/libc.ts` turns it into a `LibcError`.
 */
export function loadLibc(): LibcSymbols {
  if (library) return library.symbols;
  let last: unknown;
  for (const path of LIBC_PATHS) {
    try {
      library = Deno.dlopen(path, SYMBOLS);
      return library.symbols;
    } catch (err) {
      last = err;
    }
  }
  throw last;
}
