// The agent console: the inbox of conversations, live, and the one open.
import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { expiredMessage, type Principal, type StreamState } from "./client";
import { Shell } from "./staff/shell";
import { client } from "./staff/session";
import { Inbox } from "./console/inbox";
import { Rows } from "./console/list";
import { Conversation } from "./console/conversation";
import { Presence } from "./console/presence";
import "./staff/staff.css";
import "./console/console.css";

function Console({ who }: { who: Principal }) {
  const inbox = useMemo(() => new Inbox(who), [who]);
  const [, setVersion] = useState(0);
  const [status, setStatus] = useState<"open" | "closed">("open");
  const [open, setOpen] = useState("");
  const [stream, setStream] = useState<ReturnType<typeof client.stream> | null>(null);
  const [live, setLive] = useState<StreamState>({ state: "live" });

  useEffect(() => {
    let marked = false;
    const off = inbox.subscribe(() => {
      setVersion((v) => v + 1);
      // For the inbox's figure: when its first rows show.
      if (!marked && inbox.byID.size > 0) {
        marked = true;
        requestAnimationFrame(() => performance.mark("parley-inbox-rows"));
      }
    });
    // The stream first, and the inbox read once it is open: its first
    // connection hears only what is stored after its handshake, so a read
    // answered before then could miss a conversation opened meanwhile.
    // What it hears while the read runs, the inbox applies as it comes.
    // A stream back after a drop resumes from its last seq, but an erasure
    // is told live only, never stored: one made while the stream was down
    // would leave its visitor's name and e-mail shown. So each return is
    // taken as a resync (the inbox reloads, the open conversation reads
    // its messages again): consoles are few, and the reloads spread out.
    let was: StreamState["state"] = "live";
    const onState = (st: StreamState) => {
      if (st.state === "live" && was === "reconnecting") inbox.handle({ type: "resync" });
      was = st.state;
      setLive(st);
    };
    const s = client.stream(
      (e) => inbox.handle(e),
      () => setLive({ state: "stopped", why: "The live updates stopped." }),
      onState,
    );
    setStream(s);
    void s.opened.then(() => inbox.load()).then(() => performance.mark("parley-inbox-loaded"));
    void inbox.loadBots();
    return () => {
      off();
      s.stop();
    };
  }, [inbox]);

  const rows = inbox.list(status);
  const count = rows.length;
  return (
    <div class="console">
      <div class="tools">
        <h1>Console</h1>
        {who.role === "agent" && <Presence me={who.id} />}
      </div>
      {live.state === "reconnecting" && (
        <p role="status" class="notice">
          The live updates dropped: reconnecting…
        </p>
      )}
      {live.state === "stopped" && (
        <p role="alert" class="error">
          {live.why}{" "}
          {live.why !== expiredMessage && (
            <button type="button" class="secondary" onClick={() => stream?.reconnect()}>
              Reconnect
            </button>
          )}
        </p>
      )}
      <div class="panes">
        <section class="inbox" aria-labelledby="inbox-title">
          <h2 id="inbox-title">Inbox</h2>
          <div class="filter" role="group" aria-label="Show">
            <button type="button" class="secondary" aria-pressed={status === "open"} onClick={() => setStatus("open")}>
              Open
            </button>
            <button
              type="button"
              class="secondary"
              aria-pressed={status === "closed"}
              onClick={() => {
                setStatus("closed");
                if (inbox.closedCursor === undefined) void inbox.moreClosed();
              }}
            >
              Closed
            </button>
          </div>
          <p class="count" role="status">
            {count.toLocaleString("en")} {status} conversation{count === 1 ? "" : "s"}
            {inbox.loading ? " so far, loading…" : ""}
          </p>
          {inbox.error && (
            <p role="alert" class="error">
              {inbox.error}
            </p>
          )}
          <Rows
            rows={rows}
            unread={inbox.unread}
            selected={open}
            me={who.id}
            name={(a) => inbox.assigneeName(a)}
            onOpen={(id) => {
              performance.mark("parley-open");
              setOpen(id);
            }}
          />
          {status === "closed" && inbox.closedCursor && (
            <button type="button" class="secondary more" onClick={() => void inbox.moreClosed()}>
              Load more closed conversations
            </button>
          )}
        </section>
        <section class="view" aria-label="Conversation">
          {open ? (
            <Conversation key={open} inbox={inbox} id={open} me={who} sendTyping={(id) => stream?.send({ type: "typing", conversation_id: id })} />
          ) : (
            <p class="empty">Choose a conversation in the inbox.</p>
          )}
        </section>
      </div>
    </div>
  );
}

render(<Shell path="/console">{(who) => <Console who={who} />}</Shell>, document.getElementById("app")!);
