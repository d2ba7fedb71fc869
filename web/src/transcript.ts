// A conversation's messages as the pages show them, whichever way each came:
// live on the stream, in the answer to a post, or read again over HTTP.
import type { Message, StreamEvent } from "./client";

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

/**
 * Entry is a line of a transcript: a message, or a hand-off (the visitor,
 * or the bot, asked for a person), which the live stream tells and the
 * transcript's pages hold as a line with handed_off.
 */
export type Entry = Message & { handoff?: boolean };

// A hand-off's line is named by its event's seq, which the live event and
// the transcript's line share: heard live and read again, it shows once.
const handoffID = (seq: number | undefined) => `handoff-${seq ?? 0}`;

/** handoffEntry is the line a handed_off event leaves, at the server's time of it. */
export function handoffEntry(e: StreamEvent): Entry {
  // The stream gives at on every handed_off event.
  return { id: handoffID(e.seq), seq: e.seq, at: e.at as string, author: e.author ?? null, text: null, handoff: true };
}

/** entryOf is the line a transcript's message makes. */
export function entryOf(m: Message): Entry {
  return m.handed_off ? { ...m, id: handoffID(m.seq), handoff: true } : m;
}
