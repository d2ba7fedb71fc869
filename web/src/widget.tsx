// Parley's widget: a launcher button and a chat panel, rendered into a
// closed shadow root so that the host page's CSS does not reach it and its
// scripts find no handle on it. Nothing is stored and nothing is sent before
// the visitor starts a chat: the privacy notice and the choices are the
// widget's own. See docs/widget.md.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { CallError, Client, newKey, type Consent, type Message, type StreamEvent } from "./client";
import css from "./widget.css";

const tag = document.currentScript as HTMLScriptElement;
const opts = {
  tenant: tag.dataset.tenant ?? "",
  noticeVersion: tag.dataset.noticeVersion ?? "1",
  privacyUrl: tag.dataset.privacyUrl,
  title: tag.dataset.title ?? "Chat with us",
  gateway: new URL(tag.src).origin,
};

const purposes: { key: keyof Consent; label: string; hint: string }[] = [
  { key: "analytics", label: "Analytics", hint: "count this chat in statistics that name no one" },
  { key: "network_data", label: "Network data", hint: "record my network (never my exact address) and browser family" },
  { key: "ai", label: "AI", hint: "let AI features read my messages" },
];

type Phase = "consent" | "starting" | "chat" | "erased";
type Erasure = { erasure_id: string; status: string; completed_at?: string | null };

const client = new Client(opts.gateway, `parley.${opts.tenant}.refresh`);
// How long "typing…" shows after the last signal, and how often we send ours.
const typingShown = 5000;
const typingEvery = 3000;

function App() {
  const [open, setOpen] = useState(false);
  const [phase, setPhase] = useState<Phase>("consent");
  const [consent, setConsent] = useState<Consent>({ analytics: false, network_data: false, ai: false });
  const [conv, setConv] = useState<string | null>(null);
  const [messages, setMessages] = useState<Message[]>([]);
  const [typingUntil, setTypingUntil] = useState(0);
  const [draft, setDraft] = useState("");
  const [error, setError] = useState("");
  const [erasure, setErasure] = useState<Erasure | null>(null);
  const [confirmErase, setConfirmErase] = useState(false);
  const stream = useRef<ReturnType<Client["stream"]> | null>(null);
  const convRef = useRef<string | null>(null);
  const lastTyping = useRef(0);
  const launcher = useRef<HTMLButtonElement>(null);
  const panel = useRef<HTMLDivElement>(null);
  const log = useRef<HTMLDivElement>(null);
  convRef.current = conv;

  const add = (m: Message) =>
    setMessages((ms) => (ms.some((x) => x.id === m.id) ? ms : [...ms, m]));

  const onEvent = (e: StreamEvent) => {
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

  // A visitor who chatted before: their session and latest conversation.
  const comeBack = async (refresh: string) => {
    setPhase("starting");
    try {
      await client.resume(refresh);
    } catch {
      client.forget();
      setPhase("consent");
      return;
    }
    try {
      const list = await client.json<{ conversations: { id: string; status: string }[] }>("GET", "/v1/conversations?limit=20");
      const latest = list.conversations[0];
      if (latest) {
        const page = await client.json<{ messages: Message[] }>("GET", `/v1/conversations/${latest.id}/messages?limit=200`);
        setMessages(page.messages);
        if (latest.status === "open") setConv(latest.id);
      }
      connect();
      setPhase("chat");
    } catch (e) {
      fail(e);
      setPhase("consent");
    }
  };

  const toggle = () => {
    const next = !open;
    setOpen(next);
    if (next && phase === "consent") {
      const refresh = client.stored();
      if (refresh) void comeBack(refresh);
    }
  };

  useEffect(() => {
    if (!open) return;
    const first = panel.current?.querySelector<HTMLElement>("input, textarea, button.primary");
    first?.focus();
  }, [open, phase]);

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
      await client.register(opts.tenant, consent, opts.noticeVersion);
      connect();
      setPhase("chat");
    } catch (e) {
      fail(e);
      setPhase("consent");
    }
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
        const page = await client.json<{ messages: Message[] }>("GET", `/v1/conversations/${c.id}/messages`);
        page.messages.forEach(add);
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

  const onKey = (ev: KeyboardEvent) => {
    if (ev.key === "Escape") {
      setOpen(false);
      launcher.current?.focus();
    }
  };

  return (
    <div class="root">
      {open && (
        <div class="panel" id="parley-panel" role="dialog" aria-label={opts.title} ref={panel} onKeyDown={onKey}>
          <header>
            <h2>{opts.title}</h2>
            {phase === "chat" && <p class="person">You are talking to a person</p>}
          </header>
          {(phase === "consent" || phase === "starting") && (
            <form class="consent" onSubmit={start}>
              <p>
                Nothing is stored about you until you start a chat. Then your messages are kept encrypted for as long as
                this site keeps chats, and you can download or erase them here at any time.
                {opts.privacyUrl && (
                  <>
                    {" "}
                    <a href={opts.privacyUrl} target="_blank" rel="noopener noreferrer">
                      Privacy notice
                    </a>
                  </>
                )}
              </p>
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
          {phase === "chat" && (
            <>
              <div class="log" role="log" aria-live="polite" aria-label="Messages" ref={log}>
                {messages.map((m) => (
                  <div key={m.id} class={m.author?.role === "visitor" ? "mine" : "theirs"}>
                    <span class="who">{m.author?.role === "visitor" ? "You" : "Support"}</span>
                    <span class="text">{m.erased ? "(erased)" : m.withdrawn ? "(withdrawn)" : m.text}</span>
                  </div>
                ))}
              </div>
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
              <div class="mydata">
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
        </div>
      )}
      <button
        type="button"
        class="launcher"
        ref={launcher}
        aria-expanded={open}
        aria-controls="parley-panel"
        onClick={toggle}
      >
        {open ? "Close chat" : opts.title}
      </button>
    </div>
  );
}

// An element of its own name: host rules for div and the like miss it.
const host = document.createElement("parley-widget");
const shadow = host.attachShadow({ mode: "closed" });
// A constructed style sheet is no inline style: host pages need no
// 'unsafe-inline' for it.
const sheet = new CSSStyleSheet();
sheet.replaceSync(css);
shadow.adoptedStyleSheets = [sheet];
document.body.append(host);
render(<App />, shadow);
