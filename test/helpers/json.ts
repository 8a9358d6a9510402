/**
 * A JSON document as tests read it: field by field, each read checked by the assertion that uses
 * it, so its values are left untyped.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- assertions check every field they read
export type JsonObject = Record<string, any>;

export function parseJson(body: Buffer): JsonObject {
  return JSON.parse(body.toString('utf8')) as JsonObject;
}
