// The inbox's rows. Only the rows in view (and a few either side) are in the
// document, so thousands of conversations cost what a screenful does: each
// row has a fixed height, and the list is as tall as all of them.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Summary } from "./inbox";

export const rowHeight = 60;
const overscan = 6;

export function visitorName(c: Summary): string {
  if (c.visitor_profile?.name) return c.visitor_profile.name;
  return c.visitor ? `Visitor ${c.visitor.slice(-6)}` : "Visitor";
}

export function time(at: string): string {
  const d = new Date(at);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleDateString();
}

type Props = {
  rows: Summary[];
  unread: Record<string, number>;
  selected: string;
  me: string;
  /** name says who an assignee is (a bot by its name). */
  name: (assignee: string) => string;
  onOpen: (id: string) => void;
};

export function Rows({ rows, unread, selected, me, name, onOpen }: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  // The row to focus after a render, when moving with the arrow keys.
  const [focus, setFocus] = useState(-1);

  useLayoutEffect(() => {
    const el = scroller.current!;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    if (focus < 0) return;
    scroller.current?.querySelector<HTMLButtonElement>(`[data-index="${focus}"]`)?.focus();
  }, [focus, top]);

  const first = Math.max(0, Math.floor(top / rowHeight) - overscan);
  const last = Math.min(rows.length, Math.ceil((top + height) / rowHeight) + overscan);

  const move = (e: KeyboardEvent) => {
    const at = Number((document.activeElement as HTMLElement | null)?.dataset.index ?? -1);
    let to = at;
    if (e.key === "ArrowDown") to = Math.min(rows.length - 1, at + 1);
    else if (e.key === "ArrowUp") to = Math.max(0, at - 1);
    else if (e.key === "Home") to = 0;
    else if (e.key === "End") to = rows.length - 1;
    else return;
    e.preventDefault();
    const el = scroller.current!;
    if (to * rowHeight < el.scrollTop) el.scrollTop = to * rowHeight;
    else if ((to + 1) * rowHeight > el.scrollTop + el.clientHeight) el.scrollTop = (to + 1) * rowHeight - el.clientHeight;
    setTop(el.scrollTop);
    setFocus(to);
  };

  return (
    <div class="rows" ref={scroller} onScroll={(e) => setTop(e.currentTarget.scrollTop)}>
      <ul aria-label="Conversations" style={{ height: `${rows.length * rowHeight}px` }} onKeyDown={move}>
        {rows.slice(first, last).map((c, i) => {
          const n = unread[c.id] ?? 0;
          const index = first + i;
          return (
            <li key={c.id} aria-setsize={rows.length} aria-posinset={index + 1} style={{ top: `${index * rowHeight}px` }}>
              <button type="button" data-index={index} aria-current={c.id === selected ? "true" : undefined} onClick={() => onOpen(c.id)}>
                <span class="name">{visitorName(c)}</span>
                <span class="meta">
                  {c.erased ? "erased" : c.assignee ? (c.assignee === me ? "yours" : `with ${name(c.assignee)}`) : "unassigned"}
                  {!c.first_response_at && c.status === "open" && !c.erased ? " · awaiting a reply" : ""} · {time(c.last_message_at)}
                </span>
                {n > 0 && (
                  <span class="unread">
                    {n}
                    <span class="sr"> unread</span>
                  </span>
                )}
              </button>
            </li>
          );
        })}
      </ul>
    </div>
  );
}
