/**
 * What the daemon's `.vm` zone answers: {@linkcode answerDnsQuery} turns one query packet
 * into its response packet. Pure; `server.ts` moves the bytes.
 *
 * @module
 */

import {
  decodeDnsMessage,
  DNS_CLASS_ANY,
  DNS_CLASS_IN,
  DNS_HEADER_BYTES,
  type DnsMessage,
  DnsRcode,
  type DnsRecord,
  type DnsRecordData,
  type DnsSoa,
  DnsType,
  encodeDnsMessage,
} from "./wire.ts";

/** What {@linkcode answerDnsQuery} needs to know about the `.vm` zone. */
export interface DnsZone {
  /** The guest IPv4 address of `<label>.vm`; `label` is lower-case. */
  lookup(label: string): string | undefined;
  /** SOA serial; changes whenever the records do. */
  serial: number;
  /** TTL of every answer and of negative answers, in seconds. */
  ttl: number;
}

/** The zone this server is authoritative for. */
export const DNS_ZONE = "vm";
/** The host named in the zone's SOA and NS records: the daemon serves it on loopback. */
export const DNS_ZONE_HOST = "localhost";
/** UDP payload size advertised in EDNS0 responses (the DNS flag day 2020 value). */
export const DNS_UDP_PAYLOAD = 1232;

function soaRecord(zone: DnsZone): DnsRecord {
  const soa: DnsSoa = {
    mname: DNS_ZONE_HOST,
    rname: `hostmaster.${DNS_ZONE_HOST}`,
    serial: zone.serial >>> 0,
    refresh: 3600,
    retry: 600,
    expire: 86400,
    minimum: zone.ttl,
  };
  return { name: DNS_ZONE, type: DnsType.SOA, class: DNS_CLASS_IN, ttl: zone.ttl, data: { soa } };
}

/** A presentation name's labels, split on unescaped dots. */
function labelsOf(name: string): string[] {
  return name.match(/(?:\\(?:\d{3}|.)|[^.\\])+/gs) ?? [];
}

/**
 * Answer records for `name` (labels `labels`, last one the zone), or `undefined` when
 * the name does not exist.
 */
function zoneAnswers(
  name: string,
  labels: string[],
  type: number,
  zone: DnsZone,
): DnsRecord[] | undefined {
  const rr = (t: number, data: DnsRecordData): DnsRecord => ({
    name,
    type: t,
    class: DNS_CLASS_IN,
    ttl: zone.ttl,
    data,
  });
  if (labels.length === 1) {
    const soa = { ...soaRecord(zone), name };
    const ns = rr(DnsType.NS, { ns: DNS_ZONE_HOST });
    if (type === DnsType.ANY) return [soa, ns];
    return type === DnsType.SOA ? [soa] : type === DnsType.NS ? [ns] : [];
  }
  // Only `<label>.vm` exists; an escaped label ("a\\.b") can never be a VM name.
  const host = labels.length === 2 && !labels[0].includes("\\") ? labels[0] : undefined;
  const address = host === undefined ? undefined : zone.lookup(host.toLowerCase());
  if (address === undefined) return undefined;
  return type === DnsType.A || type === DnsType.ANY ? [rr(DnsType.A, { a: address })] : [];
}

/**
 * Answers one query packet for the `.vm` zone, authoritatively: `A` for a known
 * `<label>.vm` (case-insensitive; the question is echoed as sent), NODATA for its other
 * types, NXDOMAIN for unknown names, SOA/NS at the apex, with the SOA in the authority
 * section of every negative answer. Names outside `.vm`, other classes and zone transfers
 * are REFUSED; a QDCOUNT other than 1 or an undecodable packet is FORMERR; opcodes other
 * than QUERY are NOTIMP. An EDNS0 OPT is answered with a minimal OPT (version 0, no
 * options; BADVERS for a higher version). RD is copied, RA is never set, AA is set on
 * in-zone answers. Responses stay far below 512 bytes, so TC is never needed.
 *
 * Never throws for any input.
 *
 * @returns the response, or `undefined` when the packet must be dropped: shorter than a
 * header, or itself a response (answering those invites loops).
 * @example
 * ```ts
 * const reply = answerDnsQuery(packet, { lookup: (l) => records.get(l), serial: 1, ttl: 5 });
 * if (reply) socket.send(reply, rinfo.port, rinfo.address);
 * ```
 */
export function answerDnsQuery(packet: Uint8Array, zone: DnsZone): Uint8Array | undefined {
  if (packet.length < DNS_HEADER_BYTES || (packet[2] & 0x80) !== 0) return undefined;
  const reply = (rcode: number, sections: Partial<DnsMessage> = {}) =>
    encodeDnsMessage({
      id: (packet[0] << 8) | packet[1],
      qr: true,
      opcode: (packet[2] >> 3) & 0xf,
      aa: false,
      tc: false,
      rd: (packet[2] & 0x01) !== 0,
      ra: false,
      rcode,
      questions: [],
      answers: [],
      authority: [],
      additional: [],
      ...sections,
    });
  try {
    if (((packet[2] >> 3) & 0xf) !== 0) return reply(DnsRcode.NOTIMP);
    let query: DnsMessage;
    try {
      query = decodeDnsMessage(packet);
    } catch {
      return reply(DnsRcode.FORMERR);
    }
    const opts = query.additional.filter((r) => r.type === DnsType.OPT);
    if (query.questions.length !== 1 || opts.length > 1 || (opts[0] && opts[0].name !== "")) {
      return reply(DnsRcode.FORMERR);
    }
    const q = query.questions[0];
    const optFor = (extended: number): DnsRecord[] =>
      opts.length === 0 ? [] : [{
        name: "",
        type: DnsType.OPT,
        class: DNS_UDP_PAYLOAD,
        ttl: (extended >> 4) * 0x1000000,
        data: { raw: new Uint8Array() },
      }];
    if (opts.length === 1 && ((opts[0].ttl >>> 16) & 0xff) !== 0) {
      return reply(DnsRcode.BADVERS & 0xf, {
        questions: [q],
        additional: optFor(DnsRcode.BADVERS),
      });
    }
    const base = { questions: [q], additional: optFor(0) };
    const labels = labelsOf(q.name);
    const inZone = labels.at(-1)?.toLowerCase() === DNS_ZONE;
    const transfer = q.type === DnsType.AXFR || q.type === DnsType.IXFR;
    if (!inZone || transfer || (q.class !== DNS_CLASS_IN && q.class !== DNS_CLASS_ANY)) {
      return reply(DnsRcode.REFUSED, base);
    }
    const answers = zoneAnswers(q.name, labels, q.type, zone);
    const negative = { ...base, aa: true, authority: [soaRecord(zone)] };
    if (answers === undefined) return reply(DnsRcode.NXDOMAIN, negative);
    if (answers.length === 0) return reply(DnsRcode.NOERROR, negative);
    return reply(DnsRcode.NOERROR, { ...base, aa: true, answers });
  } catch {
    // Only an unencodable record from the zone (a bad address) gets here.
    return reply(DnsRcode.SERVFAIL);
  }
}
