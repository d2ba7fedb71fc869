// The console's inbox: the conversations the signed-in person may see, read
// page after page from GET /v1/conversations and kept current by the live
// stream, with the unread count of each. Views subscribe to it and read it;
// it never renders.
import { client } from "../staff/session";
import { CallError, retryDelay, sleep, spreadOut, type StreamEvent } from "../client";
import { botID, isBot, type Integration } from "../bots";
import { handoffEntry, type Entry } from "../transcript";

export type Profile = { name?: string; email?: string; updated_at: string };

export type Summary = {
  id: string;
  status: "open" | "closed";
  assignee: string | null;
  visitor?: string;
  rating: number | null;
  created_at: string;
  last_message_at: string;
  closed_at: string | null;
  first_response_at: string | null;
  visitor_profile?: Profile;
  /** Set here, not by the API: the visitor was erased while the console ran. */
  erased?: boolean;
};

type Page = { conversations: Summary[]; next_cursor: string | null };

// Unread counts live in sessionStorage: they survive a reload of the tab and
// end with it, like the staff session itself, and hold only ids and counts.
const unreadKey = "parley.console.unread";

function loadUnread(): Record<string, number> {
  try {
    return JSON.parse(sessionStorage.getItem(unreadKey) ?? "{}");
  } catch {
    return {};
  }
}

// How many live messages of each conversation are kept (see Inbox.heard).
const heardKept = 50;

// How often a read an event asked for is tried again when it got no answer
// or a 5xx (waits of 1, 2, 4 and 8 s): what the event said shows at once,
// yet what else changed (a rating, a profile) would wait for a resync.
const refreshRetries = 4;

// transient says whether a call failed in a way worth trying again: no
// answer at all, or the server's own trouble.
const transient = (e: unknown) => !(e instanceof CallError) || e.status >= 500;

/** Inbox holds the conversations and tells its subscribers when they change. */
export class Inbox {
  readonly byID = new Map<string, Summary>();
  unread: Record<string, number> = loadUnread();
  /** The conversation on screen: its visitor's messages are read as they come. */
  openID = "";
  loading = true;
  error = "";
  /** Closed conversations are read a page at a time, on demand. */
  closedCursor: string | null | undefined = undefined;
  /**
   * The messages that came live, the last few of each conversation: what an
   * agent may not read from the transcript of one not assigned to them, yet
   * was shown as it was said.
   */
  readonly heard = new Map<string, Entry[]>();
  /** The tenant's bots, id to name, for supervisors and admins (who may assign them). */
  bots = new Map<string, string>();
  /**
   * While a load runs, the conversations read on their own (refresh)
   * meanwhile: what its pages say of them may be older, read before the
   * event that had them read, so the pages leave them be.
   */
  private readAlone: Set<string> | null = null;
  /** The load running, if any; loadAgain: another was asked for meanwhile. */
  private loadRunning: Promise<void> | null = null;
  private loadAgain = false;
  /**
   * The newest read of each conversation under way (refresh), by the
   * number it began with: an older read's answer, which may come last, is
   * dropped.
   */
  private readsUnderWay = new Map<string, number>();
  private readsBegun = 0;
  private sorted: Summary[] | null = null;
  private listeners = new Set<() => void>();
  private eventListeners = new Set<(e: StreamEvent) => void>();

  constructor(private readonly me: { id: string; role: string }) {}

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** onEvent hands every stream event to fn too (the open conversation's view). */
  onEvent(fn: (e: StreamEvent) => void): () => void {
    this.eventListeners.add(fn);
    return () => this.eventListeners.delete(fn);
  }

  private changed(): void {
    this.sorted = null;
    for (const fn of this.listeners) fn();
  }

  /**
   * list answers the conversations of a status, latest activity first: the
   * order a person answering works in. Sorted once per change, not per render.
   */
  list(status: "open" | "closed"): Summary[] {
    if (!this.sorted) {
      this.sorted = [...this.byID.values()].sort((a, b) =>
        a.last_message_at < b.last_message_at ? 1 : a.last_message_at > b.last_message_at ? -1 : a.id < b.id ? 1 : -1,
      );
    }
    return this.sorted.filter((c) => c.status === status);
  }

  /**
   * load reads the open conversations page after page; the rows show as the
   * first page arrives, the rest follow. A row shown open that the whole
   * read did not list (closed, or taken by another agent, while the stream
   * that would have said so was down) is read again on its own, one at a
   * time: it shows closed, or leaves.
   *
   * One load runs at a time: asked for while one runs (a resync during the
   * first load, or during a reload), it runs once more after it, as what it
   * was asked for may have changed after that one's pages were read. It
   * resolves when no load is left to run.
   */
  load(): Promise<void> {
    if (this.loadRunning) {
      this.loadAgain = true;
      return this.loadRunning;
    }
    this.loading = true;
    this.loadRunning = (async () => {
      try {
        do {
          this.loadAgain = false;
          await this.loadOnce();
        } while (this.loadAgain);
      } finally {
        this.loadRunning = null;
        this.loading = false;
        this.changed();
      }
    })();
    return this.loadRunning;
  }

  private async loadOnce(): Promise<void> {
    this.error = "";
    const alone = new Set<string>();
    const listed = new Set<string>();
    this.readAlone = alone;
    this.changed();
    try {
      for await (const page of client.pages<Summary>("/v1/conversations", "conversations", { status: "open", limit: "500" })) {
        for (const c of page) {
          listed.add(c.id);
          if (!alone.has(c.id)) this.put(c);
        }
        this.changed();
      }
      const unlisted = [...this.byID.values()].filter((c) => c.status === "open" && !listed.has(c.id) && !alone.has(c.id));
      for (const c of unlisted) await this.refresh(c.id);
    } catch (e) {
      this.error = (e as Error).message;
    } finally {
      this.readAlone = null;
    }
  }

  /**
   * reload is a resync's load, after a random wait (every console of the
   * tenant is told at once); resyncs heard while it waits are answered by
   * the same load. Closed conversations already read are read again from
   * their first page: an erasure or a rating missed meanwhile shows there
   * too.
   */
  private readonly reload = spreadOut(async () => {
    await this.load();
    if (this.closedCursor === undefined) return;
    for (const c of this.byID.values()) if (c.status === "closed") this.byID.delete(c.id);
    this.closedCursor = undefined;
    await this.moreClosed();
  });

  /**
   * loadBots reads the tenant's bots, for supervisors and admins: agents
   * may not list them, and see a bot by its id.
   */
  async loadBots(): Promise<void> {
    if (this.me.role === "agent") return;
    try {
      const { bots } = await client.json<{ bots: Integration[] }>("GET", "/v1/bots");
      this.bots = new Map(bots.map((b) => [b.id, b.name]));
    } catch {
      // Without the list, bots show by their id and cannot be picked to assign.
    }
    this.changed();
  }

  /** assigneeName says who a conversation is with: a bot by its name, an agent by their id. */
  assigneeName(assignee: string): string {
    if (!isBot(assignee)) return assignee;
    const id = botID(assignee);
    return `${this.bots.get(id) ?? id} (bot)`;
  }

  /** moreClosed reads the next page of closed conversations. */
  async moreClosed(): Promise<void> {
    if (this.closedCursor === null) return;
    const q = new URLSearchParams({ status: "closed", limit: "100" });
    if (this.closedCursor) q.set("cursor", this.closedCursor);
    try {
      const page: Page = await client.json("GET", `/v1/conversations?${q}`);
      for (const c of page.conversations) this.put(c);
      this.closedCursor = page.next_cursor;
    } catch (e) {
      this.error = (e as Error).message;
    }
    this.changed();
  }

  private put(c: Summary): void {
    const was = this.byID.get(c.id);
    // A message heard live outlasts a summary read before it arrived.
    if (was && Date.parse(was.last_message_at) > Date.parse(c.last_message_at)) c = { ...c, last_message_at: was.last_message_at };
    // An erasure seen live outlasts a summary read before it arrived.
    this.byID.set(c.id, was?.erased ? { ...c, erased: true, assignee: null, rating: null, visitor_profile: undefined } : c);
  }

  /**
   * refresh reads one conversation again; gone from view (403/404) drops it.
   * Only the answer of the newest read of it counts: two reads may answer
   * out of order. A read that fails for no answer or a 5xx is tried again,
   * up to retries times, waiting longer each time, while no newer read began.
   */
  async refresh(id: string, retries = 0): Promise<void> {
    const n = ++this.readsBegun;
    this.readsUnderWay.set(id, n);
    const newest = () => this.readsUnderWay.get(id) === n;
    for (let tried = 0; ; tried++) {
      try {
        const c = await client.json<Summary>("GET", `/v1/conversations/${id}`);
        if (!newest()) return;
        this.put(c);
        this.readAlone?.add(id);
      } catch (e) {
        if (!newest()) return;
        if (e instanceof CallError && (e.status === 403 || e.status === 404)) {
          this.readAlone?.add(id);
          this.byID.delete(id);
          this.heard.delete(id);
        } else if (transient(e) && tried < retries) {
          await sleep(retryDelay(tried + 1));
          if (!newest()) return;
          continue;
        } else this.error = (e as Error).message;
      }
      this.readsUnderWay.delete(id);
      this.changed();
      return;
    }
  }

  /** update replaces a conversation with what a call answered. */
  update(c: Summary): void {
    // Newer than any read of it under way, whose answer is then dropped,
    // and than what a load's pages say of it.
    this.readsUnderWay.delete(c.id);
    this.readAlone?.add(c.id);
    this.put(c);
    this.changed();
  }

  /** opened marks the conversation on screen, its messages read. */
  opened(id: string): void {
    this.openID = id;
    if (this.unread[id]) {
      delete this.unread[id];
      this.keepUnread();
    }
    this.changed();
  }

  private keepUnread(): void {
    try {
      sessionStorage.setItem(unreadKey, JSON.stringify(this.unread));
    } catch {
      // Storage blocked: the counts last as long as the page.
    }
  }

  /**
   * patch applies to conversation id, if shown, what an event says of it,
   * before the read the event asks for: that read may fail.
   */
  private patch(id: string, change: Partial<Summary>): void {
    const c = this.byID.get(id);
    if (!c) return;
    this.byID.set(id, { ...c, ...change });
    this.changed();
  }

  /** handle applies one live stream event. */
  handle(e: StreamEvent): void {
    for (const fn of this.eventListeners) fn(e);
    const id = e.conversation_id;
    switch (e.type) {
      case "resync":
        void this.reload();
        return;
      case "erased":
        for (const c of this.byID.values()) {
          if (c.visitor === e.visitor) {
            this.byID.set(c.id, { ...c, erased: true, status: "closed", assignee: null, rating: null, visitor_profile: undefined });
          }
        }
        this.changed();
        return;
      case "message": {
        if (!id || !e.message) return;
        const c = this.byID.get(id);
        if (c) this.byID.set(id, { ...c, last_message_at: e.message.at });
        const heard = this.heard.get(id) ?? [];
        heard.push({ ...e.message, seq: e.seq });
        this.heard.set(id, heard.slice(-heardKept));
        if (e.message.author?.role === "visitor" && id !== this.openID) {
          this.unread[id] = (this.unread[id] ?? 0) + 1;
          this.keepUnread();
        }
        if (c) this.changed();
        else void this.refresh(id, refreshRetries);
        return;
      }
      case "handed_off": {
        if (!id) return;
        const heard = this.heard.get(id) ?? [];
        heard.push(handoffEntry(e));
        this.heard.set(id, heard.slice(-heardKept));
        // A hand-off always unassigns (docs/api.md).
        this.patch(id, { assignee: null });
        void this.refresh(id, refreshRetries);
        return;
      }
      case "withdrawn": {
        const w = e.message?.id;
        const heard = id && this.heard.get(id);
        if (heard) this.heard.set(id, heard.map((m) => (m.id === w ? { ...m, text: null, withdrawn: true } : m)));
        return;
      }
      case "assigned":
      case "closed":
        if (!id) return;
        // The frame carries no time of the close: closed_at stays until read.
        this.patch(id, e.type === "closed" ? { status: "closed" } : { assignee: e.assignee ?? null });
        void this.refresh(id, refreshRetries);
        return;
      case "opened":
      case "rated":
        if (id) void this.refresh(id, refreshRetries);
        return;
    }
  }

  /** Whether the signed-in person may post: agents do, supervisors and admins do not. */
  get posts(): boolean {
    return this.me.role === "agent";
  }
}
