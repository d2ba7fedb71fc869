// One conversation: its transcript, the visitor's profile and rating, the
// reply box, and what staff do with it (assign, close). It follows the live
// stream through the inbox: new and withdrawn messages, typing, and the
// visitor's erasure. It is made anew for each conversation opened (keyed
// by its id).
import { useEffect, useRef, useState } from "preact/hooks";
import { CallError, newKey, spreadOut, typingEveryMs, typingShownMs, type Message, type StreamEvent } from "../client";
import { client } from "../staff/session";
import { botAssignee, isBot } from "../bots";
import type { Inbox, Summary } from "./inbox";
import { time, visitorName } from "./list";
import { availability, type Availability } from "./presence";
import { entryOf, handoffEntry, merge, type Entry } from "../transcript";

type Props = {
  inbox: Inbox;
  id: string;
  me: { id: string; role: string };
  sendTyping: (conversation: string) => void;
};

export function Conversation({ inbox, id, me, sendTyping }: Props) {
  const c = inbox.byID.get(id);
  const [messages, setMessages] = useState<Entry[]>(() => inbox.heard.get(id) ?? []);
  const [loaded, setLoaded] = useState(false);
  // The transcript is not the caller's to read (an agent's unassigned
  // conversation): the live messages show, and a note says why.
  const [unreadable, setUnreadable] = useState("");
  const [error, setError] = useState("");
  const [typing, setTyping] = useState<{ who: string; until: number } | null>(null);
  const [erasedLive, setErasedLive] = useState(false);
  const [reload, setReload] = useState(0);
  // A resync reads the messages again after a random wait, as the inbox
  // does (every console of the tenant is told at once); resyncs heard
  // while it waits share the read.
  const [resync] = useState(() => spreadOut(async () => setReload((n) => n + 1)));
  const unreadableRef = useRef("");
  unreadableRef.current = unreadable;
  const assignee = useAssignee(c?.assignee ?? null, me);

  useEffect(() => {
    inbox.opened(id);
    void inbox.refresh(id); // the profile and rating as they are now
    let live = true;
    (async () => {
      const all: Entry[] = [];
      try {
        for await (const page of client.pages<Message>(`/v1/conversations/${id}/messages`, "messages", { limit: "500" })) {
          all.push(...page.map(entryOf));
          if (!live) break;
        }
        if (!live) return;
        // Messages that arrived live while the pages were read stay.
        setMessages((now) => merge(all, now));
        setUnreadable("");
      } catch (e) {
        if (!live) return;
        if (e instanceof CallError && e.status === 403 && me.role === "agent") {
          setUnreadable("This conversation is not assigned to you: its earlier messages show once you take it or answer it.");
        } else {
          setError((e as Error).message);
        }
      }
      setLoaded(true);
      // For the inbox's figure: when a conversation opened from it shows.
      performance.mark("parley-conversation-shown");
    })();
    return () => {
      live = false;
    };
  }, [id, reload]);

  useEffect(
    () =>
      inbox.onEvent((e: StreamEvent) => {
        if (e.type === "erased") {
          if (e.visitor && e.visitor === inbox.byID.get(id)?.visitor) setErasedLive(true);
          return;
        }
        if (e.type === "resync") return void resync();
        if (e.conversation_id !== id) return;
        if (e.type === "message" && e.message) {
          const m = e.message;
          setMessages((now) => merge(now, [{ ...m, seq: e.seq }]));
          if (m.author?.role === "visitor") setTyping(null);
        } else if (e.type === "withdrawn" && e.message) {
          const w = e.message.id;
          setMessages((now) => now.map((m) => (m.id === w ? { ...m, text: null, withdrawn: true } : m)));
        } else if (e.type === "typing" && e.author) {
          setTyping({ who: e.author.role === "visitor" ? "The visitor" : e.author.id, until: Date.now() + typingShownMs });
        } else if (e.type === "handed_off") {
          setMessages((now) => merge(now, [handoffEntry(e)]));
        } else if (e.type === "assigned") {
          // Taken: the transcript may have become readable.
          if (unreadableRef.current) setReload((n) => n + 1);
        }
      }),
    [id],
  );
  useEffect(() => {
    if (!typing) return;
    const t = setTimeout(() => setTyping(null), typing.until - Date.now());
    return () => clearTimeout(t);
  }, [typing]);

  const transcript = useRef<HTMLOListElement>(null);
  useEffect(() => {
    const el = transcript.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [messages.length]);

  if (!c) return <p class="empty">This conversation is no longer in your inbox.</p>;
  const erased = !!c.erased || erasedLive;
  const said = messages.filter((m) => !m.handoff);
  const allErased = said.length > 0 && said.every((m) => m.erased);

  return (
    <article class="conversation" aria-labelledby="conv-title">
      <header>
        <h2 id="conv-title">{erased || allErased ? "Erased visitor" : visitorName(c)}</h2>
        <dl class="facts">
          <dt>Status</dt>
          <dd>{erased ? "closed (erased)" : c.status}</dd>
          <dt>Assigned to</dt>
          <dd>
            {c.assignee ? (c.assignee === me.id ? `you (${me.id})` : inbox.assigneeName(c.assignee)) : "nobody"}
            {assignee && ` (${assignee})`}
          </dd>
          {c.visitor_profile?.email && !erased && (
            <>
              <dt>E-mail</dt>
              <dd>{c.visitor_profile.email}</dd>
            </>
          )}
          <dt>Rating</dt>
          <dd>{c.rating ? `${c.rating} of 5` : c.status === "closed" && !erased ? "not rated" : "none"}</dd>
          <dt>Opened</dt>
          <dd>{time(c.created_at)}</dd>
        </dl>
      </header>
      {erasedLive && (
        <p role="alert" class="notice">
          The visitor erased themself: every message of this conversation is erased, and nothing more can be written in it.
        </p>
      )}
      {!erasedLive && erased && <p class="notice">This visitor was erased: their messages are erased.</p>}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {unreadable && <p class="hint">{unreadable}</p>}
      <ol class="transcript" ref={transcript} aria-label="Transcript" aria-busy={!loaded}>
        {messages.map((m) => (m.handoff ? <Handoff key={m.id} m={m} /> : <Line key={m.id} m={m} me={me.id} erased={erased} botName={(id) => inbox.bots.get(id) ?? id} />))}
        {loaded && messages.length === 0 && !unreadable && <li class="hint">No messages.</li>}
      </ol>
      <p class="typing" role="status">
        {typing && !erased ? `${typing.who} is typing…` : ""}
      </p>
      {!erased && c.status === "open" && (
        <Actions inbox={inbox} c={c} me={me} sendTyping={sendTyping} onSent={(m) => setMessages((now) => merge(now, [m]))} />
      )}
    </article>
  );
}

/**
 * useAssignee answers how another assignee stands (available or away, and
 * how many conversations they have), for those who may read it: supervisors
 * and admins; "" otherwise. Read when the conversation shows and when it is
 * assigned anew.
 */
function useAssignee(assignee: string | null, me: { id: string; role: string }): string {
  const [said, setSaid] = useState("");
  useEffect(() => {
    setSaid("");
    if (!assignee || assignee === me.id || me.role === "agent" || isBot(assignee)) return;
    let live = true;
    client
      .json<Availability>("GET", `/v1/agents/${encodeURIComponent(assignee)}`)
      .then((a) => live && setSaid(availability(a)))
      .catch(() => {}); // the facts show without it
    return () => void (live = false);
  }, [assignee]);
  return said;
}

function Line({ m, me, erased, botName }: { m: Message; me: string; erased: boolean; botName: (id: string) => string }) {
  const gone = erased || m.erased;
  // Who wrote an erased message is erased with it: only its time shows.
  const bot = m.author?.role === "bot";
  const who = gone ? "" : m.author?.role === "visitor" ? "Visitor · " : bot ? `Bot · ${botName(m.author?.id ?? "")} · ` : m.author?.id === me ? "You · " : `${m.author?.id} (${m.author?.role}) · `;
  return (
    <li class={`line ${gone ? "erased" : m.author?.role === "visitor" ? "visitor" : bot ? "staff bot" : "staff"}`}>
      <span class="by">
        {who}
        <time dateTime={m.at}>{time(m.at)}</time>
      </span>
      {gone ? <em class="gone">Erased</em> : m.withdrawn ? <em class="gone">Withdrawn by the visitor</em> : <span class="text">{m.text}</span>}
    </li>
  );
}

// Handoff is the line a hand-off leaves in the transcript, where it happened.
function Handoff({ m }: { m: Entry }) {
  return (
    <li class="line handoff">
      {m.author?.role === "bot" ? "The bot handed the conversation to a person" : "The visitor asked for a person"}
      {" · "}
      <time dateTime={m.at}>{time(m.at)}</time>
    </li>
  );
}

function Actions({ inbox, c, me, sendTyping, onSent }: { inbox: Inbox; c: Summary; me: { id: string; role: string }; sendTyping: (id: string) => void; onSent: (m: Message) => void }) {
  const [text, setText] = useState("");
  const [agent, setAgent] = useState("");
  const [bot, setBot] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  // A refused assignment a supervisor may force: the agent it was for.
  const [conflict, setConflict] = useState("");
  const lastTyping = useRef(0);
  const key = useRef(newKey());

  const run = async (what: () => Promise<void>) => {
    setBusy(true);
    setError("");
    try {
      await what();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const send = () =>
    run(async () => {
      const body = text.trim();
      if (!body) return;
      // The key makes a retry of this very message safe; a new one follows.
      const r = await client.json<{ id: string; seq: number; at: string }>("POST", `/v1/conversations/${c.id}/messages`, { text: body }, { "Idempotency-Key": key.current });
      key.current = newKey();
      setText("");
      onSent({ id: r.id, seq: r.seq, at: r.at, text: body, author: { role: me.role, id: me.id } });
      if (c.assignee !== me.id) await inbox.refresh(c.id);
    });

  const toBot = (id: string) =>
    run(async () => {
      inbox.update(await client.json<Summary>("POST", `/v1/conversations/${c.id}/assign`, { bot_id: id }));
      setBot("");
    });

  const assign = (to: string, override = false) =>
    run(async () => {
      try {
        inbox.update(await client.json<Summary>("POST", `/v1/conversations/${c.id}/assign`, { agent_id: to, ...(override ? { override: true } : {}) }));
        setConflict("");
        setAgent("");
      } catch (e) {
        if (e instanceof CallError && e.status === 409 && me.role !== "agent" && !override) setConflict(to);
        throw e;
      }
    });

  return (
    <div class="actions">
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {conflict && (
        <p class="conflict">
          <button type="button" disabled={busy} onClick={() => assign(conflict, true)}>
            Assign anyway to {conflict}
          </button>
        </p>
      )}
      {inbox.posts && (
        <form
          class="reply"
          onSubmit={(e) => {
            e.preventDefault();
            void send();
          }}
        >
          <label for="reply">Reply</label>
          <textarea
            id="reply"
            rows={3}
            value={text}
            onInput={(e) => {
              setText(e.currentTarget.value);
              if (Date.now() - lastTyping.current > typingEveryMs) {
                lastTyping.current = Date.now();
                sendTyping(c.id);
              }
            }}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                void send();
              }
            }}
          />
          <button type="submit" disabled={busy || !text.trim()}>
            Send
          </button>
        </form>
      )}
      <div class="buttons">
        {me.role === "agent" && c.assignee !== me.id && (
          <button type="button" class="secondary" disabled={busy} onClick={() => assign(me.id)}>
            Assign to me
          </button>
        )}
        {me.role !== "agent" && (
          <form
            class="assign"
            onSubmit={(e) => {
              e.preventDefault();
              void assign(agent.trim());
            }}
          >
            <label for="assign-to">Agent id</label>
            <input id="assign-to" required pattern="[A-Za-z0-9_\-]{1,64}" value={agent} onInput={(e) => setAgent(e.currentTarget.value)} />
            <button type="submit" class="secondary" disabled={busy}>
              Assign
            </button>
          </form>
        )}
        {me.role !== "agent" && inbox.bots.size > 0 && (
          <form
            class="assign"
            onSubmit={(e) => {
              e.preventDefault();
              void toBot(bot);
            }}
          >
            <label for="assign-bot">Bot</label>
            <select id="assign-bot" required value={bot} onChange={(e) => setBot(e.currentTarget.value)}>
              <option value="">Choose a bot…</option>
              {[...inbox.bots].map(([id, name]) => (
                <option key={id} value={id} disabled={c.assignee === botAssignee(id)}>
                  {name}
                </option>
              ))}
            </select>
            <button type="submit" class="secondary" disabled={busy || !bot}>
              Assign to bot
            </button>
          </form>
        )}
        {(me.role !== "agent" || c.assignee === me.id) && (
          <button type="button" class="secondary" disabled={busy} onClick={() => run(async () => inbox.update(await client.json<Summary>("POST", `/v1/conversations/${c.id}/close`, {})))}>
            Close conversation
          </button>
        )}
      </div>
    </div>
  );
}
