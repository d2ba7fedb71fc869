// The privacy page.
import { render } from "preact";
import { Shell } from "./staff/shell";
import "./staff/staff.css";

function Page() {
  return <h1>Privacy</h1>;
}

render(<Shell path="/privacy">{() => <Page />}</Shell>, document.getElementById("app")!);
