package httpapi

import (
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/google/go-cmp/cmp"
)

// TestReadMessagesReply reads chat's answers as decoding them would, and
// refuses what decoding refuses.
func TestReadMessagesReply(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr bool
	}{
		{"page with profile and next", `{"messages":[{"id":"a","text":"x \" ] }"},{"id":"b"}],"visitor_profile":{"name":"V"},"next":12}`, false},
		{"last page", `{"messages":[{"id":"a"}]}`, false},
		{"empty page", `{"messages":null}`, false},
		{"fields in another order, spaces", ` { "next" : 3 , "messages" : [ ] } `, false},
		{"unknown field", `{"messages":[],"more":{"a":[1]}}`, false},
		{"not an object", `[1]`, true},
		{"null", `null`, true},
		{"null after spaces", ` null`, true},
		{"truncated", `{"messages":[{"id":"a"}`, true},
		{"data after the object", `{"messages":[]} {}`, true},
		{"duplicate field", `{"messages":[],"messages":[]}`, true},
		{"next not a number", `{"messages":[],"next":"x"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readMessagesReply([]byte(tt.give))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("readMessagesReply(%s) = %+v, nil; want an error", tt.give, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("readMessagesReply(%s) = %v", tt.give, err)
			}
			var want messagesReply
			if err := jsonv2.Unmarshal([]byte(tt.give), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("readMessagesReply(%s) differs from decoding it (-want +got):\n%s", tt.give, diff)
			}
		})
	}
}
