// Bots as the pages show them: a conversation assigned to a bot has the
// assignee "bot:<id>" (no agent id has a colon), and a bot's messages have
// the author role "bot".

const prefix = "bot:";

/** isBot reports whether an assignee is a bot. */
export function isBot(assignee: string | null | undefined): assignee is string {
  return !!assignee?.startsWith(prefix);
}

/** botID answers a bot assignee's id ("" for any other assignee). */
export function botID(assignee: string | null | undefined): string {
  return isBot(assignee) ? assignee.slice(prefix.length) : "";
}

/** The assignee that names a bot: what POST /v1/conversations/{id}/assign makes of a bot_id. */
export const botAssignee = (id: string) => prefix + id;

/** A bot or an integration as GET /v1/bots and /v1/integrations list them. */
export type Integration = {
  id: string;
  kind: "bot" | "integration";
  name: string;
  webhook_url?: string;
  nats_subject?: string;
  created_at: string;
  updated_at: string;
};
