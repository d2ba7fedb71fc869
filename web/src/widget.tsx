// Parley's chat frame: the widget's panel, served by the gateway at
// /widget-frame and framed by the launcher (loader.ts) on the host page.
// On the gateway's origin, the conversation, the session and the refresh
// token it keeps are out of the host page's scripts' reach: they can neither
// read this document nor wrap the fetch and WebSocket it uses. The frame is
// made when the visitor opens the chat; nothing is stored before they start
// one. See docs/widget.md.
import { render } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { isBot } from "./bots";
import { Client, explain, newKey, spreadOut, typingEveryMs, typingShownMs, type Consent, type Message, type StreamEvent, type StreamState } from "./client";
import { save } from "./download";
import { ErasureReport, follow, type Erasure } from "./erasure";
import { entryOf, handoffEntry, merge, type Entry } from "./transcript";
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
  { key: "ai", label: "AI", hint: "let an assistant (a bot), the site's tools and the training of its models use my messages, with e-mail addresses, phone numbers, card and bank numbers and IP addresses removed" },
];

const defaultNotice =
  "Nothing is stored about you until you start a chat. Then your messages are kept encrypted for as long as " +
  "this site keeps chats, and you can download or erase them here at any time.";

type Phase = "loading" | "consent" | "starting" | "list" | "chat" | "erased";
type Conversation = { id: string; status: string; created_at: string; last_message_at: string; assignee?: string | null };
type Notice = { version: string; text: string };

const client = new Client(location.origin, `parley.${opts.tenant}.refresh`);

const when = (at: string) => new Date(at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

function App() {
  const [visible, setVisible] = useState(true);
  const [phase, setPhase] = useState<Phase>("loading");
  const [notice, setNotice] = useState<Notice | null>(null);
  const [noticeError, setNoticeError] = useState("");
  const [live, setLive] = useState<StreamState>({ state: "live" });
  const [consent, setConsent] = useState<Consent>({ analytics: false, network_data: false, ai: false });
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [conv, setConv] = useState<string | null>(null);
  const [closed, setClosed] = useState(false);
  const [messages, setMessages] = useState<Entry[]>([]);
  const [typingUntil, setTypingUntil] = useState(0);
  const [draft, setDraft] = useState("");
  const [error, setError] = useState("");
  const [erasure, setErasure] = useState<Erasure | null>(null);
  const [erasureFollowed, setErasureFollowed] = useState(false);
  const [confirmErase, setConfirmErase] = useState(false);
  // Who answers the conversation on screen: an agent's id, a bot's
  // "bot:<id>", or null while unassigned.
  const [assignee, setAssignee] = useState<string | null>(null);
  // The consent in force, as recorded (registration, GET or PUT
  // /v1/me/consent); null until read for a visitor who came back.
  const [inForce, setInForce] = useState<Consent | null>(null);
  // The visitor stopped the assistant (withdrew ai) in this frame: the
  // banner says so rather than asking for consent again.
  const [stopped, setStopped] = useState(false);
  const stream = useRef<ReturnType<Client["stream"]> | null>(null);
  // The conversation on screen, set with conv at once (onScreen): an event
  // heard before the next render is of the conversation just entered.
  const convRef = useRef<string | null>(null);
  // screen counts the changes of screen begun: to the list, into a
  // conversation (opened, new, or a first message's, entered). An async
  // step notes it as it begins and applies its answer only if it is the
  // same then: the visitor may have moved on while it was under way.
  const screen = useRef(0);
  // The newest read of the list begun: an older one answers nothing, as it
  // may not hold what the newer one was read for.
  const listReads = useRef(0);
  // A message is sent once at a time (a second Enter while it is under way
  // does nothing). Until it is known stored, its key is kept with what it
  // sends where: a retry of it after an error reuses the key, so the
  // server stores it once (docs/api.md, Idempotency).
  const sending = useRef(false);
  const unsent = useRef<{ path: string; text: string; key: string } | null>(null);
  // The events each read under way has heard so far (whileHearing).
  const hearing = useRef(new Set<StreamEvent[]>());
  const visibleRef = useRef(true);
  const unread = useRef(0);
  // What the log shows, as set: a reload compares with it before the
  // render, so that what it adds is counted unread once.
  const shown = useRef<Entry[]>([]);
  const lastTyping = useRef(0);
  const lastHeight = useRef(-1);
  const panel = useRef<HTMLDivElement>(null);
  const log = useRef<HTMLDivElement>(null);

  // onScreen changes the screen; "typing…" heard was of the one left.
  const onScreen = (id: string | null) => {
    screen.current++;
    convRef.current = id;
    setConv(id);
    setTypingUntil(0);
  };

  // The ref changes as the launcher's message arrives, not at the next
  // render: an event handled before that render must already count as
  // unread, or a message the visitor has not seen goes uncounted.
  const showing = (v: boolean) => {
    visibleRef.current = v;
    setVisible(v);
  };

  const show = (ms: Entry[]) => {
    shown.current = ms;
    setMessages(ms);
  };
  const add = (ms: Entry[]) => show(merge(shown.current, ms));

  // countUnread counts, while the frame is closed, the messages of others it
  // has not shown yet, whether heard live or read again after a resync. The
  // ids shown, as a set: a reload compares the whole transcript with them.
  const countUnread = (ms: Entry[]) => {
    if (visibleRef.current) return;
    const seen = new Set(shown.current.map((x) => x.id));
    const n = ms.filter((m) => m.author?.role !== "visitor" && !m.handoff && !seen.has(m.id)).length;
    if (n === 0) return;
    unread.current += n;
    tell({ parley: "unread", count: unread.current });
  };

  const transcript = async (id: string) => (await client.all<Message>(`/v1/conversations/${id}/messages`, "messages")).map(entryOf);

  const conversation = (id: string) => client.json<Conversation>("GET", `/v1/conversations/${id}`);

  // read reads a conversation and its whole transcript together: whether
  // it waits for a person follows from both (waiting, below). By its id,
  // also beside a read of the list: the list takes closed conversations
  // from a view that may not show a close yet.
  const read = (id: string) => Promise.all([conversation(id), transcript(id)]);

  // readState sets what a conversation read over HTTP says of it, in place
  // of what live events said: whether it is closed, and who answers it.
  const readState = (c: Conversation) => {
    setClosed(c.status !== "open");
    setAssignee(c.assignee ?? null);
  };

  // whileHearing runs f, a read, and answers what it answered with the
  // events (those with a seq; typing has none) heard while it ran: the
  // server may have answered the read before it stored an event that the
  // stream delivers before the answer arrives, and what the read says would
  // then hide that event until the next resync. So what a read answered is
  // shown with the events it heard applied on top (replay). It begins once
  // the stream is open: a first connection hears only what is stored after
  // its handshake, so a read answered before then could miss an event that
  // the stream never sends (client.stream, opened).
  const whileHearing = async <T,>(f: () => Promise<T>): Promise<[T, StreamEvent[]]> => {
    await stream.current?.opened;
    const heard: StreamEvent[] = [];
    hearing.current.add(heard);
    try {
      return [await f(), heard];
    } finally {
      hearing.current.delete(heard);
    }
  };

  // replay applies the events of conversation id, now on screen, heard
  // during a read of it, on top of what the read answered: each message
  // shows once (merge), a close stays, and who answers is the last event's.
  // An event the read had already seen may put back an older assignee, but
  // only for a moment: the events after it, which the read saw too, come
  // next, as the stream keeps their order.
  const replay = (id: string, heard: StreamEvent[]) => heard.filter((e) => e.conversation_id === id).forEach(apply);

  // enter puts conversation id on screen, with the events of it heard while
  // it was being opened on top of what shows.
  const enter = (id: string, heard: StreamEvent[]) => {
    onScreen(id);
    replay(id, heard);
  };

  // The stream lost events, or cannot replay what it missed (docs/api.md,
  // Resuming): what the widget shows is read again, the visitor's list of
  // conversations (a lost close) and the conversation on screen, without
  // leaving either. The gateway tells every session of a tenant at once
  // when it dropped that tenant's events, under load: each waits a random
  // moment first, so that their reads do not all come at once, and the
  // resyncs it hears while it waits share its reads. Made once: the reads
  // it calls keep what they share in refs.
  const [resync] = useState(() =>
    spreadOut(async () => {
      try {
        await Promise.all([readList(), reread()]);
      } catch (e) {
        fail(e);
      }
    }),
  );

  // reread reads the conversation on screen again: what the log shows
  // stays, and live events that follow and repeat the reload show once.
  const reread = async () => {
    const id = convRef.current;
    if (!id) return;
    const at = screen.current;
    const [[c, ms], heard] = await whileHearing(() => read(id));
    if (at !== screen.current) return;
    countUnread(ms);
    show(merge(ms, shown.current));
    readState(c);
    // Shown live as they came, they are applied again: the read, which may
    // be older, set closed and the assignee back.
    replay(id, heard);
  };

  const onEvent = (e: StreamEvent) => {
    // A resync is heard too: an opening, which has no conversation on
    // screen for the resync's read to read, reads again after it.
    if (e.seq || e.type === "resync") for (const heard of hearing.current) heard.push(e);
    if (e.type === "resync") return void resync();
    if (e.type === "message" && e.message) countUnread([e.message]);
    if (e.type === "closed" && e.conversation_id) listClosed(e.conversation_id);
    if (e.conversation_id && e.conversation_id === convRef.current) apply(e);
  };

  const listClosed = (id: string) => setConversations((cs) => cs.map((c) => (c.id === id ? { ...c, status: "closed" } : c)));

  // apply shows an event of the conversation on screen, live or replayed.
  const apply = (e: StreamEvent) => {
    if (e.type === "closed") setClosed(true);
    if (e.type === "message" && e.message) {
      add([{ ...e.message, seq: e.seq }]);
      if (e.message.author?.role !== "visitor") setTypingUntil(0);
    }
    if (e.type === "typing" && e.author?.role !== "visitor") setTypingUntil(Date.now() + typingShownMs);
    // A hand-off always unassigns (docs/api.md): nothing to ask.
    if (e.type === "handed_off") {
      add([handoffEntry(e)]);
      setAssignee(null);
    }
    // The gateway names the assignee on every assigned frame (an
    // assignment always names someone).
    if (e.type === "assigned" && e.assignee) setAssignee(e.assignee);
  };

  const connect = () => {
    stream.current = client.stream(
      onEvent,
      () => {
        client.forget();
        setPhase("erased");
      },
      setLive,
    );
  };

  const fail = (e: unknown) => setError(explain(e));

  // The tenant's notice, read when the visitor opens the chat (this frame
  // is made then). A tenant who wrote none gets the widget's own wording,
  // under the version the host page names (data-notice-version). Without
  // an answer there is no notice to consent under: the chat cannot start.
  const loadNotice = async () => {
    setPhase("loading");
    setNoticeError("");
    try {
      const n = await client.anonymous<Notice>(`/v1/tenants/${encodeURIComponent(opts.tenant)}/notice`);
      setNotice(n.text ? n : { text: "", version: opts.noticeVersion });
    } catch (e) {
      setNotice(null);
      setNoticeError(`The privacy notice could not be read, so the chat cannot start yet. ${explain(e)}`);
    }
    setPhase("consent");
  };

  const readList = async () => {
    const n = ++listReads.current;
    const [list, heard] = await whileHearing(() => client.all<Conversation>("/v1/conversations", "conversations"));
    if (n !== listReads.current) return;
    // The open one first (there to continue), then the newest.
    const rank = (c: Conversation) => (c.status === "open" ? 0 : 1);
    setConversations(list.sort((a, b) => rank(a) - rank(b) || b.created_at.localeCompare(a.created_at)));
    for (const e of heard) if (e.type === "closed" && e.conversation_id) listClosed(e.conversation_id);
  };

  const showList = async () => {
    const at = ++screen.current;
    await readList();
    if (at !== screen.current) return;
    onScreen(null);
    show([]);
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
      await Promise.all([showList(), readConsent()]);
    } catch (e) {
      fail(e);
    }
  };

  const readConsent = async () => {
    const c = await client.json<Consent>("GET", "/v1/me/consent");
    setInForce({ analytics: c.analytics, network_data: c.network_data, ai: c.ai });
  };

  useEffect(() => {
    const refresh = client.stored();
    void (refresh ? comeBack(refresh) : loadNotice());
    const onMessage = (ev: MessageEvent) => {
      if (ev.source !== window.parent || ev.origin !== opts.host) return;
      const m = ev.data as ToFrame;
      if (m?.parley === "open") {
        showing(true);
        unread.current = 0;
        tell({ parley: "unread", count: 0 });
        focusFirst();
      } else if (m?.parley === "close") showing(false);
    };
    addEventListener("message", onMessage);
    const onKey = (ev: KeyboardEvent) => {
      if (ev.key !== "Escape") return;
      // Closed from here, the frame counts what comes next as unread at
      // once, before the launcher has answered.
      showing(false);
      tell({ parley: "close" });
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
  // A new screen takes the focus: another phase, or a conversation closed
  // (its message box gone) or a new one begun. Not the id a first message
  // gives the conversation on screen: the visitor may have moved on while
  // it was being sent, and the focus stays where they put it.
  useEffect(focusFirst, [phase, closed]);

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
    if (!notice) return;
    setError("");
    setPhase("starting");
    try {
      await client.register(opts.tenant, consent, notice.version);
      setInForce(consent);
      connect();
      setPhase("chat");
    } catch (e) {
      fail(e);
      setPhase("consent");
    }
  };

  // The conversation is read anew, not taken from the list: the list does
  // not follow assignments and hand-offs. Of two clicked, the last opens.
  const openConversation = async (id: string) => {
    setError("");
    const at = ++screen.current;
    try {
      const [[c, ms], heard] = await whileHearing(() => read(id));
      if (at !== screen.current) return;
      show(ms);
      readState(c);
      enter(id, heard);
      setPhase("chat");
      // What a resync heard meanwhile said was lost is read now.
      if (heard.some((e) => e.type === "resync")) await reread();
    } catch (e) {
      fail(e);
    }
  };

  const newConversation = () => {
    setError("");
    onScreen(null);
    setClosed(false);
    show([]);
    setAssignee(null);
    setPhase("chat");
  };

  // post sends text, typed as typed, to path (one message at a time), with
  // the key of an earlier try of the same that failed. Once it is stored,
  // the draft empties, unless the visitor has written something else.
  const post = async <T,>(path: string, text: string, typed: string): Promise<T> => {
    if (unsent.current?.path !== path || unsent.current.text !== text) unsent.current = { path, text, key: newKey() };
    const answer = await client.json<T>("POST", path, { text }, { "Idempotency-Key": unsent.current.key });
    unsent.current = null;
    setDraft((d) => (d === typed ? "" : d));
    return answer;
  };

  // The message goes where the visitor wrote it; its answer shows only on
  // that screen still (screen).
  const sendMessage = async (ev?: Event) => {
    ev?.preventDefault();
    const text = draft.trim();
    if (!text || sending.current) return;
    // From the first await on: a first message waits for the stream to
    // open before it is posted.
    sending.current = true;
    setError("");
    const at = screen.current;
    try {
      if (conv) {
        const m = await post<{ id: string; seq: number; at: string }>(`/v1/conversations/${conv}/messages`, text, draft);
        if (at === screen.current) add([{ ...m, text, author: { role: "visitor", id: client.visitorID } }]);
      } else {
        // Its id comes with the answer, which its first events may precede:
        // those heard meanwhile are applied once it is on screen. Then it is
        // read, as the stream may be reconnecting: its first message, and
        // who answers it. A visitor who moved on meanwhile stays where they
        // are; the list, which may have been read before it was stored,
        // is read again.
        const [{ id }, heard] = await whileHearing(() => post<{ id: string }>("/v1/conversations", text, draft));
        if (at !== screen.current) return await readList();
        enter(id, heard);
        await reread();
      }
    } catch (e) {
      fail(e);
    } finally {
      sending.current = false;
    }
  };

  // The assistant may read the visitor's messages (redacted) only with
  // their ai consent, which they give and withdraw here alike, with one
  // button: the other purposes go back as they are, under the notice in
  // force.
  const setAssistant = async (ai: boolean) => {
    setError("");
    try {
      const now = inForce ?? (await client.json<Consent>("GET", "/v1/me/consent"));
      const c = await client.json<Consent>("PUT", "/v1/me/consent", { analytics: now.analytics, network_data: now.network_data, ai });
      setInForce({ analytics: c.analytics, network_data: c.network_data, ai: c.ai });
      setStopped(!c.ai);
      focusMessage();
    } catch (e) {
      fail(e);
    }
  };

  // A visitor who stopped the assistant is asked for consent again only
  // when they want it back.
  const askAgain = () => {
    setStopped(false);
    setTimeout(() => panel.current?.querySelector<HTMLElement>("#parley-allow")?.focus());
  };

  // The button pressed goes with its prompt: the keyboard's focus goes on
  // to the message box rather than back to the page's start.
  const focusMessage = () => setTimeout(() => panel.current?.querySelector<HTMLElement>("#parley-message")?.focus());

  const askForPerson = async () => {
    if (!conv) return;
    setError("");
    try {
      await client.call("POST", `/v1/conversations/${conv}/handoff`, {});
      // Whether a person will answer follows from the hand-off's line, which
      // the answer (the conversation) lacks: the conversation is read again,
      // with its line, or an earlier hand-off's when this one stored nothing
      // (the bot had handed it off, and the stream lost that).
      await reread();
      focusMessage();
    } catch (e) {
      fail(e);
    }
  };

  const onInput = (ev: Event) => {
    setDraft((ev.target as HTMLTextAreaElement).value);
    const now = Date.now();
    if (conv && now - lastTyping.current > typingEveryMs) {
      lastTyping.current = now;
      stream.current?.send({ type: "typing", conversation_id: conv });
    }
  };

  const download = async () => {
    try {
      const r = await client.call("GET", "/v1/me/export");
      save(await r.blob(), "parley-export.json");
    } catch (e) {
      fail(e);
    }
  };

  // Erased, the visitor's token still reads their erasure (and nothing
  // else): the session is forgotten once it is followed to its end.
  const erase = async () => {
    // The stream first: the erasure closes it (1008), which would end the
    // session before its erasure is followed.
    stream.current?.stop();
    let e: Erasure;
    try {
      e = await client.json<Erasure>("DELETE", "/v1/me");
    } catch (err) {
      // Stopped above: it resumes after the last event it had.
      stream.current?.reconnect();
      return fail(err);
    }
    setPhase("erased");
    setErasure(e);
    try {
      await follow(client, e.erasure_id, setErasure);
    } catch (err) {
      fail(err);
    } finally {
      client.forget();
      setErasureFollowed(true);
    }
  };

  const anotherOpen = conversations.some((c) => c.status === "open" && c.id !== conv);
  const bot = phase === "chat" && !closed && isBot(assignee);
  // The conversation waits for a person: only a hand-off unassigns one
  // (docs/api.md), and leaves a line in what the log holds, heard live or
  // read, so a line there with nobody assigned now is a hand-off no one
  // took yet. Derived here, not kept, it follows what the log and the
  // assignee say after a reload, an opening or a live event alike.
  const waiting = !assignee && messages.some((m) => m.handoff);

  return (
    <main class="panel" ref={panel} aria-label={opts.title}>
      <header>
        <div>
          <h1>{opts.title}</h1>
          {phase === "chat" && (bot ? <p class="bot-says">You are talking to a bot</p> : <p class="person">You are talking to a person</p>)}
        </div>
        <button type="button" class="link" onClick={() => tell({ parley: "close" })}>
          Close
        </button>
      </header>
      {phase === "loading" && <p class="state">Loading…</p>}
      {phase === "consent" && noticeError && (
        <div class="consent">
          <p class="error" role="alert">
            {noticeError}
          </p>
          <button type="button" class="primary" onClick={() => void loadNotice()}>
            Try again
          </button>
        </div>
      )}
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
                <button type="button" onClick={() => openConversation(c.id)}>
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
          {bot && (
            <section class="assistant" aria-labelledby="parley-bot">
              <p id="parley-bot" role="status">
                <strong>An automated assistant answers here</strong>, not a person. You can ask for a person at any time.
              </p>
              {inForce?.ai && (
                <p id="parley-bot-reads">
                  With your consent, it reads your messages in this chat, with e-mail addresses, phone numbers, card numbers, IBANs and IP
                  addresses removed, until you stop it.
                </p>
              )}
              {inForce && !inForce.ai && stopped && (
                <p id="parley-bot-stopped" role="status">
                  You stopped the assistant: it no longer receives your messages. A person can answer you instead.
                </p>
              )}
              {inForce && !inForce.ai && !stopped && (
                <p id="parley-bot-consent">
                  Before the assistant can answer, it needs your consent to read your messages in this chat. It receives them with
                  e-mail addresses, phone numbers, card numbers, IBANs and IP addresses removed; support staff still see them whole.
                </p>
              )}
              <div class="choices">
                {inForce && !inForce.ai && !stopped && (
                  <button type="button" id="parley-allow" class="primary" aria-describedby="parley-bot-consent" onClick={() => setAssistant(true)}>
                    Allow the assistant
                  </button>
                )}
                <button type="button" class={stopped ? "primary" : undefined} onClick={askForPerson}>
                  Ask for a person
                </button>
                {inForce?.ai && (
                  <button type="button" aria-describedby="parley-bot-reads" onClick={() => setAssistant(false)}>
                    Stop the assistant
                  </button>
                )}
                {inForce && !inForce.ai && stopped && (
                  <button type="button" class="link" onClick={askAgain}>
                    Use the assistant again
                  </button>
                )}
              </div>
            </section>
          )}
          {waiting && !closed && (
            <p class="state handoff" role="status">
              A person will answer you.
            </p>
          )}
          <div class="log" role="log" aria-live="polite" aria-label="Messages" tabIndex={0} ref={log}>
            {/* A hand-off shows as the banner's "A person will answer you", not as a line. */}
            {messages.filter((m) => !m.handoff).map((m) => (
              <div key={m.id} class={m.author?.role === "visitor" ? "mine" : m.author?.role === "bot" ? "theirs by-bot" : "theirs"}>
                <span class="who">{m.author?.role === "visitor" ? "You" : m.author?.role === "bot" ? "Bot" : "Support"}</span>
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
              {live.state !== "live" && (
                <p class="state" role="status">
                  {live.state === "reconnecting" ? "Connection lost: reconnecting…" : live.why}{" "}
                  {live.state === "stopped" && (
                    <button type="button" class="link" onClick={() => stream.current?.reconnect()}>
                      Reconnect
                    </button>
                  )}
                </p>
              )}
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
                    // Enter while an input method composes picks its text.
                    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) void sendMessage(ev);
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
        <div class="erased">
          {erasure?.status === "completed" && <p role="status">Erased: your messages can no longer be read by anyone.</p>}
          {erasure ? <ErasureReport e={erasure} title="Your erasure" done={erasureFollowed} /> : <p role="status">Erased: your messages can no longer be read by anyone.</p>}
        </div>
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
