/**
 * Just enough ELF64 (little-endian) reading for the kernel pipeline: validating an
 * extracted `vmlinux`, finding its Xen PVH entry note, reading a module's `.modinfo`
 * section and telling a static program from a dynamic one. Pure: no `Deno.*` calls.
 *
 * Layouts follow `include/uapi/linux/elf.h` (`Elf64_Ehdr`, `Elf64_Phdr`, `Elf64_Shdr`,
 * `Elf64_Nhdr`). Kept here: npm's ELF readers are CommonJS, unmaintained or parse far more
 * than these four structs.
 *
 * @module
 */

/** `e_machine` of x86-64 (`EM_X86_64`, include/uapi/linux/elf-em.h). */
export const EM_X86_64 = 62;
/** `p_type` of a loadable segment. */
export const PT_LOAD = 1;
/** `p_type` of a segment naming the program interpreter (dynamic linking). */
export const PT_INTERP = 3;
/** `p_type` of a note segment. */
export const PT_NOTE = 4;
/** `XEN_ELFNOTE_PHYS32_ENTRY` (include/xen/interface/elfnote.h): the PVH entry point. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 0x12;

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;

/** One program header. */
export interface ElfSegment {
  /** `p_type` */
  type: number;
  /** `p_offset`: where the segment's bytes start in the file. */
  offset: number;
  /** `p_filesz`: how many bytes it occupies in the file. */
  fileSize: number;
  /** `p_paddr`: the physical load address. */
  physAddr: number;
}

/** One section header, with its name resolved. */
export interface ElfSection {
  /** Name from the section-name string table, e.g. ".modinfo". */
  name: string;
  /** `sh_offset` */
  offset: number;
  /** `sh_size` */
  size: number;
  /** `sh_type` (8 = `SHT_NOBITS`, which occupies no file bytes). */
  type: number;
}

/** A validated ELF64 little-endian file. Every segment and section lies inside the file. */
export interface Elf64 {
  /** `e_type` (2 = executable, 1 = relocatable). */
  type: number;
  /** `e_machine` */
  machine: number;
  /** `e_entry` */
  entry: number;
  /** Program headers (empty for relocatable objects such as modules). */
  segments: ElfSegment[];
  /** Section headers (may be empty for stripped images). */
  sections: ElfSection[];
}

/** One note from a `PT_NOTE` segment. */
export interface ElfNote {
  /** Owner name without its NUL, e.g. "Xen", "GNU", "Linux". */
  name: string;
  /** Note type. */
  type: number;
  /** Descriptor bytes. */
  desc: Uint8Array;
}

/**
 * Parses and bounds-checks an ELF64 little-endian header with its program and section
 * headers. A truncated file (a segment or section running past the end) is not an ELF.
 *
 * @returns `undefined` when `bytes` is not a complete, well-formed ELF64 LE file.
 */
export function parseElf64(bytes: Uint8Array): Elf64 | undefined {
  if (bytes.length < EHDR_SIZE) return undefined;
  if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
    return undefined;
  }
  if (bytes[4] !== 2 || bytes[5] !== 1) return undefined; // ELFCLASS64, ELFDATA2LSB
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u64 = (at: number) => Number(view.getBigUint64(at, true));
  const phoff = u64(32);
  const shoff = u64(40);
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  const shentsize = view.getUint16(58, true);
  const shnum = view.getUint16(60, true);
  const shstrndx = view.getUint16(62, true);
  if (phnum > 0 && (phentsize !== PHDR_SIZE || phoff + phnum * PHDR_SIZE > bytes.length)) {
    return undefined;
  }
  if (shnum > 0 && (shentsize !== SHDR_SIZE || shoff + shnum * SHDR_SIZE > bytes.length)) {
    return undefined;
  }
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * PHDR_SIZE;
    const segment = {
      type: view.getUint32(at, true),
      offset: u64(at + 8),
      physAddr: u64(at + 24),
      fileSize: u64(at + 32),
    };
    if (segment.offset + segment.fileSize > bytes.length) return undefined;
    segments.push(segment);
  }
  const sections = parseSections(bytes, view, shoff, shnum, shstrndx);
  if (sections === undefined) return undefined;
  return {
    type: view.getUint16(16, true),
    machine: view.getUint16(18, true),
    entry: u64(24),
    segments,
    sections,
  };
}

function parseSections(
  bytes: Uint8Array,
  view: DataView,
  shoff: number,
  shnum: number,
  shstrndx: number,
): ElfSection[] | undefined {
  const raw: { nameOffset: number; type: number; offset: number; size: number }[] = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * SHDR_SIZE;
    const type = view.getUint32(at + 4, true);
    const offset = Number(view.getBigUint64(at + 24, true));
    const size = Number(view.getBigUint64(at + 32, true));
    if (type !== 8 && offset + size > bytes.length) return undefined;
    raw.push({ nameOffset: view.getUint32(at, true), type, offset, size });
  }
  const strtab = raw[shstrndx];
  return raw.map((s) => ({
    name: strtab ? cString(bytes, strtab.offset + s.nameOffset, strtab.offset + strtab.size) : "",
    offset: s.offset,
    size: s.size,
    type: s.type,
  }));
}

function cString(bytes: Uint8Array, start: number, limit: number): string {
  let end = start;
  while (end < limit && bytes[end] !== 0) end++;
  return new TextDecoder().decode(bytes.subarray(start, end));
}

/** The notes of every `PT_NOTE` segment, in file order. */
export function elfNotes(bytes: Uint8Array, elf: Elf64): ElfNote[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const notes: ElfNote[] = [];
  for (const seg of elf.segments.filter((s) => s.type === PT_NOTE)) {
    let at = seg.offset;
    const end = seg.offset + seg.fileSize;
    while (at + 12 <= end) {
      const namesz = view.getUint32(at, true);
      const descsz = view.getUint32(at + 4, true);
      const type = view.getUint32(at + 8, true);
      const nameAt = at + 12;
      const descAt = nameAt + align4(namesz);
      if (descAt + descsz > end) break;
      notes.push({
        name: cString(bytes, nameAt, nameAt + namesz),
        type,
        desc: bytes.subarray(descAt, descAt + descsz),
      });
      at = descAt + align4(descsz);
    }
  }
  return notes;
}

/**
 * The 32-bit physical PVH entry address from the `Xen`/`XEN_ELFNOTE_PHYS32_ENTRY` note,
 * which QEMU (`-kernel vmlinux`) and Firecracker use to boot an ELF kernel directly.
 *
 * @returns `undefined` when the kernel has no PVH note.
 */
export function pvhEntry(bytes: Uint8Array, elf: Elf64): number | undefined {
  const note = elfNotes(bytes, elf).find((n) =>
    n.name === "Xen" && n.type === XEN_ELFNOTE_PHYS32_ENTRY && n.desc.length >= 4
  );
  if (!note) return undefined;
  return new DataView(note.desc.buffer, note.desc.byteOffset, 4).getUint32(0, true);
}

/** The bytes of the named section, or `undefined` when absent. */
export function elfSectionBytes(
  bytes: Uint8Array,
  elf: Elf64,
  name: string,
): Uint8Array | undefined {
  const section = elf.sections.find((s) => s.name === name && s.type !== 8);
  return section ? bytes.subarray(section.offset, section.offset + section.size) : undefined;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
