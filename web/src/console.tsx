// The console page.
import { render } from "preact";
import { Shell } from "./staff/shell";
import "./staff/staff.css";

function Page() {
  return <h1>Console</h1>;
}

render(<Shell path="/console">{() => <Page />}</Shell>, document.getElementById("app")!);
