// The dashboard page.
import { render } from "preact";
import { Shell } from "./staff/shell";
import "./staff/staff.css";

function Page() {
  return <h1>Dashboard</h1>;
}

render(<Shell path="/dashboard">{() => <Page />}</Shell>, document.getElementById("app")!);
