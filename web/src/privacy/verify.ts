// audit verify in the browser: the hash chain of a tenant's audit trail and
// its signed checkpoints, checked with WebCrypto over the same canonical
// encodings pkg/audit uses (every field prefixed by its length in 4 bytes
// big-endian, after a version string), with the rules and words of
// `parley audit verify`.

import { counted } from "./counted";

export type Entry = {
  at: string;
  tenant: string;
  actor: { role: string; id: string };
  action: string;
  target: string;
  prev_hash: string;
  hash: string;
};

export type Checkpoint = { tenant: string; count: number; head: string; at: string; signature: string };

/** An answer of GET /v1/audit/checkpoint, as the auditor saves it. */
export type CheckpointAnswer = { checkpoint: Checkpoint | null; public_key: string | null };

const utf8 = new TextEncoder();

function encode(fields: string[]): Uint8Array<ArrayBuffer> {
  const parts = fields.map((f) => utf8.encode(f));
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const p of parts) {
    view.setUint32(at, p.length);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/**
 * goTime writes an RFC 3339 time as Go's UTC().Format(time.RFC3339Nano)
 * does: UTC with "Z", and the fraction of a second without trailing zeros
 * (none when it is 0). The fraction is kept as written: a Date would round
 * nanoseconds to milliseconds.
 */
export function goTime(s: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(s);
  if (!m) throw new Error(`${s} is not an RFC 3339 time`);
  const frac = (m[2] ?? "").replace(/0+$/, "");
  const whole = m[3] === "Z" ? m[1] : new Date(m[1] + m[3]).toISOString().slice(0, 19);
  return whole + (frac ? "." + frac : "") + "Z";
}

function hex(b: ArrayBuffer): string {
  return Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
}

function fromBase64(s: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

/** The hex SHA-256 of e's canonical encoding (audit.Entry.ComputeHash). */
export async function entryHash(e: Entry): Promise<string> {
  const b = encode(["parley-audit-v1", goTime(e.at), e.tenant, e.actor.role, e.actor.id, e.action, e.target, e.prev_hash]);
  return hex(await crypto.subtle.digest("SHA-256", b));
}

/** Where a chain breaks (audit.ChainError): index from 0. */
export type ChainBreak = { index: number; entry: Entry; reason: string };

/** verifyChain checks a whole chain, oldest first, as audit.Verify does. */
export async function verifyChain(entries: Entry[]): Promise<ChainBreak | null> {
  let prev = "";
  for (const [index, entry] of entries.entries()) {
    if (entry.prev_hash !== prev && index === 0) {
      return { index, entry, reason: "the chain does not start here: entries before it were removed" };
    }
    if (entry.prev_hash !== prev) {
      return { index, entry, reason: "it does not link to the entry before: an entry between them was removed or reordered" };
    }
    if ((await entryHash(entry)) !== entry.hash) {
      return { index, entry, reason: "its hash does not match its content: the entry was changed" };
    }
    prev = entry.hash;
  }
  return null;
}

/**
 * checkpointRefusal answers why cp cannot be trusted — a signature that
 * does not verify with publicKey (base64), or another tenant's — and null
 * when it can.
 */
export async function checkpointRefusal(cp: Checkpoint, publicKey: string, tenant: string): Promise<string | null> {
  const bad = "audit checkpoint signature does not verify";
  let key: Uint8Array<ArrayBuffer>, sig: Uint8Array<ArrayBuffer>;
  try {
    key = fromBase64(publicKey);
    sig = fromBase64(cp.signature);
  } catch {
    return `${bad}: the key or the signature is not base64`;
  }
  if (key.length !== 32) return `${bad}: a public key of ${key.length} bytes, want 32`;
  const signed = encode(["parley-audit-checkpoint-v1", cp.tenant, String(cp.count), cp.head, goTime(cp.at)]);
  let ok = false;
  try {
    const k = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    ok = await crypto.subtle.verify({ name: "Ed25519" }, k, sig, signed);
  } catch {
    ok = false;
  }
  if (!ok) return `${bad}: not signed by this key, or changed since`;
  if (cp.tenant !== tenant) return `it is of tenant ${cp.tenant}`;
  return null;
}

/**
 * missingEntries answers how entries, a sound chain oldest first, lack what
 * cp counts (audit.CheckCheckpoint), and null when they hold it.
 */
export function missingEntries(entries: Entry[], cp: Checkpoint): string | null {
  const says = `the checkpoint of ${goTime(cp.at).replace(/\.\d+Z$/, "Z")} says ${counted(cp.count, "entry")}, the last with hash ${cp.head}`;
  if (entries.length === 0 && cp.count > 0) return `${says}: the trail has no entries: it was deleted`;
  if (entries.length < cp.count) return `${says}: the trail has ${entries.length}: its newest entries were removed`;
  if (cp.count > 0 && entries[cp.count - 1].hash !== cp.head) {
    return `${says}: entry ${cp.count} has hash ${entries[cp.count - 1].hash}: the trail was rewritten`;
  }
  return null;
}

/** A checkpoint's result: held, refused (signature, tenant) or entries missing. */
export type CheckpointResult = { name: string; cp: Checkpoint; state: "held" | "refused" | "missing"; why: string };

/** checkCheckpoint checks cp as `parley audit verify` does (checkCheckpoint). */
export async function checkCheckpoint(name: string, entries: Entry[], cp: Checkpoint, publicKey: string, tenant: string): Promise<CheckpointResult> {
  const refused = await checkpointRefusal(cp, publicKey, tenant);
  if (refused) return { name, cp, state: "refused", why: refused };
  const missing = missingEntries(entries, cp);
  if (missing) return { name, cp, state: "missing", why: missing };
  return { name, cp, state: "held", why: "" };
}

/** parseSaved reads a pasted answer of GET /v1/audit/checkpoint. */
export function parseSaved(text: string): CheckpointAnswer {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`not an answer of GET /v1/audit/checkpoint: ${(e as Error).message}`);
  }
  const a = v as CheckpointAnswer;
  const cp = a?.checkpoint;
  if (
    typeof a !== "object" || a === null || cp === undefined ||
    (cp !== null && (typeof cp.tenant !== "string" || !Number.isInteger(cp.count) || typeof cp.head !== "string" || typeof cp.at !== "string" || typeof cp.signature !== "string"))
  ) {
    throw new Error('not an answer of GET /v1/audit/checkpoint: want {"checkpoint":{"tenant","count","head","at","signature"},"public_key"}');
  }
  return { checkpoint: cp, public_key: typeof a.public_key === "string" ? a.public_key : null };
}
