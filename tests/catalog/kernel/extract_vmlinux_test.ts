import { gzipSync, zstdCompressSync } from "node:zlib";
import { extractVmlinux, KernelImageError } from "../../../catalog/kernel/extract_vmlinux.ts";
import { assertEquals, assertThrows } from "../../fixtures/assert.ts";
import { gatedTest, programs } from "../../fixtures/requires.ts";
import { elfExecutable } from "../../fixtures/tiny_elf.ts";

const PVH_ENTRY = 0x01000850;
const kernel = elfExecutable({
  notes: [{ name: "Xen", type: 0x12, desc: new Uint8Array([0x50, 0x08, 0x00, 0x01]) }],
  payload: new Uint8Array(4096).map((_, i) => i % 251),
});

/** A bzImage-shaped file: setup header pointing at `payload`, junk around it. */
function bzImage(payload: Uint8Array, header = true): Uint8Array {
  const setupSects = 3;
  const payloadOffset = 100;
  const base = (setupSects + 1) * 512;
  const out = new Uint8Array(base + payloadOffset + payload.length + 64).fill(0x5a);
  const view = new DataView(out.buffer);
  if (header) {
    out[0x1f1] = setupSects;
    out.set(new TextEncoder().encode("HdrS"), 0x202);
    view.setUint16(0x206, 0x20f, true);
    view.setUint32(0x248, payloadOffset, true);
    view.setUint32(0x24c, payload.length, true);
  }
  out.set(payload, base + payloadOffset);
  return out;
}

function withSize(stream: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(stream.length + 4);
  out.set(stream);
  new DataView(out.buffer).setUint32(stream.length, size, true);
  return out;
}

async function lz4Legacy(data: Uint8Array): Promise<Uint8Array> {
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeFile(file, data);
    return (await new Deno.Command("lz4", { args: ["-l", "-c", file] }).output()).stdout;
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("extractVmlinux() returns an ELF kernel unchanged, with its PVH entry", () => {
  const out = extractVmlinux(kernel);
  assertEquals(out.compression, "none");
  assertEquals(out.vmlinux, kernel);
  assertEquals(out.pvhEntry, PVH_ENTRY);
});

Deno.test("extractVmlinux() decodes gzip and zstd payloads located by the setup header", async (t) => {
  for (
    const [name, stream] of [
      ["gzip", gzipSync(kernel)],
      ["zstd", withSize(zstdCompressSync(kernel), kernel.length)],
    ] as const
  ) {
    await t.step(name, () => {
      const out = extractVmlinux(bzImage(stream));
      assertEquals(out.compression, name);
      assertEquals(out.offset, 4 * 512 + 100);
      assertEquals(out.vmlinux, kernel);
      assertEquals(out.pvhEntry, PVH_ENTRY);
    });
  }
});

Deno.test("extractVmlinux() scans for magics when there is no setup header, skipping false hits", () => {
  const fake = new Uint8Array([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
  const image = bzImage(new Uint8Array([...fake, ...gzipSync(kernel)]), false);
  const out = extractVmlinux(image);
  assertEquals(out.compression, "gzip");
  assertEquals(out.vmlinux, kernel);
});

gatedTest("extractVmlinux() decodes an LZ4 legacy payload with the appended size", [
  programs("lz4"),
], async (t) => {
  const stream = withSize(await lz4Legacy(kernel), kernel.length);
  await t.step("through the setup header", () => {
    const out = extractVmlinux(bzImage(stream));
    assertEquals(out.compression, "lz4");
    assertEquals(out.vmlinux, kernel);
  });
  await t.step("by scanning", () => {
    assertEquals(extractVmlinux(bzImage(stream, false)).vmlinux, kernel);
  });
});

Deno.test("extractVmlinux() rejects a decoded stream that is not an x86-64 executable", () => {
  const arm = elfExecutable({ machine: 183 });
  assertThrows(
    () => extractVmlinux(bzImage(gzipSync(arm))),
    KernelImageError,
    "no valid x86-64 ELF in its gzip stream(s)",
  );
});

Deno.test("extractVmlinux() says which formats it found but cannot decode", () => {
  const xz = new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3, 4]);
  const err = assertThrows(() => extractVmlinux(bzImage(xz)), KernelImageError, "xz");
  assertEquals(err.hint, "only lz4, gzip and zstd compressed kernels are supported");
  assertThrows(
    () => extractVmlinux(new Uint8Array(1000)),
    KernelImageError,
    "no compressed kernel found",
  );
});
