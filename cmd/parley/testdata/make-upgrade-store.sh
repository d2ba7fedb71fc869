#!/usr/bin/env bash
# Regenerates upgrade-d7778ed.tar.gz and upgrade-d7778ed.json, the store
# TestUpgradeFromD7778ed takes over: a data dir written by parley d7778ed
# (the last release before the read side moved into CHAT_VIEW, KEYS took
# the KEK state, the audit trail got checkpoints and the data dir a lock).
#
# Run from the repository root:
#
#   mkdir -p /tmp/old && git archive d7778ed | tar -x -C /tmp/old
#   (cd /tmp/old && go build -o /tmp/parley-old ./cmd/parley)
#   cmd/parley/testdata/make-upgrade-store.sh /tmp/parley-old
#
# Needs curl and jq. The old binary writes, through its public API only:
# three visitors of tenant demo with consent (one changes it), a
# conversation assigned to an agent and still open, one closed and rated
# (which the API shows only as a second rating being refused),
# one whose visitor is then erased, a staff transcript read, a settings
# change and a staff export (audited). The manifest records what the new
# version must find.
set -euo pipefail

old=${1:?usage: make-upgrade-store.sh PARLEY_D7778ED_BINARY}
out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
dir=$work/data
port=18765
base=http://127.0.0.1:$port

"$old" all --data-dir "$dir" --clickhouse off --http-addr 127.0.0.1:$port --log-level warn &
pid=$!
for _ in $(seq 100); do
	curl -fs "$base/readyz" >/dev/null && break
	sleep 0.2
done
curl -fs "$base/readyz" >/dev/null

token() { "$old" token --data-dir "$dir" --tenant demo --role "$1" --id "$2"; }
# api METHOD PATH TOKEN [BODY]: the answer's body; fails on any error status.
api() {
	curl -fsS -X "$1" "$base$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' ${4:+--data "$4"}
}
visitor() {
	curl -fsS -X POST "$base/v1/tenants/demo/visitors" -H 'Content-Type: application/json' \
		--data "{\"consent\":{\"analytics\":$1,\"network_data\":false,\"ai\":false},\"notice_version\":\"2026-01\"}"
}
open() { api POST /v1/conversations "$1" "{\"text\":\"$2\"}" | jq -r .id; }
post() { api POST "/v1/conversations/$1/messages" "$2" "{\"text\":\"$3\"}" >/dev/null; }

sue=$(token supervisor sue)
alice=$(token agent alice)
bob=$(token agent bob)
ada=$(token admin ada)
aud=$(token auditor aud)

v1=$(visitor true)
v2=$(visitor false)
v3=$(visitor true)
v1id=$(jq -r .visitor_id <<<"$v1") v1tok=$(jq -r .token <<<"$v1")
v2id=$(jq -r .visitor_id <<<"$v2") v2tok=$(jq -r .token <<<"$v2")
v3id=$(jq -r .visitor_id <<<"$v3") v3tok=$(jq -r .token <<<"$v3")
api PUT /v1/me/consent "$v1tok" '{"analytics":false,"network_data":false,"ai":true,"notice_version":"2026-02"}' >/dev/null

open_conv=$(open "$v1tok" "my order has not arrived")
api POST "/v1/conversations/$open_conv/assign" "$sue" '{"agent_id":"bob"}' >/dev/null
post "$open_conv" "$bob" "let me check the tracking"
post "$open_conv" "$v1tok" "it says delivered"

closed_conv=$(open "$v2tok" "how do I reset my password")
post "$closed_conv" "$alice" "use the link on the sign-in page"
post "$closed_conv" "$v2tok" "that worked, thanks"
api POST "/v1/conversations/$closed_conv/close" "$sue" >/dev/null
api POST "/v1/conversations/$closed_conv/rating" "$v2tok" '{"score":4}' >/dev/null

erased_conv=$(open "$v3tok" "please forget me")
post "$erased_conv" "$alice" "certainly"

api GET "/v1/conversations/$open_conv/messages" "$sue" >/dev/null
api PUT /v1/settings "$ada" '{"retention_days":90,"collect_network_data":false}' >/dev/null
api GET "/v1/subjects/$v2id/export" "$ada" >/dev/null

erasure=$(api DELETE /v1/me "$v3tok" | jq -r .erasure_id)
for _ in $(seq 100); do
	[ "$(api GET "/v1/erasures/$erasure" "$ada" | jq -r .status)" = completed ] && break
	sleep 0.1
done

# What the new version must find, read back from the old one.
convs=$(api GET /v1/conversations "$sue")
transcript() { api GET "/v1/conversations/$1/messages" "$sue" | jq '[.messages[] | {author, text, erased}]'; }
t_open=$(transcript "$open_conv")
t_closed=$(transcript "$closed_conv")
t_erased=$(transcript "$erased_conv")
export1=$(api GET "/v1/subjects/$v1id/export" "$ada")
erasure_status=$(api GET "/v1/erasures/$erasure" "$ada")
audit=$(api GET /v1/audit "$aud")

jq -n --argjson convs "$convs" --argjson t_open "$t_open" --argjson t_closed "$t_closed" --argjson t_erased "$t_erased" \
	--argjson export1 "$export1" --argjson erasure "$erasure_status" --argjson audit "$audit" \
	--arg open "$open_conv" --arg closed "$closed_conv" --arg erased "$erased_conv" \
	--arg v1 "$v1id" --arg v2 "$v2id" --arg v3 "$v3id" '{
	visitors: {consenting: $v1, rating: $v2, erased: $v3},
	conversations: [$convs.conversations[] | {id, visitor, status, assignee}],
	transcripts: {($open): $t_open, ($closed): $t_closed, ($erased): $t_erased},
	export: {subject: $export1.subject, consents: $export1.consents,
		conversations: [$export1.conversations[] | {id, messages: [.messages[] | {author, text}]}]},
	erasure: {id: $erasure.erasure_id, status: $erasure.status, report: $erasure.report},
	audit: [$audit.entries[] | {actor, action, target, hash}]
}' >"$out/upgrade-d7778ed.json"

kill -TERM "$pid"
wait "$pid"

# Only what the new version reads: JetStream's files and the keys (each
# stream's block is a few KiB; the archive is about 10 KiB).
rm -rf "$dir/clickhouse"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dir" -czf "$out/upgrade-d7778ed.tar.gz" .
ls -l "$out/upgrade-d7778ed.tar.gz"
