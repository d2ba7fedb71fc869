// Calls to the gateway from the widget's frame and the staff pages: a
// session (an access token and a refresh token; the widget keeps the refresh
// token in the localStorage of the gateway's origin, inside its frame, once
// the visitor has started a chat, the staff pages in sessionStorage, for the
// tab's life) and the live stream.

export type Consent = { analytics: boolean; network_data: boolean; ai: boolean };

export type Principal = { tenant: string; id: string; role: string };

type SessionAnswer = { access_token: string; refresh_token: string; visitor_id?: string; principal?: Principal };

export type Message = {
  id: string;
  seq?: number;
  author: { role: string; id: string } | null;
  text: string | null;
  at: string;
  erased?: boolean;
  withdrawn?: boolean;
  /** A transcript's hand-off line (GET …/messages): author asked for a person at at; no text. */
  handed_off?: boolean;
};

export type StreamEvent = {
  type: string;
  seq?: number;
  conversation_id?: string;
  message?: Message;
  author?: { role: string; id: string };
  /** On an erased event (to staff): the visitor erased. */
  visitor?: string;
  /** On an assigned event: who answers now (an agent's id, or "bot:<id>" for a bot). */
  assignee?: string;
  /** On a handed_off event: when the person was asked for (the server's time). */
  at?: string;
};

/** A call answered with an error: a problem document's status and detail. */
export class CallError extends Error {
  constructor(readonly status: number, detail: string) {
    super(detail);
  }
}

/** problem reads an error answer's problem document. */
export async function problem(r: Response): Promise<CallError> {
  let detail = r.statusText;
  try {
    detail = (await r.json()).detail ?? detail;
  } catch {
    // Not a problem document.
  }
  return new CallError(r.status, detail);
}

export function newKey(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * explain says what a failed call means: the page's words for its status
 * when it has some, else the problem document's detail; a call that got no
 * answer at all, that the gateway cannot be reached.
 */
export function explain(e: unknown, words: { [status: number]: (detail: string) => string } = {}): string {
  if (!(e instanceof CallError)) return "Parley cannot be reached: try again.";
  return words[e.status]?.(e.message) ?? e.message;
}

// How long "typing…" shows after the last signal (senders repeat it while
// their user types, and send no "stopped"), and how often a side repeats it.
export const typingShownMs = 5000;
export const typingEveryMs = 3000;

// resyncSpreadMs is the longest a page waits, at random, before reading
// again what a resync says it missed: the thousands of visitors and the
// staff of a tenant are told at once.
const resyncSpreadMs = 2000;

/** claims reads a token's claims (not verified: the gateway does that); {} when unreadable. */
export function claims(token: string): { sub?: string; tenant?: string; role?: string; exp?: number } {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

// An access token this close to its expiry is renewed before a stream
// connects with it (the gateway allows a few seconds of clock skew).
const expirySlackMs = 30_000;

/** retryDelay is the wait before the nth retry (from 1): doubling from a second, at most 30 s. */
export function retryDelay(n: number): number {
  return Math.min(1000 * 2 ** (n - 1), 30_000);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * spreadOut answers a function that runs f after a random wait of up to
 * resyncSpreadMs; calls made while it waits are answered by that same run
 * (they ask for what it is about to read), and each resolves when it has.
 */
export function spreadOut(f: () => Promise<void>): () => Promise<void> {
  let due: Promise<void> | null = null;
  return () =>
    (due ??= sleep(Math.random() * resyncSpreadMs).then(() => {
      due = null;
      return f();
    }));
}

// reconnectDelay is retryDelay less a random part of up to half: the
// thousands of streams a gateway's restart drops at once come back spread
// over each wait, not all in the same second.
const reconnectDelay = (n: number) => retryDelay(n) * (1 - Math.random() / 2);

/** What a session that cannot be renewed (a try-out token, a session ended) says on expiry. */
export const expiredMessage = "Your session has expired: sign in again.";

/** The state of a live stream: live, reconnecting after a drop, or stopped (why). */
export type StreamState = { state: "live" } | { state: "reconnecting" } | { state: "stopped"; why: string };

// A stream gives up after this many failed connections in a row (two to
// three minutes of retries); the page then offers to reconnect.
const streamAttempts = 10;

// steadyMs is how long a connection stays open before its drop counts as
// a first failure again: the gateway drops a session that falls behind, or
// whose writes stall, and a client dropped soon after each open would
// otherwise come back every second, for good, and fall behind again.
const steadyMs = 30_000;

// firstOpenWaitMs is how long a page's reads wait for its stream's first
// connection: a handshake held up (a proxy that keeps the upgrade waiting)
// counts as a failed one, so the page loads, and the connection that opens
// later has it read again.
const firstOpenWaitMs = 5000;

type SendOptions = {
  body?: unknown;
  auth?: boolean;
  headers?: Record<string, string>;
  /** "same-origin" for the staff sign-in's calls, which its cookie binds to this browser. */
  credentials?: RequestCredentials;
};

export class Client {
  private access = "";
  private refresh = "";
  // The renewal in flight: calls refused at once share it, as a refresh
  // token is spent by one renewal, and a second use of it ends the session.
  private renewing: Promise<void> | null = null;
  visitorID = "";
  principal: Principal | null = null;

  /** storage is where the refresh token is kept: localStorage unless given. */
  constructor(
    readonly gateway: string,
    private readonly storageKey: string,
    private readonly storage: () => Storage = () => localStorage,
  ) {}

  /** The refresh token left by an earlier session, if any. */
  stored(): string | null {
    try {
      return this.storage().getItem(this.storageKey);
    } catch {
      return null;
    }
  }

  forget(): void {
    this.access = this.refresh = "";
    this.principal = null;
    try {
      this.storage().removeItem(this.storageKey);
    } catch {
      // Storage blocked: nothing was kept.
    }
  }

  private keep(s: SessionAnswer): void {
    this.access = s.access_token;
    this.refresh = s.refresh_token;
    this.visitorID = s.visitor_id ?? s.principal?.id ?? this.visitorID;
    this.principal = s.principal ?? this.principal;
    try {
      this.storage().setItem(this.storageKey, this.refresh);
    } catch {
      // Storage blocked: the chat works until the page is left.
    }
  }

  /** Registers the visitor with their choices: the first thing stored about them. */
  async register(tenant: string, consent: Consent, noticeVersion: string): Promise<void> {
    const r = await this.send("POST", `/v1/tenants/${encodeURIComponent(tenant)}/visitors`, {
      body: { consent, notice_version: noticeVersion },
    });
    this.keep(await r.json());
  }

  /** Starts the session a staff sign-in answered. */
  signedIn(s: SessionAnswer): void {
    this.keep(s);
  }

  /**
   * Uses an access token alone (a try-out's `parley token`) once the gateway
   * has said whom it names (GET /v1/me): nothing is stored, nothing renews
   * it, and the session ends when the token expires. A token the gateway
   * refuses (not valid, expired, of a tenant that does not exist) is not
   * taken: the CallError says why, as the live stream could not.
   */
  async useToken(access: string): Promise<Principal> {
    const r = await this.send("GET", "/v1/me", { headers: { Authorization: `Bearer ${access}` } });
    const p: Principal = await r.json();
    this.access = access;
    this.refresh = "";
    this.principal = p;
    return p;
  }

  /** A call without the session (anonymous, or a sign-in's), answering the JSON (undefined for 204). */
  async anonymous<T>(path: string, o: { method?: string; body?: unknown; credentials?: RequestCredentials } = {}): Promise<T> {
    const r = await this.send(o.method ?? "GET", path, o);
    return r.status === 204 ? (undefined as T) : r.json();
  }

  /** The access token, for a caller that opens its own stream. */
  token(): string {
    return this.access;
  }

  /** Resumes the session of a visitor who comes back. */
  async resume(refreshToken: string): Promise<void> {
    this.refresh = refreshToken;
    await this.renew();
  }

  /** Whether the session can be renewed: a try-out token cannot. */
  private renewable(): boolean {
    return !!(this.refresh || this.stored());
  }

  /**
   * renew trades the refresh token for a new session, one renewal at a time:
   * in this page, concurrent callers share the one in flight; across the
   * tabs sharing the storage, a lock named by its key orders them, and each
   * renews with the token stored last (another tab may have spent the one
   * this page holds).
   */
  private renew(): Promise<void> {
    this.renewing ??= this.renewNow().finally(() => (this.renewing = null));
    return this.renewing;
  }

  private async renewNow(): Promise<void> {
    const once = async () => {
      this.refresh = this.stored() ?? this.refresh;
      if (!this.refresh) throw new CallError(401, expiredMessage);
      const r = await this.send("POST", "/v1/sessions/refresh", { body: { refresh_token: this.refresh } });
      this.keep(await r.json());
    };
    // Absent outside secure contexts and in old browsers: this page's own
    // sharing still holds.
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    if (locks) await locks.request(`parley.renew.${this.storageKey}`, once);
    else await once();
  }

  /** call sends an authenticated request, renewing the access token once when it has expired. */
  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
    const used = this.access;
    try {
      return await this.send(method, path, { body, auth: true, headers });
    } catch (e) {
      if (!(e instanceof CallError) || e.status !== 401) throw e;
      if (!this.renewable()) throw (claims(used).exp ?? Infinity) * 1000 <= Date.now() ? new CallError(401, expiredMessage) : e;
      // Renewed meanwhile by another call: retry with its token.
      if (this.access === used) await this.renew();
      return this.send(method, path, { body, auth: true, headers });
    }
  }

  async json<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    const r = await this.call(method, path, body, headers);
    return r.status === 204 ? (undefined as T) : r.json();
  }

  /**
   * pages reads a list page after page (docs/api.md, Paging), yielding each
   * page's items as it arrives; query is added to every page's.
   */
  async *pages<T>(path: string, field: string, query: Record<string, string> = {}): AsyncGenerator<T[]> {
    let cursor: string | null = null;
    do {
      const q = new URLSearchParams({ limit: "200", ...query });
      if (cursor) q.set("cursor", cursor);
      const page: Record<string, unknown> = await this.json("GET", `${path}?${q}`);
      yield page[field] as T[];
      cursor = page.next_cursor as string | null;
    } while (cursor);
  }

  /** all reads every page of a list. */
  async all<T>(path: string, field: string, query?: Record<string, string>): Promise<T[]> {
    const out: T[] = [];
    for await (const items of this.pages<T>(path, field, query)) out.push(...items);
    return out;
  }

  private async send(method: string, path: string, o: SendOptions = {}): Promise<Response> {
    const h: Record<string, string> = { ...o.headers };
    if (o.auth) h.Authorization = `Bearer ${this.access}`;
    if (o.body !== undefined) h["Content-Type"] = "application/json";
    const r = await fetch(this.gateway + path, {
      method,
      headers: h,
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
      credentials: o.credentials ?? "omit",
      referrerPolicy: "no-referrer",
    });
    if (!r.ok) throw await problem(r);
    return r;
  }

  /**
   * stream connects the live stream, resuming after the last seq it saw,
   * and reconnects after a drop, waiting longer each time, until stopped or
   * given up (onState says which): a connection that drops before it has
   * been open steadyMs counts as a failed one; onGone is called when the visitor was
   * erased. The access token is renewed before a connection only when it
   * is about to expire: a browser cannot read why a WebSocket was refused.
   *
   * opened resolves when the first connection is open, or has failed, or
   * the stream stopped. Without a seq seen there is no since to ask for, so
   * the first connection hears only events stored after its handshake: a
   * page reads what it shows after opened (then applies what it heard
   * meanwhile), or an event stored between its read and the handshake
   * would show nowhere. A page whose stream fails still loads. A connection
   * that opens after one failed or dropped, with still no since, gives the
   * page a resync: what was stored in between is sent to it no other way.
   */
  stream(
    onEvent: (e: StreamEvent) => void,
    onGone: () => void,
    onState: (s: StreamState) => void = () => {},
  ): { opened: Promise<void>; send(v: unknown): void; stop(): void; reconnect(): void } {
    let settle = () => {};
    const opened = new Promise<void>((r) => (settle = r));
    // Whether a connection failed, dropped or was stopped since the last one opened.
    let gap = false;
    const gapped = () => {
      gap = true;
      settle();
    };
    let ws: WebSocket | null = null;
    let since = 0;
    let stopped = false;
    let failures = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const firstWait = setTimeout(gapped, firstOpenWaitMs);
    const end = (why: string) => {
      stopped = true;
      gapped();
      onState({ state: "stopped", why });
    };
    const retry = () => {
      gapped();
      if (++failures >= streamAttempts) return end("The live updates stopped: Parley could not be reached.");
      onState({ state: "reconnecting" });
      timer = setTimeout(connect, reconnectDelay(failures));
    };
    const connect = async () => {
      if (stopped) return;
      const left = (claims(this.access).exp ?? Infinity) * 1000 - Date.now();
      if (left <= 0 && !this.renewable()) return end(expiredMessage);
      if (left < expirySlackMs && this.renewable()) {
        try {
          await this.renew();
        } catch (e) {
          if (e instanceof CallError && e.status === 401) return end(expiredMessage);
          return retry();
        }
        if (stopped) return;
      }
      const q = new URLSearchParams({ access_token: this.access });
      if (since) q.set("since", String(since));
      let s: WebSocket;
      try {
        s = new WebSocket(`${this.gateway.replace(/^http/, "ws")}/v1/stream?${q}`);
      } catch {
        return retry();
      }
      ws = s;
      let openedAt = 0;
      s.onopen = () => {
        openedAt = Date.now();
        clearTimeout(firstWait);
        settle();
        if (gap && !since) onEvent({ type: "resync" });
        gap = false;
        onState({ state: "live" });
      };
      s.onmessage = (m) => {
        const e = JSON.parse(m.data) as StreamEvent;
        if (e.seq) since = Math.max(since, e.seq);
        onEvent(e);
      };
      s.onclose = (c) => {
        if (stopped || ws !== s) return;
        if (c.code === 1008) {
          stopped = true;
          settle();
          return onGone();
        }
        if (openedAt && Date.now() - openedAt >= steadyMs) failures = 0;
        retry();
      };
    };
    void connect();
    return {
      opened,
      send: (v) => ws?.readyState === WebSocket.OPEN && ws.send(JSON.stringify(v)),
      stop: () => {
        stopped = true;
        gapped();
        clearTimeout(timer);
        clearTimeout(firstWait);
        ws?.close();
      },
      reconnect: () => {
        if (!stopped) return;
        stopped = false;
        failures = 0;
        onState({ state: "reconnecting" });
        void connect();
      },
    };
  }
}
