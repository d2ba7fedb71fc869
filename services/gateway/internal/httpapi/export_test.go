package httpapi

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDecodeExportPage decodes pages whose messages hold what could
// mislead a reader of spans (braces in strings, escapes, spaces around
// items): each message is written as it lies in the page, and an item
// that is not an object is refused.
func TestDecodeExportPage(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    [][]string // each conversation's messages
		wantErr bool
	}{
		{
			name: "two conversations",
			give: `{"conversations":[{"id":"a","messages":[ {"seq":1,"text":"}{\"]"} ,{"seq":2,"text":"\u00e9"}]},` +
				`{"id":"b","messages":[]}],"next":{"conversation":"b","seq":0}}`,
			want: [][]string{{`{"seq":1,"text":"}{\"]"}`, `{"seq":2,"text":"\u00e9"}`}, nil},
		},
		{
			name:    "an item not an object",
			give:    `{"conversations":[{"id":"a","messages":[{"seq":1},"x"]}]}`,
			wantErr: true,
		},
		{
			name:    "null",
			give:    `null`,
			wantErr: true,
		},
		{
			name: "an empty page",
			give: `{}`,
			want: nil,
		},
		{
			name:    "messages not an array",
			give:    `{"conversations":[{"id":"a","messages":{}}]}`,
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := decodeExportPage([]byte(tt.give))
			if (err != nil) != tt.wantErr {
				t.Fatalf("decodeExportPage(%s) error = %v, want error %v", tt.give, err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			var got [][]string
			for _, c := range page.Conversations {
				var msgs []string
				for _, m := range c.Messages {
					msgs = append(msgs, string(page.raw[m[0]:m[1]]))
				}
				got = append(got, msgs)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decodeExportPage(%s) messages mismatch (-want +got):\n%s", tt.give, diff)
			}
		})
	}
}
