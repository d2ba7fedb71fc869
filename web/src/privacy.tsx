// The privacy page, for admins and auditors: the tenant's settings and
// privacy notice, its identity provider, export and erasure of a subject,
// its bots and integrations (admins), and the audit trail verified in the
// browser (both). It stores nothing in the browser beyond the staff session.
import { render } from "preact";
import type { Principal } from "./client";
import { Shell } from "./staff/shell";
import { AuditTrail } from "./privacy/audit";
import { Integrations } from "./privacy/bots";
import { ProviderForm } from "./privacy/provider";
import { SettingsForm } from "./privacy/settings";
import { SubjectTools } from "./privacy/subject";
import "./staff/staff.css";
import "./privacy/privacy.css";

function Page({ who }: { who: Principal }) {
  const admin = who.role === "admin";
  return (
    <div class="privacy">
      <h1>Privacy of {who.tenant}</h1>
      <nav aria-label="Sections" class="sections">
        <a href="#settings">Settings</a>
        {admin && <a href="#identity">Identity provider</a>}
        {admin && <a href="#subject">Export or erase</a>}
        {admin && <a href="#bots">Bots and integrations</a>}
        <a href="#audit">Audit trail</a>
      </nav>
      <section id="settings" aria-labelledby="settings-title">
        <h2 id="settings-title">Tenant settings</h2>
        {admin ? <SettingsForm /> : <p class="hint">Only an admin may see or change the tenant's settings; the audit trail below shows every change made to them.</p>}
      </section>
      {admin && (
        <section id="identity" aria-labelledby="idp-title">
          <h2 id="idp-title">Identity provider</h2>
          <ProviderForm tenant={who.tenant} />
        </section>
      )}
      {admin && (
        <section id="subject" aria-labelledby="subject-title">
          <h2 id="subject-title">Export or erase a subject</h2>
          <SubjectTools />
        </section>
      )}
      {admin && (
        <section id="bots" aria-labelledby="bots-title">
          <h2 id="bots-title">Bots and integrations</h2>
          <Integrations tenant={who.tenant} />
        </section>
      )}
      <section id="audit" aria-labelledby="audit-title">
        <h2 id="audit-title">Audit trail</h2>
        <AuditTrail tenant={who.tenant} />
      </section>
    </div>
  );
}

render(<Shell path="/privacy">{(who) => <Page who={who} />}</Shell>, document.getElementById("app")!);
