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
};

export type StreamEvent = {
  type: string;
  seq?: number;
  conversation_id?: string;
  message?: Message;
  author?: { role: string; id: string };
  /** On an erased event (to staff): the visitor erased. */
  visitor?: string;
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

export class Client {
  private access = "";
  private refresh = "";
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
      consent,
      notice_version: noticeVersion,
    }, false);
    this.keep(await r.json());
  }

  /** Starts the session a staff sign-in answered. */
  signedIn(s: SessionAnswer): void {
    this.keep(s);
  }

  /**
   * Uses an access token alone (a try-out's `parley token`): nothing is
   * stored, and the session ends when the token expires.
   */
  useToken(access: string, principal: Principal): void {
    this.access = access;
    this.principal = principal;
  }

  /** An anonymous GET (no session), answering the JSON. */
  async anonymous<T>(path: string): Promise<T> {
    return (await this.send("GET", path, undefined, false)).json();
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

  private async renew(): Promise<void> {
    const r = await this.send("POST", "/v1/sessions/refresh", { refresh_token: this.refresh }, false);
    this.keep(await r.json());
  }

  /** call sends an authenticated request, renewing the access token once when it has expired. */
  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
    try {
      return await this.send(method, path, body, true, headers);
    } catch (e) {
      if (!(e instanceof CallError) || e.status !== 401 || !this.refresh) throw e;
      await this.renew();
      return this.send(method, path, body, true, headers);
    }
  }

  async json<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    const r = await this.call(method, path, body, headers);
    return r.status === 204 ? (undefined as T) : r.json();
  }

  private async send(method: string, path: string, body: unknown, auth: boolean, headers: Record<string, string> = {}): Promise<Response> {
    const h: Record<string, string> = { ...headers };
    if (auth) h.Authorization = `Bearer ${this.access}`;
    if (body !== undefined) h["Content-Type"] = "application/json";
    const r = await fetch(this.gateway + path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    if (!r.ok) throw await problem(r);
    return r;
  }

  /**
   * stream connects the live stream, resuming after the last seq it saw, and
   * reconnects until stopped; onGone is called when the visitor was erased.
   */
  stream(onEvent: (e: StreamEvent) => void, onGone: () => void): { send(v: unknown): void; stop(): void } {
    let ws: WebSocket | null = null;
    let since = 0;
    let stopped = false;
    const connect = () => {
      const q = new URLSearchParams({ access_token: this.access });
      if (since) q.set("since", String(since));
      ws = new WebSocket(`${this.gateway.replace(/^http/, "ws")}/v1/stream?${q}`);
      ws.onmessage = (m) => {
        const e = JSON.parse(m.data) as StreamEvent;
        if (e.seq) since = Math.max(since, e.seq);
        onEvent(e);
      };
      ws.onclose = (c) => {
        if (stopped) return;
        if (c.code === 1008) return onGone();
        // The token may have expired meanwhile: renew it, then come back.
        setTimeout(() => this.renew().then(connect, () => setTimeout(connect, 5000)), 1000);
      };
    };
    connect();
    return {
      send: (v) => ws?.readyState === WebSocket.OPEN && ws.send(JSON.stringify(v)),
      stop: () => {
        stopped = true;
        ws?.close();
      },
    };
  }
}
