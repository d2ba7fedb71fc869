// What the launcher (widget.js, on the host page) and the chat frame
// (/widget-frame, on the gateway's origin) say to each other by
// postMessage. Nothing personal ever crosses: no text, no id, no token.

/** From the launcher to the frame. */
export type ToFrame = { parley: "open" } | { parley: "close" };

/** From the frame to the launcher. */
export type ToLauncher =
  | { parley: "resize"; height: number }
  | { parley: "close" }
  | { parley: "unread"; count: number };

/** The options the launcher passes to the frame in its URL's fragment. */
export type FrameOptions = {
  tenant: string;
  /** The host page's origin: the only one the frame talks to. */
  host: string;
  title?: string;
  privacyUrl?: string;
  noticeVersion?: string;
};
