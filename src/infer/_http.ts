/**
 * HTTP plumbing of the server: errors that carry a status, JSON responses, bodies read under a
 * size limit, request validation with zod (messages name the field, `adapter: must be 1-128
 * letters…`), and a constant-time token check.
 *
 * Imported only by `server.ts`, `_adapter_dir.ts` and `_request.ts`.
 *
 * @module
 */

import { z } from "npm:zod@4.6.7";

/** An error the server answers with `status` and `{"error": message}`. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HttpError";
  }
}

const JSON_TYPE: Readonly<Record<string, string>> = Object.freeze({
  "content-type": "application/json; charset=utf-8",
});

/** A JSON response. */
export function json(body: unknown, status = 200, headers?: Record<string, string>): Response {
  // One shared header object unless more are asked for: Response copies it.
  return new Response(JSON.stringify(body), {
    status,
    headers: headers ? { ...JSON_TYPE, ...headers } : JSON_TYPE,
  });
}

const UTF8 = new TextDecoder("utf-8");

/**
 * Reads and parses a JSON body of at most `limit` bytes (413 beyond, 400 when malformed). Bytes
 * that are not UTF-8 decode to U+FFFD, as `Request.text()` decodes them: outside a string no JSON
 * token takes it, and no adapter name does.
 */
export async function readJson(req: Request, limit: number): Promise<unknown> {
  const tooLarge = () => new HttpError(413, `Request body is over the limit of ${limit} bytes`);
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooLarge();
  // With a declared length HTTP framing bounds the body: read it in one go, as text (Deno decodes
  // a body that has fully arrived without a copy through JavaScript). Without one (chunked) count
  // the bytes as they come.
  let text: string;
  if (declared !== null) text = await req.text();
  else {
    const bytes = await readAll(req, limit);
    if (bytes === null) throw tooLarge();
    text = UTF8.decode(bytes);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `Malformed JSON: ${(e as Error).message}`);
  }
}

/** The body of a request without a declared length, or `null` once it grows past `limit`. */
async function readAll(req: Request, limit: number): Promise<Uint8Array | null> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel().catch(() => {});
        return null;
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) bytes.set(c, (at += c.byteLength) - c.byteLength);
  return bytes;
}

/** Adapter names: a file name in the adapters folder, no separators, no leading dot. */
export const ADAPTER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,127}$/;

const name = z.string().regex(ADAPTER_NAME, {
  message: "must be 1-128 letters, digits or _.@+- and not start with a dot or dash",
});

/** `POST /v1/predict` body; its rows are read by `_request.ts`. */
export const PredictBody = z.object({
  inputs: z.array(z.unknown()).min(1),
  adapter: name.nullable().optional(),
});

/** `POST /v1/adapters` body. */
export const AdapterBody = z.object({ name, path: z.string().min(1) });

/** Parses `value` with `schema`, or fails with 400 naming the first bad field. */
export function validate<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const where = fieldPath(issue.path);
  throw new HttpError(400, where ? `${where}: ${issue.message}` : issue.message);
}

/** `["inputs", 3, 1]` → `inputs[3][1]`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => typeof p === "number" ? `[${p}]` : `${i ? "." : ""}${String(p)}`).join(
    "",
  );
}

/**
 * Checks `Authorization: Bearer <token>` in constant time: both sides are hashed first, so the
 * comparison takes the same time whatever the length or the first differing byte.
 */
export async function tokenChecker(token: string): Promise<(req: Request) => Promise<boolean>> {
  const digest = async (s: string) =>
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
  const want = await digest(token);
  return async (req) => {
    const header = req.headers.get("authorization") ?? "";
    const bearer = header.startsWith("Bearer ");
    const got = await digest(bearer ? header.slice(7) : header);
    let diff = 0;
    for (let i = 0; i < want.length; i++) diff |= want[i]! ^ got[i]!;
    return bearer && diff === 0;
  };
}
