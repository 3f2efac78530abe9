/**
 * The DNS wire format (RFC 1035; the OPT record of RFC 6891): {@linkcode decodeDnsMessage}
 * and {@linkcode encodeDnsMessage} move between bytes and a typed {@linkcode DnsMessage}.
 * Pure; `answer.ts` decides what the `.vm` zone answers and `server.ts` moves the
 * bytes.
 *
 * Names are in presentation form without the trailing dot (`"dev.vm"`, root is `""`); a
 * label byte that is `.`, `\` or not printable ASCII is escaped as `\.`, `\\` or `\DDD`.
 *
 * Hand-coded rather than on `dns-packet`: that package never compresses names and does not
 * round-trip binary labels (`\.`/`\DDD`), and the `.vm` answer policy relies on both.
 *
 * @module
 */

import { BangerError } from "../../host/errors.ts";
import { parseIpv4 } from "../../host/net/ipv4.ts";

/** A DNS name, record or message that cannot be used, or a DNS listener that cannot start. */
export class DnsError extends BangerError {}

/** Response codes used here; 16 (`BADVERS`) only travels in the EDNS0 OPT record. */
export const DnsRcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

/** Record types used here. */
export const DnsType = {
  A: 1,
  NS: 2,
  SOA: 6,
  AAAA: 28,
  OPT: 41,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
} as const;

/** The Internet class. */
export const DNS_CLASS_IN = 1;
/** The class that matches every class in a question. */
export const DNS_CLASS_ANY = 255;

/** One entry of the question section. */
export interface DnsQuestion {
  /** Presentation form, case as sent. */
  name: string;
  type: number;
  class: number;
}

/** The fields of an SOA record. */
export interface DnsSoa {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  /** TTL of negative answers (RFC 2308). */
  minimum: number;
}

/** Record data: an A address, an NS host, an SOA, or the raw bytes of any other type. */
export type DnsRecordData = { a: string } | { ns: string } | { soa: DnsSoa } | { raw: Uint8Array };

/** A resource record. For OPT, `class` is the UDP payload size and `ttl` the extended flags. */
export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  data: DnsRecordData;
}

/** A whole message: the header flags and the four sections. */
export interface DnsMessage {
  id: number;
  /** Set on responses. */
  qr: boolean;
  opcode: number;
  /** Authoritative answer. */
  aa: boolean;
  /** Truncated. */
  tc: boolean;
  /** Recursion desired. */
  rd: boolean;
  /** Recursion available. */
  ra: boolean;
  /** The low four bits of the response code. */
  rcode: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authority: DnsRecord[];
  additional: DnsRecord[];
}

/** Size of the fixed message header. */
export const DNS_HEADER_BYTES = 12;
const MAX_NAME_BYTES = 255;
const MAX_LABEL_BYTES = 63;
const MAX_POINTER_HOPS = 64;

function malformed(why: string): DnsError {
  return new DnsError(`Cannot decode DNS message: ${why}`, { code: "invalid_argument" });
}

function escapeLabel(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) {
    if (b === 0x2e || b === 0x5c) out += "\\" + String.fromCharCode(b);
    else if (b > 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += "\\" + String(b).padStart(3, "0");
  }
  return out;
}

/** Reads bytes from a packet, throwing {@linkcode DnsError} instead of reading past its end. */
class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw malformed(`${what} at offset ${this.pos} runs past the end of the packet`);
    }
  }
  u16(what: string): number {
    this.need(2, what);
    this.pos += 2;
    return (this.buf[this.pos - 2] << 8) | this.buf[this.pos - 1];
  }
  u32(what: string): number {
    return this.u16(what) * 0x10000 + this.u16(what);
  }
  name(): string {
    const labels: string[] = [];
    let pos = this.pos;
    let resume = -1; // where reading continues after the first pointer
    let wire = 1;
    let hops = 0;
    for (let len = this.#at(pos); len !== 0; len = this.#at(pos)) {
      if ((len & 0xc0) === 0xc0) {
        const target = ((len & 0x3f) << 8) | this.#at(pos + 1);
        if (target >= pos || ++hops > MAX_POINTER_HOPS) {
          throw malformed(`pointer at offset ${pos} does not point backwards`);
        }
        if (resume < 0) resume = pos + 2;
        pos = target;
        continue;
      }
      if (len > MAX_LABEL_BYTES) throw malformed(`label type 0x${len.toString(16)} is unsupported`);
      if (pos + 1 + len > this.buf.length) throw malformed(`label at offset ${pos} is cut off`);
      wire += len + 1;
      if (wire > MAX_NAME_BYTES) throw malformed(`name at offset ${this.pos} exceeds 255 bytes`);
      labels.push(escapeLabel(this.buf.subarray(pos + 1, pos + 1 + len)));
      pos += len + 1;
    }
    this.pos = resume < 0 ? pos + 1 : resume;
    return labels.join(".");
  }
  #at(pos: number): number {
    if (pos >= this.buf.length) throw malformed(`name at offset ${this.pos} is cut off`);
    return this.buf[pos];
  }
}

function decodeData(r: Reader, type: number, cls: number, length: number): DnsRecordData {
  const start = r.pos;
  r.need(length, "record data");
  const end = start + length;
  let data: DnsRecordData;
  if (type === DnsType.A && cls === DNS_CLASS_IN && length === 4) {
    data = { a: Array.from(r.buf.subarray(start, end)).join(".") };
    r.pos = end;
  } else if (type === DnsType.NS) {
    data = { ns: r.name() };
  } else if (type === DnsType.SOA) {
    const mname = r.name();
    const rname = r.name();
    const [serial, refresh, retry, expire, minimum] = [1, 2, 3, 4, 5].map(() => r.u32("SOA"));
    data = { soa: { mname, rname, serial, refresh, retry, expire, minimum } };
  } else {
    data = { raw: r.buf.slice(start, end) };
    r.pos = end;
  }
  if (r.pos !== end) throw malformed(`record data at offset ${start} has the wrong length`);
  return data;
}

function decodeRecords(r: Reader, count: number): DnsRecord[] {
  const records: DnsRecord[] = [];
  for (let i = 0; i < count; i++) {
    const name = r.name();
    const type = r.u16("record type");
    const cls = r.u16("record class");
    const ttl = r.u32("record TTL");
    const length = r.u16("record length");
    records.push({ name, type, class: cls, ttl, data: decodeData(r, type, cls, length) });
  }
  return records;
}

/**
 * Decodes a whole message, following name compression pointers (backwards only).
 *
 * @throws {DnsError} when the packet is short, cut off, has trailing bytes, a pointer loop,
 * a label type other than plain and pointer, or a name over 255 bytes.
 */
export function decodeDnsMessage(packet: Uint8Array): DnsMessage {
  if (packet.length < DNS_HEADER_BYTES) {
    throw malformed(`${packet.length} bytes is shorter than a header`);
  }
  const r = new Reader(packet);
  const id = r.u16("id");
  const flags = r.u16("flags");
  const [qd, an, ns, ar] = [1, 2, 3, 4].map(() => r.u16("count"));
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < qd; i++) {
    questions.push({ name: r.name(), type: r.u16("question"), class: r.u16("question") });
  }
  const message: DnsMessage = {
    id,
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    rcode: flags & 0xf,
    questions,
    answers: decodeRecords(r, an),
    authority: decodeRecords(r, ns),
    additional: decodeRecords(r, ar),
  };
  if (r.pos !== packet.length) {
    throw malformed(`${packet.length - r.pos} trailing bytes after the last record`);
  }
  return message;
}

/** A name split into wire labels, with the lower-cased suffix keys used for compression. */
function nameLabels(name: string): { labels: Uint8Array[]; keys: string[] } {
  const invalid = (why: string) =>
    new DnsError(`Cannot encode DNS name "${name}": ${why}`, { code: "invalid_argument" });
  const labels: Uint8Array[] = [];
  const parts: string[] = [];
  let bytes: number[] = [];
  let part = "";
  const close = () => {
    if (bytes.length === 0) throw invalid("it has an empty label");
    if (bytes.length > MAX_LABEL_BYTES) throw invalid("a label is longer than 63 bytes");
    labels.push(Uint8Array.from(bytes));
    parts.push(part.toLowerCase());
    [bytes, part] = [[], ""];
  };
  for (let i = 0; i < name.length; i++) {
    let raw = name[i];
    if (raw === ".") {
      if (name !== ".") close();
      continue;
    }
    if (raw === "\\") {
      raw = /^\\(\d{3}|[^\d])/s.exec(name.slice(i))?.[0] ?? "";
      if (raw === "" || (raw.length === 4 && Number(raw.slice(1)) > 255)) {
        throw invalid(`escape at character ${i + 1} is not \\DDD (0-255) or \\ and a character`);
      }
      i += raw.length - 1;
    }
    const b = raw.length === 4 ? Number(raw.slice(1)) : raw.charCodeAt(raw.length - 1);
    if (b > 0xff) throw invalid(`character ${i + 1} is outside Latin-1`);
    bytes.push(b);
    part += raw;
  }
  if (part !== "") close();
  if (labels.reduce((n, l) => n + l.length + 1, 1) > MAX_NAME_BYTES) {
    throw invalid("it is longer than 255 bytes");
  }
  return { labels, keys: parts.map((_, i) => parts.slice(i).join(".")) };
}

/** Appends to a growing message, remembering where each name suffix was written. */
class Writer {
  readonly out: number[] = [];
  readonly #names = new Map<string, number>();

  u16(v: number): void {
    this.out.push((v >>> 8) & 0xff, v & 0xff);
  }
  u32(v: number): void {
    this.u16(Math.floor(v / 0x10000) & 0xffff);
    this.u16(v & 0xffff);
  }
  name(name: string): void {
    const { labels, keys } = nameLabels(name);
    for (let i = 0; i < labels.length; i++) {
      const at = this.#names.get(keys[i]);
      if (at !== undefined) return this.u16(0xc000 | at);
      if (this.out.length < 0x4000) this.#names.set(keys[i], this.out.length);
      this.out.push(labels[i].length, ...labels[i]);
    }
    this.out.push(0);
  }
  data(record: DnsRecord): void {
    const d = record.data;
    if ("a" in d) {
      const address = parseIpv4(d.a);
      if (address === undefined) {
        throw new DnsError(
          `Cannot encode A record "${record.name}": "${d.a}" is not an IPv4 address`,
        );
      }
      this.out.push(
        address >>> 24,
        (address >>> 16) & 0xff,
        (address >>> 8) & 0xff,
        address & 0xff,
      );
    } else if ("ns" in d) {
      this.name(d.ns);
    } else if ("soa" in d) {
      this.name(d.soa.mname);
      this.name(d.soa.rname);
      for (const v of [d.soa.serial, d.soa.refresh, d.soa.retry, d.soa.expire, d.soa.minimum]) {
        this.u32(v);
      }
    } else {
      this.out.push(...d.raw);
    }
  }
  record(record: DnsRecord): void {
    this.name(record.name);
    this.u16(record.type);
    this.u16(record.class);
    this.u32(record.ttl);
    const at = this.out.length;
    this.u16(0);
    this.data(record);
    const length = this.out.length - at - 2;
    [this.out[at], this.out[at + 1]] = [length >>> 8, length & 0xff];
  }
}

/**
 * Encodes a message, compressing every owner name and every NS and SOA name against the
 * names written before it (case-insensitively).
 *
 * @throws {DnsError} when a name has an empty label, a label over 63 bytes or is over
 * 255 bytes, or an A record's address is not IPv4.
 */
export function encodeDnsMessage(message: DnsMessage): Uint8Array {
  const w = new Writer();
  const m = message;
  w.u16(m.id);
  w.u16(
    (m.qr ? 0x8000 : 0) | ((m.opcode & 0xf) << 11) | (m.aa ? 0x0400 : 0) | (m.tc ? 0x0200 : 0) |
      (m.rd ? 0x0100 : 0) | (m.ra ? 0x0080 : 0) | (m.rcode & 0xf),
  );
  for (const n of [m.questions, m.answers, m.authority, m.additional]) w.u16(n.length);
  for (const q of m.questions) {
    w.name(q.name);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const r of [...m.answers, ...m.authority, ...m.additional]) w.record(r);
  return Uint8Array.from(w.out);
}
