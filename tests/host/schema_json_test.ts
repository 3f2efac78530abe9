/**
 * Each schema's JSON Schema against its parser, with ajv (draft 2020-12) as the oracle:
 * every RPC request and response, and every root-helper op. Seeded random values drawn
 * from the JSON Schema itself (plus wrong types and unknown keys) must get the same
 * verdict from both; where the parser checks more than JSON Schema can say (`refine`,
 * marked with `$comment`), the JSON Schema may only be looser, never stricter.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { assertEquals } from "../fixtures/assert.ts";
import { seededRandom } from "../fixtures/fuzz.ts";
import { type JsonSchema, REFINED, type Schema } from "../../host/schema.ts";
import { METHODS } from "../../daemon/api/mod.ts";
import { PRIVILEGED_OP_ARGS } from "../../host/privileged/privileged_ops.ts";

const SAMPLES = 150;
const STRINGS = [
  "",
  "a",
  "dev",
  "debian-bookworm",
  "172.16.0.2",
  "/tmp/x",
  "0600",
  "x".repeat(300),
];
const NUMBERS = [0, 1, -1, 2.5, 2, 1024, 65535, 1e12];

type Random = () => number;

function pick<T>(rand: Random, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)];
}

/** Something of a random JSON type, for the wrong-type branches. */
function anything(rand: Random): unknown {
  return pick(rand, [null, true, 7, "s", [], {}]);
}

/** A value shaped by `schema`, sometimes wrong on purpose. */
function draw(schema: JsonSchema, rand: Random, depth = 0): unknown {
  if (rand() < 0.06 || depth > 6) return anything(rand);
  if ("const" in schema) return rand() < 0.9 ? schema.const : "other";
  if (Array.isArray(schema.enum)) return rand() < 0.9 ? pick(rand, schema.enum) : "other";
  if (Array.isArray(schema.oneOf)) return draw(pick(rand, schema.oneOf), rand, depth + 1);
  if (Array.isArray(schema.anyOf)) return draw(pick(rand, schema.anyOf), rand, depth + 1);
  switch (schema.type) {
    case "string":
      return pick(rand, STRINGS);
    case "integer":
    case "number": {
      const bounds = [schema.minimum, schema.maximum].filter((n) => typeof n === "number");
      return pick(rand, [...NUMBERS, ...bounds, ...bounds.map((n) => Number(n) + 1)]);
    }
    case "boolean":
      return rand() < 0.5;
    case "null":
      return null;
    case "array": {
      const items = schema.items as JsonSchema;
      return Array.from({ length: Math.floor(rand() * 3) }, () => draw(items, rand, depth + 1));
    }
    case "object": {
      const out: Record<string, unknown> = {};
      const required = (schema.required ?? []) as string[];
      const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
      for (const [key, sub] of Object.entries(properties)) {
        if (rand() < (required.includes(key) ? 0.97 : 0.6)) out[key] = draw(sub, rand, depth + 1);
      }
      if (typeof schema.additionalProperties === "object") {
        out[pick(rand, ["k", "name"])] = draw(schema.additionalProperties as JsonSchema, rand);
      } else if (rand() < 0.04) out.unexpected = 1;
      return out;
    }
    default:
      return anything(rand);
  }
}

function verdict(schema: Schema<unknown>, value: unknown): boolean {
  try {
    schema.parse(value);
    return true;
  } catch {
    return false;
  }
}

Deno.test("every API and helper schema's JSON Schema compiles and agrees with its parser (ajv as oracle)", () => {
  const ajv = new Ajv2020({ allErrors: false, strict: true });
  const schemas: [string, Schema<unknown>][] = [
    ...Object.values(METHODS).flatMap((m): [string, Schema<unknown>][] => [
      [`${m.name} request`, m.request],
      [`${m.name} response`, m.response],
    ]),
    ...Object.entries(PRIVILEGED_OP_ARGS).map(([name, s]): [string, Schema<unknown>] => [
      `helper ${name}`,
      s,
    ]),
  ];
  assertEquals(schemas.length > 80, true, `only ${schemas.length} schemas`);
  const rand = seededRandom(20261204);
  const disagreements: string[] = [];
  let accepted = 0;
  for (const [name, schema] of schemas) {
    const validate = ajv.compile(schema.json);
    const refined = JSON.stringify(schema.json).includes(REFINED);
    for (let i = 0; i < SAMPLES; i++) {
      const value = draw(schema.json, rand);
      const ours = verdict(schema, value);
      const theirs = validate(value);
      if (ours) accepted++;
      // Looser is allowed only where the parser refines; stricter never.
      if (ours ? !theirs : theirs && !refined) {
        disagreements.push(`${name}: ours ${ours}, ajv ${theirs} on ${JSON.stringify(value)}`);
      }
    }
  }
  assertEquals(disagreements.slice(0, 5), []);
  // The draw must reach valid values often enough for agreement to mean something.
  assertEquals(accepted > schemas.length * SAMPLES * 0.15, true, `only ${accepted} accepted`);
});
