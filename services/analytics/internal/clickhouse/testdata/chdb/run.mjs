// Runs SQL statements in one chDB session (ClickHouse in process) for the
// analytics store's tests (chdb_test.go). The first argument is the
// session's data directory. Each line of stdin is a statement, as a JSON
// string; each is answered by one line of stdout, a JSON object: {"data": …}
// with the rows in JSONCompactEachRow (one JSON array a line, left as text
// so that 64-bit integers keep every digit), or {"error": …}.
import { createInterface } from "node:readline";
import { Session } from "chdb";

const session = new Session(process.argv[2]);
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  let answer;
  try {
    answer = { data: session.query(JSON.parse(line), "JSONCompactEachRow") };
  } catch (err) {
    answer = { error: String(err?.message ?? err) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
session.close();
