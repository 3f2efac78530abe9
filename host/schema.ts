/**
 * A small validation kit for data crossing a boundary: RPC bodies, config files,
 * manifests. Each schema parses `unknown` into a typed value or throws a
 * {@linkcode SchemaError} naming the offending field; objects reject unknown keys. Each
 * also describes itself as JSON Schema (`json`), for the API reference and MCP tools.
 *
 * Kept rather than replaced by valibot: the CLI parses every daemon answer with these
 * schemas, and valibot costs the CLI ~3.5 ms of start-up (measured in a project with a
 * lockfile, +20% of a bare deno start), which the CLI round trip's 1.5× budget cannot take.
 *
 * It lives at the bottom layer (it imports nothing) so the wire types, the store and the
 * catalog can all share it.
 *
 * @module
 */

/** A value did not match its schema. `path` names the field, e.g. `spec.vcpu`. */
export class SchemaError extends Error {
  constructor(readonly path: string, readonly problem: string) {
    super(path ? `"${path}" ${problem}` : problem);
    this.name = "SchemaError";
  }
}

/** A JSON Schema (draft 2020-12 keywords) document or subschema. */
export type JsonSchema = { readonly [keyword: string]: unknown };

/** Parses unknown data into a `T`. */
export interface Schema<T> {
  /** @throws {SchemaError} */
  parse(value: unknown, path?: string): T;
  /** Short description of what is allowed, used in messages and docs. */
  readonly expected: string;
  /**
   * The same rules as JSON Schema, built when first read. A {@linkcode refine}d check
   * shows only as its description: JSON Schema cannot say "an IPv4 address inside cidr".
   */
  readonly json: JsonSchema;
  /** Set by {@linkcode optional}: the key may be missing from its object. */
  readonly optional?: true;
}

/**
 * `base` (a fresh object, which gains the property) plus a lazily built `json`: schemas
 * are made at start-up, and their JSON is rarely read.
 */
export function withJson<T>(base: Omit<Schema<T>, "json">, build: () => JsonSchema): Schema<T> {
  let built: JsonSchema | undefined;
  return Object.defineProperty(base, "json", {
    get: () => built ??= build(),
    enumerable: true,
  }) as Schema<T>;
}

/**
 * The `$comment` of a {@linkcode refine}d schema: the parser checks more than its JSON
 * Schema can say, so the JSON Schema accepts a superset.
 */
export const REFINED = "checked further by banger";

/** `schema` without the keys whose value is undefined. */
function compact(schema: Record<string, unknown>): JsonSchema {
  return Object.fromEntries(Object.entries(schema).filter(([, v]) => v !== undefined));
}

/** The type a schema produces. */
export type Infer<S> = S extends Schema<infer T> ? T : never;

type Shape = Record<string, Schema<unknown>>;
type OptionalKeys<S extends Shape> = {
  [K in keyof S]: S[K] extends { optional: true } ? K : never;
}[keyof S];
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>;
type Flatten<T> = { [K in keyof T]: T[K] } & unknown;
/** The object type described by a shape: optional schemas become optional keys. */
export type ObjectOf<S extends Shape> = Flatten<
  & { [K in RequiredKeys<S>]: Infer<S[K]> }
  & { [K in OptionalKeys<S>]?: Infer<S[K]> }
>;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") {
    return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value);
  }
  if (typeof value === "object") return "an object";
  return String(value);
}

function fail(path: string, expected: string, value: unknown): never {
  throw new SchemaError(path, `must be ${expected}, got ${describe(value)}`);
}

/** Options for {@linkcode string}. */
export interface StringOptions {
  /** Minimum length. @default {0} */
  min?: number;
  /** Maximum length. @default {Infinity} */
  max?: number;
  /** Pattern the whole string must match. */
  pattern?: RegExp;
  /** Words used in messages instead of "a string". */
  expected?: string;
}

/** A string, optionally length- and pattern-checked. */
export function string(options: StringOptions = {}): Schema<string> {
  const expected = options.expected ?? "a string";
  return withJson({
    expected,
    parse(value: unknown, path = ""): string {
      if (typeof value !== "string") fail(path, expected, value);
      if (options.min !== undefined && value.length < options.min) fail(path, expected, value);
      if (options.max !== undefined && value.length > options.max) fail(path, expected, value);
      if (options.pattern && !options.pattern.test(value)) fail(path, expected, value);
      return value;
    },
  }, () =>
    compact({
      type: "string",
      minLength: options.min,
      maxLength: options.max,
      pattern: options.pattern?.source,
      description: options.expected,
    }));
}

/** Options for {@linkcode number}. */
export interface NumberOptions {
  /** Only whole numbers. @default {false} */
  int?: boolean;
  /** Smallest allowed value. */
  min?: number;
  /** Largest allowed value. */
  max?: number;
}

/** A finite number, optionally an integer within bounds. */
export function number(options: NumberOptions = {}): Schema<number> {
  const kind = options.int ? "an integer" : "a number";
  const range = options.min !== undefined && options.max !== undefined
    ? ` from ${options.min} to ${options.max}`
    : options.min !== undefined
    ? ` of at least ${options.min}`
    : options.max !== undefined
    ? ` of at most ${options.max}`
    : "";
  const expected = kind + range;
  return withJson({
    expected,
    parse(value: unknown, path = ""): number {
      if (typeof value !== "number" || !Number.isFinite(value)) fail(path, expected, value);
      if (options.int && !Number.isInteger(value)) fail(path, expected, value);
      if (options.min !== undefined && value < options.min) fail(path, expected, value);
      if (options.max !== undefined && value > options.max) fail(path, expected, value);
      return value;
    },
  }, () =>
    compact({
      type: options.int ? "integer" : "number",
      minimum: options.min,
      maximum: options.max,
    }));
}

/** `true` or `false`. */
export function boolean(): Schema<boolean> {
  return withJson({
    expected: "true or false",
    parse(value: unknown, path = ""): boolean {
      if (typeof value !== "boolean") fail(path, "true or false", value);
      return value;
    },
  }, () => ({ type: "boolean" }));
}

/** One of the given string constants. */
export function literal<const T extends readonly string[]>(...values: T): Schema<T[number]> {
  const expected = values.length === 1
    ? JSON.stringify(values[0])
    : `one of ${values.map((v) => JSON.stringify(v)).join(", ")}`;
  return withJson({
    expected,
    parse(value: unknown, path = ""): T[number] {
      if (typeof value !== "string" || !values.includes(value)) fail(path, expected, value);
      return value as T[number];
    },
  }, () => (values.length === 1 ? { const: values[0] } : { enum: [...values] }));
}

/** An array whose items all match `item`. */
export function array<T>(item: Schema<T>, options: { max?: number } = {}): Schema<T[]> {
  const expected = `a list of ${item.expected}`;
  return withJson({
    expected,
    parse(value: unknown, path = ""): T[] {
      if (!Array.isArray(value)) fail(path, expected, value);
      if (options.max !== undefined && value.length > options.max) {
        throw new SchemaError(path, `must have at most ${options.max} items`);
      }
      return value.map((v, i) => item.parse(v, `${path}[${i}]`));
    },
  }, () => compact({ type: "array", items: item.json, maxItems: options.max }));
}

/** An object with exactly the keys of `shape`; unknown keys are rejected. */
export function object<S extends Shape>(shape: S): Schema<ObjectOf<S>> {
  return withJson({
    expected: "an object",
    parse(value: unknown, path = ""): ObjectOf<S> {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        fail(path, "an object", value);
      }
      const input = value as Record<string, unknown>;
      for (const key of Object.keys(input)) {
        if (!Object.hasOwn(shape, key)) {
          const known = Object.keys(shape).join(", ");
          throw new SchemaError(
            join(path, key),
            `is not a known field${known ? ` (allowed: ${known})` : ""}`,
          );
        }
      }
      const out: Record<string, unknown> = {};
      for (const [key, schema] of Object.entries(shape)) {
        const v = input[key];
        if (v === undefined) {
          if (schema.optional) continue;
          throw new SchemaError(join(path, key), `is required (${schema.expected})`);
        }
        out[key] = schema.parse(v, join(path, key));
      }
      return out as ObjectOf<S>;
    },
  }, () => {
    const required = Object.keys(shape).filter((k) => !shape[k].optional);
    return compact({
      type: "object",
      properties: Object.fromEntries(Object.entries(shape).map(([k, v]) => [k, v.json])),
      required: required.length ? required : undefined,
      additionalProperties: false,
    });
  });
}

/** A map from string keys to values matching `item`. */
export function record<T>(item: Schema<T>): Schema<Record<string, T>> {
  const expected = `a map of ${item.expected}`;
  return withJson({
    expected,
    parse(value: unknown, path = ""): Record<string, T> {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        fail(path, expected, value);
      }
      const out: Record<string, T> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        out[k] = item.parse(v, join(path, k));
      }
      return out;
    },
  }, () => ({ type: "object", additionalProperties: item.json }));
}

/** Marks a field of an {@linkcode object} as optional. */
export function optional<T>(schema: Schema<T>): Schema<T | undefined> & { optional: true } {
  const wrapped = withJson<T | undefined>({
    expected: schema.expected,
    optional: true,
    parse(value: unknown, path = ""): T | undefined {
      return value === undefined ? undefined : schema.parse(value, path);
    },
  }, () => schema.json);
  // `optional: true` is in the object itself; the type says so for ObjectOf.
  return wrapped as Schema<T | undefined> & { optional: true };
}

/** Accepts `null` as well as what `schema` accepts. */
export function nullable<T>(schema: Schema<T>): Schema<T | null> {
  return withJson({
    expected: `${schema.expected} or null`,
    parse(value: unknown, path = ""): T | null {
      return value === null ? null : schema.parse(value, path);
    },
  }, () => ({ anyOf: [schema.json, { type: "null" }] }));
}

/** Accepts anything (for opaque JSON passed through unchanged). */
export function unknownValue(): Schema<unknown> {
  return withJson({ expected: "any value", parse: (value: unknown) => value }, () => ({}));
}

/** Applies an extra check or conversion after `schema` parsed the value. */
export function refine<T, U>(
  schema: Schema<T>,
  expected: string,
  convert: (value: T) => U | undefined,
): Schema<U> {
  return withJson({
    expected,
    parse(value: unknown, path = ""): U {
      const parsed = schema.parse(value, path);
      const out = convert(parsed);
      if (out === undefined) fail(path, expected, value);
      return out;
    },
  }, () => ({ ...schema.json, description: expected, $comment: REFINED }));
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}
