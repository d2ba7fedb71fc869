// Parley's chat frame: the widget's panel, served by the gateway at
// /widget-frame and framed by the launcher (loader.ts) on the host page.
// On the gateway's origin, the conversation, the session and the refresh
// token it keeps are out of the host page's scripts' reach: they can neither
// read this document nor wrap the fetch and WebSocket it uses. The frame is
// made when the visitor opens the chat; nothing is stored before they start
// one. See docs/widget.md.
import { render } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { CallError, Client, newKey, type Consent, type Message, type StreamEvent } from "./client";
import type { ToFrame, ToLauncher } from "./widget/messages";
import "./widget.css";

// The launcher's options (widget/messages.ts FrameOptions), in the
// fragment: it never reaches a server.
const params = new URLSearchParams(location.hash.slice(1));
const opts = {
  tenant: params.get("tenant") ?? "",
  host: params.get("host") ?? "",
  title: params.get("title") || "Chat with us",
  privacyUrl: webAddress(params.get("privacyUrl")),
  noticeVersion: params.get("noticeVersion") || "1",
};

// Anyone may frame this page with any fragment: a link is followed only to
// a web address, never to a javascript: one.
function webAddress(u: string | null): string | undefined {
  try {
    const url = new URL(u ?? "");
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : undefined;
  } catch {
    return undefined;
  }
}

// tell speaks to the framing page only if it has the origin the launcher
// named; the browser drops the message otherwise.
function tell(m: ToLauncher) {
  if (window.parent === window) return;
  try {
    window.parent.postMessage(m, opts.host);
  } catch {
    // Not an origin: there is no launcher to tell.
  }
}

const purposes: { key: keyof Consent; label: string; hint: string }[] = [
  { key: "analytics", label: "Analytics", hint: "count this chat in statistics that name no one" },
  { key: "network_data", label: "Network data", hint: "record my network (never my exact address) and browser family" },
  { key: "ai", label: "AI", hint: "let AI features read my messages" },
];

const defaultNotice =
  "Nothing is stored about you until you start a chat. Then your messages are kept encrypted for as long as " +
  "this site keeps chats, and you can download or erase them here at any time.";

type Phase = "loading" | "consent" | "starting" | "list" | "chat" | "erased";
type Erasure = { erasure_id: string; status: string; completed_at?: string | null };
type Conversation = { id: string; status: string; created_at: string; last_message_at: string };
type Notice = { version: string; text: string };

const client = new Client(location.origin, `parley.${opts.tenant}.refresh`);
// How long "typing…" shows after the last signal, and how often we send ours.
const typingShown = 5000;
const typingEvery = 3000;

/** everything reads every page of a list (docs/api.md, Paging). */
async function everything<T>(path: string, field: "conversations" | "messages"): Promise<T[]> {
  const all: T[] = [];
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ limit: "200" });
    if (cursor) q.set("cursor", cursor);
    const page: Record<string, unknown> = await client.json("GET", `${path}?${q}`);
    all.push(...(page[field] as T[]));
    cursor = page.next_cursor as string | null;
  } while (cursor);
  return all;
}

const when = (at: string) => new Date(at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

function App() {
  const [visible, setVisible] = useState(true);
  const [phase, setPhase] = useState<Phase>("loading");
  const [notice, setNotice] = useState<Notice | null>(null);
  const [consent, setConsent] = useState<Consent>({ analytics: false, network_data: false, ai: false });
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [conv, setConv] = useState<string | null>(null);
  const [closed, setClosed] = useState(false);
  const [messages, setMessages] = useState<Message[]>([]);
  const [typingUntil, setTypingUntil] = useState(0);
  const [draft, setDraft] = useState("");
  const [error, setError] = useState("");
  const [erasure, setErasure] = useState<Erasure | null>(null);
  const [confirmErase, setConfirmErase] = useState(false);
  const stream = useRef<ReturnType<Client["stream"]> | null>(null);
  const convRef = useRef<string | null>(null);
  const visibleRef = useRef(true);
  const unread = useRef(0);
  const lastTyping = useRef(0);
  const lastHeight = useRef(-1);
  const panel = useRef<HTMLDivElement>(null);
  const log = useRef<HTMLDivElement>(null);
  convRef.current = conv;
  visibleRef.current = visible;

  const add = (m: Message) => setMessages((ms) => (ms.some((x) => x.id === m.id) ? ms : [...ms, m]));

  const onEvent = (e: StreamEvent) => {
    if (e.type === "message" && e.message && e.message.author?.role !== "visitor" && !visibleRef.current) {
      unread.current++;
      tell({ parley: "unread", count: unread.current });
    }
    if (e.type === "closed" && e.conversation_id) {
      const id = e.conversation_id;
      setConversations((cs) => cs.map((c) => (c.id === id ? { ...c, status: "closed" } : c)));
      if (id === convRef.current) setClosed(true);
      return;
    }
    if (!convRef.current) {
      // The opening's events may arrive before its answer.
      if (e.type !== "message" || !e.message) return;
    } else if (e.conversation_id !== convRef.current) return;
    if (e.type === "message" && e.message) {
      add(e.message);
      if (e.message.author?.role !== "visitor") setTypingUntil(0);
    }
    if (e.type === "typing" && e.author?.role !== "visitor") setTypingUntil(Date.now() + typingShown);
  };

  const connect = () => {
    stream.current = client.stream(onEvent, () => {
      client.forget();
      setPhase("erased");
    });
  };

  const fail = (e: unknown) => setError(e instanceof CallError ? e.message : "Parley cannot be reached: try again.");

  // The tenant's notice, read when the visitor opens the chat (this frame
  // is made then); a gateway without it, or a tenant who set none, gets
  // the widget's own wording.
  const loadNotice = async () => {
    setPhase("loading");
    try {
      const n = await client.anonymous<Notice>(`/v1/tenants/${encodeURIComponent(opts.tenant)}/notice`);
      setNotice({ text: n.text ?? "", version: n.version || opts.noticeVersion });
    } catch (e) {
      if (!(e instanceof CallError && e.status === 404)) fail(e);
      setNotice({ text: "", version: opts.noticeVersion });
    }
    setPhase("consent");
  };

  const showList = async () => {
    const list = await everything<Conversation>("/v1/conversations", "conversations");
    // The open one first (there to continue), then the newest.
    const rank = (c: Conversation) => (c.status === "open" ? 0 : 1);
    setConversations(list.sort((a, b) => rank(a) - rank(b) || b.created_at.localeCompare(a.created_at)));
    setConv(null);
    setMessages([]);
    setPhase("list");
  };

  // A visitor who chatted before: their session and their conversations.
  const comeBack = async (refresh: string) => {
    setPhase("starting");
    try {
      await client.resume(refresh);
    } catch {
      client.forget();
      return loadNotice();
    }
    connect();
    try {
      await showList();
    } catch (e) {
      fail(e);
    }
  };

  useEffect(() => {
    const refresh = client.stored();
    void (refresh ? comeBack(refresh) : loadNotice());
    const onMessage = (ev: MessageEvent) => {
      if (ev.source !== window.parent || ev.origin !== opts.host) return;
      const m = ev.data as ToFrame;
      if (m?.parley === "open") {
        setVisible(true);
        unread.current = 0;
        tell({ parley: "unread", count: 0 });
        focusFirst();
      } else if (m?.parley === "close") setVisible(false);
    };
    addEventListener("message", onMessage);
    const onKey = (ev: KeyboardEvent) => {
      if (ev.key === "Escape") tell({ parley: "close" });
    };
    addEventListener("keydown", onKey);
    return () => {
      removeEventListener("message", onMessage);
      removeEventListener("keydown", onKey);
    };
  }, []);

  const focusFirst = () => {
    const p = panel.current;
    (p?.querySelector<HTMLElement>("input, textarea, button.primary, .history button") ?? p?.querySelector<HTMLElement>("button"))?.focus();
  };
  useEffect(focusFirst, [phase, conv, closed]);

  // The launcher sizes the frame to the panel's natural height: what the
  // panel scrolls, and what its log scrolls.
  useLayoutEffect(() => {
    const measure = () => {
      const p = panel.current;
      if (!p) return;
      const l = log.current;
      const height = p.scrollHeight + (l ? l.scrollHeight - l.clientHeight : 0) + 2;
      if (height === lastHeight.current) return;
      lastHeight.current = height;
      tell({ parley: "resize", height });
    };
    measure();
    addEventListener("resize", measure);
    return () => removeEventListener("resize", measure);
  });

  useEffect(() => {
    log.current?.lastElementChild?.scrollIntoView({ block: "end" });
  }, [messages]);

  useEffect(() => {
    if (typingUntil === 0) return;
    const t = setTimeout(() => setTypingUntil(0), Math.max(0, typingUntil - Date.now()));
    return () => clearTimeout(t);
  }, [typingUntil]);

  const start = async (ev: Event) => {
    ev.preventDefault();
    setError("");
    setPhase("starting");
    try {
      await client.register(opts.tenant, consent, notice?.version ?? opts.noticeVersion);
      connect();
      setPhase("chat");
    } catch (e) {
      fail(e);
      setPhase("consent");
    }
  };

  const openConversation = async (c: Conversation) => {
    setError("");
    try {
      setMessages(await everything<Message>(`/v1/conversations/${c.id}/messages`, "messages"));
      setConv(c.id);
      setClosed(c.status !== "open");
      setPhase("chat");
    } catch (e) {
      fail(e);
    }
  };

  const newConversation = () => {
    setError("");
    setConv(null);
    setClosed(false);
    setMessages([]);
    setPhase("chat");
  };

  const sendMessage = async (ev?: Event) => {
    ev?.preventDefault();
    const text = draft.trim();
    if (!text) return;
    setError("");
    const key = { "Idempotency-Key": newKey() };
    try {
      if (conv) {
        const m = await client.json<{ id: string; seq: number; at: string }>("POST", `/v1/conversations/${conv}/messages`, { text }, key);
        add({ ...m, text, author: { role: "visitor", id: client.visitorID } });
      } else {
        const c = await client.json<{ id: string }>("POST", "/v1/conversations", { text }, key);
        setConv(c.id);
        // Its first message comes on the stream too, unless the stream is
        // reconnecting: read it, under the id the stream gives it.
        (await everything<Message>(`/v1/conversations/${c.id}/messages`, "messages")).forEach(add);
      }
      setDraft("");
    } catch (e) {
      fail(e);
    }
  };

  const onInput = (ev: Event) => {
    setDraft((ev.target as HTMLTextAreaElement).value);
    const now = Date.now();
    if (conv && now - lastTyping.current > typingEvery) {
      lastTyping.current = now;
      stream.current?.send({ type: "typing", conversation_id: conv });
    }
  };

  const download = async () => {
    try {
      const r = await client.call("GET", "/v1/me/export");
      const a = document.createElement("a");
      a.href = URL.createObjectURL(await r.blob());
      a.download = "parley-export.json";
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) {
      fail(e);
    }
  };

  const erase = async () => {
    try {
      let e = await client.json<Erasure>("DELETE", "/v1/me");
      stream.current?.stop();
      client.forget();
      setPhase("erased");
      setErasure(e);
      for (let i = 0; i < 30 && e.status !== "completed"; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        e = await client.json<Erasure>("GET", `/v1/erasures/${e.erasure_id}`);
        setErasure(e);
      }
    } catch (e) {
      fail(e);
    }
  };

  const anotherOpen = conversations.some((c) => c.status === "open" && c.id !== conv);

  return (
    <main class="panel" ref={panel} aria-label={opts.title}>
      <header>
        <div>
          <h1>{opts.title}</h1>
          {phase === "chat" && <p class="person">You are talking to a person</p>}
        </div>
        <button type="button" class="link" onClick={() => tell({ parley: "close" })}>
          Close
        </button>
      </header>
      {phase === "loading" && <p class="state">Loading…</p>}
      {(phase === "consent" || phase === "starting") && notice && (
        <form class="consent" onSubmit={start}>
          <p class="notice">{notice.text || defaultNotice}</p>
          {opts.privacyUrl && (
            <p>
              <a href={opts.privacyUrl} target="_blank" rel="noopener noreferrer">
                Privacy notice
              </a>
            </p>
          )}
          <fieldset>
            <legend>May we also use (each is off unless you turn it on):</legend>
            {purposes.map((p) => (
              <label key={p.key}>
                <input
                  type="checkbox"
                  name={p.key}
                  checked={consent[p.key]}
                  onChange={(ev) => setConsent({ ...consent, [p.key]: (ev.target as HTMLInputElement).checked })}
                />
                <span>
                  <strong>{p.label}</strong>: {p.hint}
                </span>
              </label>
            ))}
          </fieldset>
          <button type="submit" class="primary" disabled={phase === "starting"}>
            Start chat
          </button>
        </form>
      )}
      {phase === "list" && (
        <>
          <h2 class="state">Your conversations</h2>
          <ul class="history">
            {conversations.map((c) => (
              <li key={c.id}>
                <button type="button" onClick={() => openConversation(c)}>
                  {c.status === "open" ? "Continue" : "Read"} the conversation of {when(c.created_at)} ({c.status})
                </button>
              </li>
            ))}
          </ul>
          {!conversations.some((c) => c.status === "open") && (
            <button type="button" class="primary" onClick={newConversation}>
              New conversation
            </button>
          )}
        </>
      )}
      {phase === "chat" && (
        <>
          <div class="log" role="log" aria-live="polite" aria-label="Messages" tabIndex={0} ref={log}>
            {messages.map((m) => (
              <div key={m.id} class={m.author?.role === "visitor" ? "mine" : "theirs"}>
                <span class="who">{m.author?.role === "visitor" ? "You" : "Support"}</span>
                <span class="text">{m.erased ? "(erased)" : m.withdrawn ? "(withdrawn)" : m.text}</span>
              </div>
            ))}
          </div>
          {closed ? (
            <p class="state" role="status">
              This conversation is closed.{" "}
              {!anotherOpen && (
                <button type="button" class="primary" onClick={newConversation}>
                  New conversation
                </button>
              )}
            </p>
          ) : (
            <>
              <p class="typing" aria-live="polite">
                {typingUntil > Date.now() ? "Support is typing…" : ""}
              </p>
              <form class="compose" onSubmit={sendMessage}>
                <label for="parley-message">Message</label>
                <textarea
                  id="parley-message"
                  rows={2}
                  value={draft}
                  onInput={onInput}
                  onKeyDown={(ev) => {
                    if (ev.key === "Enter" && !ev.shiftKey) void sendMessage(ev);
                  }}
                />
                <button type="submit" class="primary">
                  Send
                </button>
              </form>
            </>
          )}
          <div class="mydata">
            <button type="button" onClick={() => showList().catch(fail)}>
              Your conversations
            </button>
            <button type="button" onClick={download}>
              Download my data
            </button>
            {confirmErase ? (
              <button type="button" class="danger" onClick={erase}>
                Erase everything now
              </button>
            ) : (
              <button type="button" onClick={() => setConfirmErase(true)}>
                Erase me
              </button>
            )}
          </div>
        </>
      )}
      {phase === "erased" && (
        <p class="erased" role="status">
          {erasure?.status === "completed"
            ? `Erased: your messages can no longer be read by anyone. Erasure ${erasure.erasure_id} completed${
                erasure.completed_at ? ` at ${new Date(erasure.completed_at).toLocaleString()}` : ""
              }.`
            : "Erasing your data…"}
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </main>
  );
}

render(<App />, document.getElementById("app")!);
