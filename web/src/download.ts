// Files the pages hand the user: a Blob behind an object URL, saved
// through a link, the URL revoked once it is no longer offered.
import { useEffect, useMemo } from "preact/hooks";

/** save offers blob as a file named name at once, as the browser downloads. */
export function save(blob: Blob, name: string): void {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/** useFileURL answers an object URL of blob for a download link, revoked when blob changes or the view goes. */
export function useFileURL(blob: Blob | null): string {
  const url = useMemo(() => (blob ? URL.createObjectURL(blob) : ""), [blob]);
  useEffect(() => () => void (url && URL.revokeObjectURL(url)), [url]);
  return url;
}
