// widget.js: the one file a host page names. It draws only the launcher, in
// a closed shadow root, and on the visitor's first click opens the chat in a
// frame served by the gateway (/widget-frame): the conversation, the
// session and its storage live on the gateway's origin, out of the host
// page's scripts' reach. The two talk by postMessage, each checking the
// other's origin, and say nothing personal (widget/messages.ts). See
// docs/widget.md.
import css from "./launcher.css";
import type { FrameOptions, ToFrame, ToLauncher } from "./widget/messages";

const tag = document.currentScript as HTMLScriptElement | null;
if (tag) start(tag);

function start(tag: HTMLScriptElement) {
  const gateway = new URL(tag.src).origin;
  const d = tag.dataset;
  const title = d.title ?? "Chat with us";
  const opts: FrameOptions = { tenant: d.tenant ?? "", host: location.origin, title };
  if (d.privacyUrl) opts.privacyUrl = d.privacyUrl;
  if (d.noticeVersion) opts.noticeVersion = d.noticeVersion;

  // An element of its own name: host rules for div and the like miss it.
  const host = document.createElement("parley-widget");
  const shadow = host.attachShadow({ mode: "closed" });
  // A constructed style sheet is no inline style: host pages need no
  // 'unsafe-inline' for it.
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(css);
  shadow.adoptedStyleSheets = [sheet];
  const root = document.createElement("div");
  root.className = "root";
  const button = document.createElement("button");
  button.type = "button";
  button.setAttribute("aria-expanded", "false");
  root.append(button);
  shadow.append(root);

  let frame: HTMLIFrameElement | null = null;
  let open = false;
  let ready = false;
  let unread = 0;

  const label = () => {
    button.textContent = open ? "Close chat" : title;
    if (!open && unread > 0) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = `${unread} unread`;
      button.append(" ", badge);
    }
    button.setAttribute("aria-expanded", String(open));
  };
  const tell = (m: ToFrame) => frame?.contentWindow?.postMessage(m, gateway);
  const show = () => {
    if (!frame || !ready) return;
    frame.hidden = false;
    tell({ parley: "open" });
    frame.focus();
  };
  const hide = (focusLauncher: boolean) => {
    open = false;
    label();
    if (frame) frame.hidden = true;
    tell({ parley: "close" });
    if (focusLauncher) button.focus();
  };

  button.addEventListener("click", () => {
    if (open) return hide(false);
    open = true;
    label();
    if (frame) return show();
    frame = document.createElement("iframe");
    frame.id = "parley-chat";
    frame.title = title;
    frame.hidden = true;
    // The host page's address is none of the gateway's business.
    frame.referrerPolicy = "no-referrer";
    frame.src = `${gateway}/widget-frame#${new URLSearchParams(opts)}`;
    button.setAttribute("aria-controls", frame.id);
    root.prepend(frame);
  });

  addEventListener("message", (ev: MessageEvent) => {
    if (!frame || ev.origin !== gateway || ev.source !== frame.contentWindow) return;
    const m = ev.data as ToLauncher;
    switch (m?.parley) {
      case "resize":
        frame.style.height = `${Math.min(Math.max(0, Number(m.height) || 0), 560)}px`;
        if (!ready) {
          ready = true;
          if (open) show();
        }
        break;
      case "close":
        if (open) hide(true);
        break;
      case "unread":
        unread = Math.max(0, Math.floor(Number(m.count) || 0));
        label();
        break;
    }
  });

  label();
  (document.body ?? document.documentElement).append(host);
}
