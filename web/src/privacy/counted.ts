// counted says n of a noun, in the plural unless n is 1, as the privacy page
// words its counts: "1 request", "2 requests", "1 entry", "2 entries".
export function counted(n: number, noun: string): string {
  const plural = noun.endsWith("y") ? `${noun.slice(0, -1)}ies` : `${noun}s`;
  return `${n} ${n === 1 ? noun : plural}`;
}
