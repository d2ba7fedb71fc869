// widget.js: the one file a host page names. It keeps its name across
// releases (so it is cached briefly) and loads the bundle of this release
// under its content-hashed name (cached for good), passing on the tag's
// data- attributes.
declare const __WIDGET_BUNDLE__: string;

const tag = document.currentScript as HTMLScriptElement | null;
if (tag) {
  const s = document.createElement("script");
  s.src = new URL(__WIDGET_BUNDLE__, tag.src).href;
  s.async = true;
  for (const [k, v] of Object.entries(tag.dataset)) s.dataset[k] = v;
  tag.after(s);
}
