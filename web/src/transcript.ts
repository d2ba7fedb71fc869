// A conversation's messages as the pages show them, whichever way each came:
// live on the stream, in the answer to a post, or read again over HTTP.
import type { Message } from "./client";

/**
 * merge answers have with the messages of more it lacks (by id), in stream
 * order (seq; one without a seq goes last): a message both heard live and
 * read again shows once, where it was posted.
 */
export function merge<T extends Message>(have: T[], more: T[]): T[] {
  const ids = new Set(have.map((m) => m.id));
  const out = [...have, ...more.filter((m) => !ids.has(m.id))];
  return out.sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity));
}
